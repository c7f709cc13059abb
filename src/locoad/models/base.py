"""What every locoad model shares at test time: collect per-image scores, compute metrics.

A model implements :meth:`AnomalyModule.score_batch`; this base turns the scores of the whole
test set into a per-image table and ``metrics.json``-shaped metrics, and logs them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from locoad.data.ground_truth import LocoGroundTruth
from locoad.errors import ConfigError
from locoad.metrics import image_metrics, pixel_auroc
from locoad.metrics.loco import loco_au_spro_maps, per_defect_auroc
from locoad.nested import flat, is_number

log = logging.getLogger(__name__)


@dataclass
class ScoreOutput:
    """Per-batch output of a model.

    scores: name -> (B,) anomaly scores (higher = more anomalous); include "fused" if the
        model fuses per image, else produce it in :meth:`AnomalyModule.finalize_scores`.
    anomaly_map: optional (B, H, W) pixel anomaly map (any resolution).
    extras: name -> (B,) per-image diagnostics (e.g. alignment accuracy), NaN where undefined.
    label_maps: name -> (B, H, W) integer maps to inspect (e.g. "segments", "classes").
    feature_maps: score name -> (B, h, w) anomaly map of that single score, where it has one.
    """

    scores: dict[str, torch.Tensor]
    anomaly_map: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    label_maps: dict[str, np.ndarray] = field(default_factory=dict)
    feature_maps: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class TestResults:
    table: pd.DataFrame  # one row per image: path, label, anomaly_type, every score, extras
    metrics: dict  # {score: {f1_max, auroc, logical: {...}, structural: {...}}, ...}
    anomaly_maps: np.ndarray | None = None  # (N, s, s) float32 at pixel_metric_size
    label_maps: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, s, s) int16
    masks: np.ndarray | None = None  # (N, s, s) bool ground-truth defect masks, with anomaly_maps
    mask_known: np.ndarray | None = None  # (N,) bool: False for an anomalous image without masks
    # The anomaly map of each image at the model's own resolution, float32 (row order of table):
    # resized to the ground truth's resolution for sPRO and for export.anomaly_maps.
    native_maps: list[np.ndarray] | None = None
    ground_truth: LocoGroundTruth | None = None  # the test samples' ground truth, when known


def flatten_metrics(metrics: dict, prefix: str = "test") -> dict[str, float]:
    """{"a": {"b": 1}} -> {"test/a/b": 1.0} ({"a/b": 1.0} with ``prefix=""``), skipping non-numeric leaves."""
    return {k: float(v) for k, v in flat(metrics, "/", prefix).items() if is_number(v)}


def check_single_device(trainer: L.Trainer) -> None:
    """locoad runs on one device: raise, before any work, when the trainer has several."""
    if trainer.world_size > 1:
        raise ConfigError(
            f"the trainer uses {trainer.world_size} devices (trainer.devices x trainer.num_nodes), but locoad "
            "runs on one: each process would fit on its share of the shots and the test rows would not be "
            "gathered. Set trainer.devices=1 (trainer.devices=[<index>] picks the GPU)."
        )


class AnomalyModule(L.LightningModule):
    """Base LightningModule: subclasses implement ``score_batch`` (and fitting)."""

    pixel_metric_size: int = 128
    # AU-sPRO of each single score's map too, not only the fused one (evaluation.per_score_spro;
    # ~11 s CPU per extra map on a 100-image LOCO category at native size)
    per_score_spro: bool = True

    def setup(self, stage: str) -> None:
        check_single_device(self.trainer)

    def score_batch(self, batch: dict) -> ScoreOutput:
        raise NotImplementedError

    def finalize_scores(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Hook for rules that need the whole test set (e.g. rank fusion). Default: as is."""
        return scores

    def extra_metrics(self, table: pd.DataFrame) -> dict:
        """Hook: more top-level entries for metrics.json (e.g. alignment accuracy)."""
        return {}

    # -- Lightning hooks ---------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._rows: list[dict] = []
        self._maps: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._mask_known: list[np.ndarray] = []
        self._labels: dict[str, list[np.ndarray]] = {}
        self._native: dict[str, list[np.ndarray]] = {}  # "" = the anomaly map, else a score's map
        self.test_results: TestResults | None = None

    def test_step(self, batch: dict, batch_idx: int) -> None:
        out = self.score_batch(batch)
        n = len(batch["path"])
        for i in range(n):
            row = {
                "path": batch["path"][i],
                "label": int(batch["label"][i]),
                "anomaly_type": batch["anomaly_type"][i],
            }
            row.update({k: float(v[i]) for k, v in out.scores.items()})
            row.update({f"extra/{k}": float(v[i]) for k, v in out.extras.items()})
            self._rows.append(row)
        s = self.pixel_metric_size
        for name, maps in out.label_maps.items():
            t = torch.as_tensor(np.asarray(maps, dtype=np.int64))[:, None].float()
            small = F.interpolate(t, size=(s, s), mode="nearest")[:, 0].numpy().astype(np.int16)
            self._labels.setdefault(name, []).append(small)
        native = {"": out.anomaly_map} if out.anomaly_map is not None else {}
        if self.per_score_spro:  # the single scores' maps are kept for their AU-sPRO only
            native.update(out.feature_maps)
        for name, maps in native.items():
            self._native.setdefault(name, []).extend(np.asarray(m.detach().float().cpu().numpy()) for m in maps)
        if out.anomaly_map is not None:
            amap = F.interpolate(out.anomaly_map[:, None].float(), size=(s, s), mode="bilinear", align_corners=False)
            mask = F.interpolate(batch["mask"][:, None].float(), size=(s, s), mode="nearest")
            # float32: float16 keeps ~3 digits, which ties pixels the pixel AUROC should order
            self._maps.append(amap[:, 0].cpu().numpy().astype(np.float32))
            self._masks.append(mask[:, 0].cpu().numpy() > 0.5)
            # An anomalous image without ground-truth masks has an all-zero mask, which is no
            # ground truth: its pixels are left out of the pixel metrics (the data module warns).
            regions = batch.get("num_regions")
            known = np.ones(n, bool) if regions is None else (
                (torch.as_tensor(batch["label"]) == 0) | (torch.as_tensor(regions) > 0)).cpu().numpy()
            self._mask_known.append(known)

    def on_test_epoch_end(self) -> None:
        table = pd.DataFrame(self._rows)
        known = {"path", "label", "anomaly_type"}
        score_cols = [c for c in table.columns if c not in known and not c.startswith("extra/")]
        scores = self.finalize_scores({c: table[c].to_numpy(dtype=np.float64) for c in score_cols})
        for name, values in scores.items():
            table[name] = values
        labels, types = table["label"].to_numpy(), table["anomaly_type"].to_numpy()
        metrics = {name: image_metrics(values, labels, types) for name, values in scores.items()}
        maps = masks = mask_known = None
        if self._maps:
            maps = np.concatenate(self._maps)
            masks = np.concatenate(self._masks)
            mask_known = np.concatenate(self._mask_known)
            if masks[mask_known].any():
                pa = pixel_auroc(masks[mask_known], maps[mask_known].astype(np.float32))
                target = "fused" if "fused" in metrics else next(iter(metrics))
                metrics[target]["pixel_auroc"] = pa
        gt, order = self._ground_truth(table)
        if gt is not None:
            self._loco_metrics(metrics, scores, labels, gt, order)
        metrics.update(self.extra_metrics(table))
        for key, value in flatten_metrics(metrics).items():
            if not math.isnan(value):
                self.log(key, value, batch_size=len(table))
        labels_maps = {k: np.concatenate(v) for k, v in self._labels.items()}
        self.test_results = TestResults(table=table, metrics=metrics, anomaly_maps=maps,
                                        label_maps=labels_maps, masks=masks, mask_known=mask_known,
                                        native_maps=self._native.get(""), ground_truth=gt)

    # -- the MVTec LOCO AD evaluation ------------------------------------------------------
    def _ground_truth(self, table: pd.DataFrame) -> tuple[LocoGroundTruth | None, list[int]]:
        """The ground truth of the test rows, rows reordered like it; (None, []) when unknown
        (no datamodule that provides it, e.g. bare dataloaders)."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        gt = dm.ground_truth() if hasattr(dm, "ground_truth") else None
        if gt is None:
            return None, []
        row = {p: i for i, p in enumerate(table["path"])}
        order = [row.get(str(s.path)) for s in gt.samples]
        if None in order or len(order) != len(table):
            log.warning("test rows and ground-truth samples differ: sPRO and per-defect AUROC skipped")
            return None, []
        return gt, order

    def _loco_metrics(self, metrics: dict, scores: dict[str, np.ndarray], labels: np.ndarray,
                      gt: LocoGroundTruth, order: list[int]) -> None:
        """per_defect for every score (with defects_config.json); AU-sPRO of the anomaly map in
        metrics["pixel"] and of each single score's map in metrics[score]["pixel"]."""
        if gt.defects is not None:
            names = [[] for _ in order]
            for j, i in enumerate(order):
                names[i] = gt.defect_names(j)
            for name, values in scores.items():
                metrics[name]["per_defect"] = per_defect_auroc(values, labels, names)
        native = {name: [maps[i] for i in order] for name, maps in self._native.items() if len(maps) == len(order)}
        for name, spro in loco_au_spro_maps(native, gt, workers=torch.get_num_threads()).items():
            if spro is None:
                return  # no test image has ground truth
            if name == "":
                metrics["pixel"] = {"au_spro": spro}
            elif name in metrics:
                metrics[name]["pixel"] = {"au_spro": spro}
