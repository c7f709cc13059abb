"""LightningModule for the seven-feature method: fitting is one pass over the k shots (no
gradient steps); ``test_step`` computes every feature's score; epoch end fuses and evaluates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from locoad.aligners.base import Aligner
from locoad.backbones.base import Backbone
from locoad.cache import StageCache
from locoad.features.base import Feature
from locoad.fusion.base import Fusion
from locoad.models.base import AnomalyModule, ScoreOutput
from locoad.models.seven_feature.torch_model import (
    Encoded,
    SevenFeatureModel,
    alignment_accuracy,
    foreground_iou,
    resize_nearest,
)
from locoad.segmenters.base import Segmenter

STATE_KEY = "seven_feature_shots"


class SevenFeatureModule(AnomalyModule):
    def __init__(
        self,
        segmenter: Segmenter,
        aligner: Aligner,
        backbone: Backbone,
        features: dict[str, Feature],
        fusion: Fusion,
        work_size: int = 256,
        feature_norm: str = "auto",
        max_loo: int = 16,
        cache: StageCache | None = None,
    ):
        super().__init__()
        self.model = SevenFeatureModel(
            segmenter, aligner, backbone, features, fusion, work_size, feature_norm, max_loo, cache=cache
        )
        self.automatic_optimization = False  # nothing is trained
        # Frozen backbone weights are rebuilt from the config, not stored (ViT-G would add 4 GB).
        self.strict_loading = False
        self._shots: list[Encoded] = []
        self._parts: list[np.ndarray | None] = []

    def configure_optimizers(self):
        return None

    # -- fit: collect the shots, then build memories once --------------------------------
    def on_train_epoch_start(self) -> None:
        self._shots, self._parts = [], []

    def training_step(self, batch: dict, batch_idx: int) -> None:
        self._shots.extend(self.model.encode(batch["image"]))
        self._parts.extend(p.cpu().numpy() for p in batch["parts"])

    def on_train_epoch_end(self) -> None:
        self.model.fit(self._shots, self._parts)

    # -- checkpoint: the encoded shots; loading refits (deterministic and cheap) ---------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        m = self.model
        sd = checkpoint.get("state_dict", {})
        for key in [k for k in sd if k.startswith("model.backbone.")]:
            del sd[key]
        checkpoint[STATE_KEY] = {
            "rgb": torch.from_numpy(np.stack([s.rgb for s in m.shots])),
            "segments": torch.from_numpy(np.stack([s.segments for s in m.shots])),
            "features": torch.stack([s.features.cpu() for s in m.shots]),
            "parts": torch.from_numpy(np.stack(self._parts)) if self._parts else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        st = checkpoint.get(STATE_KEY)
        if st is None:
            raise ValueError("checkpoint has no seven-feature state: was it written by model=seven_feature?")
        shots = [
            Encoded(r.numpy(), s.numpy(), f.to(self.device))
            for r, s, f in zip(st["rgb"], st["segments"], st["features"])
        ]
        self._parts = list(st["parts"].numpy()) if st.get("parts") is not None else []
        self.model.fit(shots, self._parts or None)

    # -- test ------------------------------------------------------------------------------
    def score_batch(self, batch: dict) -> ScoreOutput:
        encoded = self.model.encode(batch["image"])
        scores, amap, feature_maps, class_maps = self.model.score_with_maps(encoded)
        if not self.model.fusion.transductive:
            scores["fused"] = self.model.fuse(scores)
        # Segmentation quality (foreground IoU) wherever true part labels exist (parts < 0: the
        # data set has none); alignment accuracy only when the run aligns (some score needs classes).
        extras = {}
        lut = self.model.reference_parts
        parts = [resize_nearest(p, self.model.work_size) for p in batch["parts"].cpu().numpy()]
        known = [bool((p >= 0).all()) for p in parts]
        if any(known):
            extras["foreground_iou"] = torch.tensor(
                [foreground_iou(cm, p) if ok else np.nan for cm, p, ok in zip(class_maps, parts, known)])
        if lut is not None:
            extras["alignment_accuracy"] = torch.tensor(
                [alignment_accuracy(cm, p, lut) if ok else np.nan for cm, p, ok in zip(class_maps, parts, known)])
        label_maps = {"segments": np.stack([e.segments for e in encoded]), "classes": np.stack(class_maps)}
        return ScoreOutput({k: torch.as_tensor(v) for k, v in scores.items()}, amap, extras, label_maps, feature_maps)

    def finalize_scores(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feats = {k: v for k, v in scores.items() if k != "fused"}
        return {**feats, "fused": self.model.fuse(feats)}

    def extra_metrics(self, table: pd.DataFrame) -> dict:
        out: dict = {"fusion": {"scales": dict(self.model.fusion.scales)}}
        good = table["anomaly_type"] == "good"
        alignment = {}
        if "extra/alignment_accuracy" in table:
            acc = table["extra/alignment_accuracy"]
            alignment = {"accuracy": float(acc.mean()), "accuracy_good": float(acc[good].mean())}
        if "extra/foreground_iou" in table:
            alignment["foreground_iou"] = float(table["extra/foreground_iou"].mean())
        if alignment:
            out["alignment"] = alignment
        return out
