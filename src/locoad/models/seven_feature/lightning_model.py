"""LightningModule for the seven-feature method: fitting is one pass over the k shots (no
gradient steps); ``test_step`` computes every feature's score; epoch end fuses and evaluates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from locoad.aligners.base import Aligner
from locoad.backbones.base import Backbone
from locoad.backbones.ensemble import members_read
from locoad.cache import StageCache
from locoad.errors import ConfigError
from locoad.features.base import Feature
from locoad.fusion.base import Fusion
from locoad.metrics.alignment import alignment_accuracy, foreground_iou, reference_part_lut
from locoad.models.base import AnomalyModule, ScoreOutput
from locoad.models.seven_feature.stored import (
    StoredScores,
    StoredSegmenter,
    encoding_settings,
    stored_backbone,
)
from locoad.models.seven_feature.torch_model import Encoded, SevenFeatureModel, resize_nearest
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
        photometric: str = "none",
        shot_augment: dict | None = None,
        cache: StageCache | None = None,
        reference: str = "first",
        loo_reference: str = "shared",
    ):
        super().__init__()
        for group, part in (("segmenter", segmenter), ("aligner", aligner), ("backbone", backbone),
                            ("features", features), ("fusion", fusion)):
            if isinstance(part, str):  # e.g. model.fusion=max: the key holds the group's whole config
                raise ConfigError(f"model.{group}={part!r} is a name, not a {group}: choose one with its config group, "
                                  f"{group}=<name> (the files in conf/{group}/), e.g. {group}={part}")
        self.cache = cache if cache is not None and cache.enabled else None  # on-disk stage cache
        backbone = members_read(backbone, {p for f in features.values() if (p := getattr(f, "backbone_part", None))})
        if self.cache is not None:  # stored stages wrap the model's, which only compute
            segmenter, backbone = StoredSegmenter(segmenter, self.cache), stored_backbone(backbone, self.cache)
        self.model = SevenFeatureModel(segmenter, aligner, backbone, features, fusion, work_size, feature_norm, max_loo,
                                       photometric, shot_augment, reference, loo_reference)
        # fit/score through the scores stage when it is on (a plain object: no second module)
        self._stored = StoredScores(self.model, self.cache) if self.cache is not None and self.cache.scores else None
        self.reference_parts: np.ndarray | None = None  # reference class -> true part id (alignment accuracy)
        self.automatic_optimization = False  # nothing is trained
        # Frozen backbone weights are rebuilt from the config, not stored (ViT-G would add 4 GB).
        self.strict_loading = False
        self._shots: list[Encoded] = []
        self._parts: list[np.ndarray | None] = []
        self._pending: list[Encoded] | None = None  # shots of a loaded checkpoint, fitted at test start

    def configure_optimizers(self):
        return None

    # -- device: components follow the trainer; the fitted state moves with the module ---
    def on_fit_start(self) -> None:
        self.model.follow(self.device)

    def on_test_start(self) -> None:
        self.prepare()

    def on_validation_start(self) -> None:
        self.prepare()

    def on_predict_start(self) -> None:
        self.prepare()

    def prepare(self) -> None:
        """Components on this module's device; a loaded checkpoint's shots fitted there.

        Lightning restores a checkpoint before it moves the module, so fitting in
        ``on_load_checkpoint`` would build the state on the CPU (and DeAOT's memory where CUDA
        happens to be); here the module already sits on the trainer's device."""
        self.model.follow(self.device)
        if self._pending is not None:
            shots, self._pending = self._pending, None
            for s in shots:
                s.apply(lambda t: t.to(self.device))
            self._fit(shots)

    # -- fit: collect the shots, then build memories once --------------------------------
    def on_train_epoch_start(self) -> None:
        self._shots, self._parts, self._pending = [], [], None

    def training_step(self, batch: dict, batch_idx: int) -> None:
        self._shots.extend(self.model.encode(batch["image"], shots=True, aspects=batch.get("aspect")))
        self._parts.extend(p.cpu().numpy() for p in batch["parts"])

    def on_train_epoch_end(self) -> None:
        self._fit(self._shots)
        self._shots = []  # the model keeps them (and moves them with the module)

    def _fit(self, shots: list[Encoded]) -> None:
        (self._stored or self.model).fit(shots)
        m = self.model
        if self._parts and m.shot_order != list(range(len(self._parts))):  # the reference leads
            self._parts = [self._parts[i] for i in m.shot_order]
        # Alignment accuracy needs the reference's true part under each of its classes.
        parts = self._parts
        self.reference_parts = None
        if m.aligned and parts and parts[0] is not None and (parts[0] >= 0).all():
            ref_classes = m.parsed_shots[0].class_map
            self.reference_parts = reference_part_lut(ref_classes, resize_nearest(parts[0], m.work_size), m.aligner.unmatched_id)

    # -- checkpoint: the encoded shots; loading refits (deterministic and cheap) ---------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        m = self.model
        sd = checkpoint.get("state_dict", {})
        for key in [k for k in sd if k.startswith("model.backbone.")]:
            del sd[key]
        checkpoint[STATE_KEY] = {
            "rgb": torch.from_numpy(np.stack([s.rgb for s in m.shots])),
            "segments": torch.from_numpy(np.stack([s.segments for s in m.shots])),
            "foreground": (torch.from_numpy(np.stack([s.foreground for s in m.shots]))
                           if m.shots[0].foreground is not None else None),
            "features": torch.stack([s.features.cpu() for s in m.shots]),
            # the moved copies' features (model.shot_augment), so that loading refits the same banks
            "augmented": torch.stack([s.augmented.cpu() for s in m.shots]) if m.moves else None,
            "aspect": torch.tensor([s.aspect for s in m.shots], dtype=torch.float64),
            "parts": torch.from_numpy(np.stack(self._parts)) if self._parts else None,
            "encoding": encoding_settings(m),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        st = checkpoint.get(STATE_KEY)
        if st is None:
            raise ConfigError("this checkpoint holds no seven-feature shots, so another model wrote it (model=ulsad or "
                              "ulsad_tiny?): test it with that model and its run's settings, or give ckpt_path "
                              "a checkpoint a model=seven_feature run saved")
        if st.get("encoding") is not None:  # checkpoints written before it was kept: not checked
            differ = differences(st["encoding"], encoding_settings(self.model))
            if differ:
                raise ConfigError(
                    "this checkpoint's shots were encoded with other settings than this config's: "
                    + "; ".join(differ) + ". Test it with the config it was fitted with, or fit again")
        augmented = st.get("augmented")
        # checkpoints written before captures' aspects were kept moved the square as it is (1.0)
        aspect = st.get("aspect")
        fg = st.get("foreground")
        seg = self.model.foreground_segmenter()
        if fg is None and seg is not None:  # written before shots kept it: test images will have it
            fg = [torch.from_numpy(seg(r.cpu().numpy()) > 0) for r in st["rgb"]]
        self._pending = [
            Encoded(r.cpu().numpy(), s.cpu().numpy(), f, None if augmented is None else augmented[i],
                    aspect=1.0 if aspect is None else float(aspect[i]),
                    foreground=None if fg is None else fg[i].cpu().numpy())
            for i, (r, s, f) in enumerate(zip(st["rgb"], st["segments"], st["features"]))
        ]
        self._parts = list(st["parts"].cpu().numpy()) if st.get("parts") is not None else []

    # -- test ------------------------------------------------------------------------------
    def score_batch(self, batch: dict) -> ScoreOutput:
        if self._pending is not None:  # loaded, but no Lightning loop ran prepare()
            self.prepare()
        encoded = self.model.encode(batch["image"], aspects=batch.get("aspect"))  # as the shots are
        scores, amap, feature_maps, class_maps = (self._stored or self.model).score_with_maps(encoded)
        if not self.model.fusion.transductive:
            scores["fused"] = self.model.fuse(scores)
        # Segmentation quality (foreground IoU) wherever true part labels exist (parts < 0: the
        # data set has none); alignment accuracy only when the run aligns (some score needs classes).
        extras = {}
        lut = self.reference_parts
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


def differences(saved: dict, now: dict, limit: int = 4) -> list[str]:
    """``key: checkpoint X, config Y`` for each leaf where two nested settings differ (at most
    ``limit``; a long list says how many more)."""
    out = _differ(saved, now, "")
    return out[:limit] + ([f"{len(out) - limit} more"] if len(out) > limit else [])


def _differ(a: dict, b: dict, prefix: str) -> list[str]:
    """The differing leaves; a part only one side has (another backbone's member) named once, by
    its class where it has one, not as every leaf of it against None. A leaf one side lacks
    equals None there, as before (settings added since a checkpoint was written)."""
    out = []
    for k in sorted(a.keys() | b.keys()):
        x, y = a.get(k, _ABSENT), b.get(k, _ABSENT)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differ(x, y, f"{prefix}{k}.")
        elif x != y and not (_unset(x) and _unset(y)):
            out.append(f"{prefix}{k}: checkpoint {_shown(x)}, config {_shown(y)}")
    return out


_ABSENT = object()


def _unset(v) -> bool:
    return v is _ABSENT or v is None or (isinstance(v, dict) and not v)


def _shown(v) -> str:
    if v is _ABSENT:
        return "absent"
    if isinstance(v, dict) and "class" in v:
        return repr(v["class"])
    return repr(v)
