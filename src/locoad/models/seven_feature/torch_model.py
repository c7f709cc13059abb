"""The seven-feature method as a plain torch module: segment -> align -> extract -> score -> fuse.

No Lightning here. ``encode`` runs the expensive, per-image stages (backbone, segmenter);
``fit`` builds the alignment reference, the feature memories and the leave-one-out fusion
calibration from encoded shots; ``score`` scores encoded test images.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from locoad.aligners.base import Aligner
from locoad.backbones.base import Backbone
from locoad.cache import StageCache, code_fingerprint, component_key, content_hash
from locoad.features.base import Feature, FeatureScore, PatchScore
from locoad.features.shared_patch_bank import SharedPatchBank, share_patch_banks
from locoad.fusion.base import Fusion
from locoad.segmenters.base import Segmenter
from locoad.types import BACKGROUND, ParsedImage, SegmentedImage, rgb_to_lab

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """The per-image outputs of the expensive stages (what the stage cache stores)."""

    rgb: np.ndarray  # (S, S, 3) uint8 at work_size
    segments: np.ndarray  # (S, S) int32 label map
    features: torch.Tensor  # (D, h, w) raw backbone features
    _lab: np.ndarray | None = field(default=None, repr=False, compare=False)
    _key: str | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Content hash of everything the later stages read (image, label map, features)."""
        if self._key is None:
            parts = (content_hash(self.rgb), content_hash(self.segments), content_hash(self.features.float()))
            self._key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
        return self._key

    @property
    def lab(self) -> np.ndarray:
        """CIELAB of ``rgb``, computed once: the aligner's cost and the class features share it."""
        if self._lab is None:
            self._lab = rgb_to_lab(self.rgb)
        return self._lab


def to_uint8(images: torch.Tensor, size: int) -> np.ndarray:
    """(B, 3, H, W) float [0, 1] -> (B, size, size, 3) uint8."""
    x = images.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def majority_grid(class_map: np.ndarray, grid: int, num_classes: int) -> torch.Tensor:
    """Class map -> (grid, grid) by majority vote inside each patch (small parts survive
    better than with centre sampling)."""
    h, w = class_map.shape
    # Cell of every pixel as adaptive pooling assigns it when the size divides evenly.
    cell = (np.arange(h)[:, None] * grid // h) * grid + (np.arange(w)[None, :] * grid // w)
    counts = np.bincount((cell * num_classes + class_map).ravel(), minlength=grid * grid * num_classes)
    return torch.from_numpy(counts.reshape(grid, grid, num_classes).argmax(-1))


def resize_nearest(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[:2] == (size, size):
        return a
    t = torch.from_numpy(a.astype(np.int64))[None, None].float()
    return F.interpolate(t, size=(size, size), mode="nearest")[0, 0].long().numpy()


class SevenFeatureModel(nn.Module):
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
        if not features:
            raise ValueError("features is empty: choose a feature set, e.g. features=all7")
        self.segmenter = segmenter
        self.aligner = aligner
        self.backbone = backbone
        self.features = dict(features)
        for name, feat in self.features.items():
            feat.name = name
        self.fusion = fusion
        # Alignment only matters to scores that use classes; without one, a segment is just
        # foreground (class 1) and the aligner is never called.
        self.aligned = any(f.needs_classes for f in self.features.values())
        self.work_size = work_size
        if feature_norm == "auto":
            feature_norm = getattr(backbone, "preferred_feature_norm", "none")
        if feature_norm not in ("none", "center", "standardize"):
            raise ValueError(f"feature_norm must be none, center, standardize or auto; got {feature_norm!r}")
        self.feature_norm = feature_norm
        self.max_loo = max_loo
        self.cache = cache  # on-disk backbone features / label maps (locoad.cache); None = off
        self.register_buffer("feat_mean", torch.zeros(0), persistent=False)
        self.register_buffer("feat_std", torch.zeros(0), persistent=False)
        self.shots: list[Encoded] = []
        self.parsed_shots: list[ParsedImage] = []
        self.states: dict[str, object] = {}
        self.patch_banks: list[SharedPatchBank] = []  # exact patch scores share one bank
        self.loo_scores: dict[str, np.ndarray] = {}
        self.reference_parts: np.ndarray | None = None  # reference class -> true part id
        self._scores_dir = None  # the stage cache's folder of this fit's stored scores

    @property
    def is_fitted(self) -> bool:
        return bool(self.states)

    # -- stages ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> list[Encoded]:
        """Backbone (batched) and segmentation of a batch of (B, 3, H, W) images in [0, 1].

        With a stage cache, stored outputs are read back and the backbone runs once, batched,
        on the images it misses; segmentation is keyed on the work-size uint8 image."""
        rgbs = to_uint8(images, self.work_size)
        cache = self.cache
        if cache is None or not cache.enabled:
            feats = self.backbone(images)
            return [Encoded(rgb, self.segmenter(rgb), f) for rgb, f in zip(rgbs, feats)]
        feats = cache.features(self.backbone, images)
        return [Encoded(rgb, cache.segments(self.segmenter, rgb), f) for rgb, f in zip(rgbs, feats)]

    def normalise(self, feats: torch.Tensor) -> torch.Tensor:
        if self.feature_norm == "none" or self.feat_mean.numel() == 0:
            return feats
        x = feats - self.feat_mean.view(-1, 1, 1).to(feats.device)
        if self.feature_norm == "standardize":
            x = x / self.feat_std.view(-1, 1, 1).to(feats.device)
        return x

    def segmented(self, enc: Encoded) -> SegmentedImage:
        """The aligner's and the scores' view of an image: normalised features, computed once."""
        if not torch.isfinite(enc.features).all():
            # NaN/inf features come from broken weights or a numerically unstable dtype; used,
            # they would silently poison every cost and kNN distance.
            raise FloatingPointError(
                "the backbone returned NaN/inf features. Check the checkpoint (a corrupt or "
                "mismatched file) and backbone.dtype (try float32)."
            )
        return SegmentedImage(enc.rgb, enc.segments, self.normalise(enc.features), enc.lab)

    def parse(self, image: SegmentedImage, class_map: np.ndarray) -> ParsedImage:
        # background, the reference classes and unmatched; or background and foreground
        num_classes = self.aligner.num_reference_classes + 2 if self.aligned else 2
        grid = image.features.shape[-1]
        return ParsedImage(
            rgb=image.rgb,
            lab=image.lab,
            class_map=class_map.astype(np.int64),
            features=image.features,
            class_grid=majority_grid(class_map, grid, num_classes).to(image.features.device),
            num_classes=num_classes,
            foreground=majority_grid((class_map != BACKGROUND).astype(np.int64), grid, 2).bool().to(image.features.device),
        )

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, shots: list[Encoded], parts: list[np.ndarray] | None = None) -> None:
        """Reference = shots[0]; memory banks and LOO calibration from all shots."""
        if not shots:
            raise ValueError("no training shots")
        self.shots = list(shots)
        if self.feature_norm != "none":
            allp = torch.cat([s.features.flatten(1) for s in shots], dim=1)  # (D, N)
            self.feat_mean = allp.mean(1)
            self.feat_std = allp.std(1).clamp_min(1e-6) if allp.shape[1] > 1 else torch.ones_like(self.feat_mean)
        if shots[0].segments.max() == 0:
            # Still a valid model: every segment of every image becomes "unmatched" and the
            # class features degrade to foreground statistics. Say so loudly.
            log.warning(
                "the reference image (first shot) has no foreground segment: the segmenter found only "
                "background, so alignment has no classes. Check the segmenter (weights, min_area) "
                "or choose another data.seed."
            )
        views = [self.segmented(s) for s in shots]
        if self.aligned:
            self.aligner.fit(views[0])
            maps = [self.aligner.reference_class_map()] + [self.aligner.align(v) for v in views[1:]]
        else:
            maps = [foreground_map(v.segments) for v in views]
        self.parsed_shots = [self.parse(v, m) for v, m in zip(views, maps)]
        self.patch_banks = share_patch_banks(self.features, self.parsed_shots)
        shared = {n: b for b in self.patch_banks for n in b.features}
        self.states = {n: shared[n] if n in shared else f.fit(self.parsed_shots) for n, f in self.features.items()}
        self._scores_dir = self._scores_key(shots)
        loo = self._cached_scores("loo")
        if loo is None:
            self.loo_scores = self._leave_one_out()
            self._store_scores("loo", {f"loo/{n}": np.asarray(v, dtype=np.float64) for n, v in self.loo_scores.items()})
        else:
            self.loo_scores = {n: loo[f"loo/{n}"] for n in self.features}
        self.fusion.fit(self.loo_scores)
        self.reference_parts = None
        if self.aligned and parts is not None and parts[0] is not None and (parts[0] >= 0).all():
            self.reference_parts = reference_part_lut(maps[0], resize_nearest(parts[0], self.work_size), self.aligner.unmatched_id)

    def _leave_one_out(self) -> dict[str, np.ndarray]:
        """Each shot scored against the others (at most ``max_loo`` shots, evenly spaced)."""
        k = len(self.parsed_shots)
        if k < 2:
            return {n: np.zeros(0) for n in self.features}
        held = np.unique(np.linspace(0, k - 1, min(k, self.max_loo)).round().astype(int)).tolist()
        out = {}
        for bank in self.patch_banks:
            out.update(bank.loo_scores(self.parsed_shots, held))
        for n, f in self.features.items():
            if n not in out:
                out[n] = f.loo_scores(self.parsed_shots, held)
        return {n: out[n] for n in self.features}

    # -- score -------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, encoded: list[Encoded]) -> tuple[dict[str, np.ndarray], torch.Tensor | None, list[np.ndarray]]:
        """Per-feature scores (name -> (B,)), the (B, h, w) anomaly map and the class maps."""
        scores, amap, _, class_maps = self.score_with_maps(encoded)
        return scores, amap, class_maps

    @torch.no_grad()
    def score_with_maps(self, encoded: list[Encoded]) -> tuple[
            dict[str, np.ndarray], torch.Tensor | None, dict[str, torch.Tensor], list[np.ndarray]]:
        """:meth:`score` plus each patch score's own (B, h, w) anomaly map (name -> maps)."""
        if not self.is_fitted:
            raise RuntimeError("model not fitted: run fit (train=true) or load a checkpoint (ckpt_path=...)")
        scores = {n: np.zeros(len(encoded)) for n in self.features}
        maps, class_maps = [], []
        per_score: dict[str, list[torch.Tensor]] = {}
        for i, enc in enumerate(encoded):
            values, patch_maps, cm = self._score_one(enc)
            class_maps.append(cm)
            amap = None
            for n in self.features:
                scores[n][i] = values[n]
                if n in patch_maps:
                    per_score.setdefault(n, []).append(patch_maps[n])
                w = self.fusion.map_weight(n) if n in patch_maps else 0.0
                if w != 0:  # fusion.weights apply to the map as to the image score
                    weighted = patch_maps[n] * w
                    amap = weighted if amap is None else amap + weighted
            if amap is not None:
                maps.append(amap)
        feature_maps = {n: torch.stack(m) for n, m in per_score.items() if len(m) == len(encoded)}
        return scores, (torch.stack(maps) if maps else None), feature_maps, class_maps

    def _score_one(self, enc: Encoded) -> tuple[dict[str, float], dict[str, torch.Tensor], np.ndarray]:
        """(score per feature, patch anomaly map per patch score, class map) of one image,
        read from the stage cache when this fit scored the same image before."""
        stored = self._cached_scores(enc.key) if self._scores_dir is not None else None
        if stored is not None:
            dev = enc.features.device
            values = {n: float(stored[f"score/{n}"]) for n in self.features}
            patch_maps = {n: torch.from_numpy(stored[f"map/{n}"]).to(dev) for n in self.features if f"map/{n}" in stored}
            return values, patch_maps, stored["class_map"].astype(np.int64)
        view = self.segmented(enc)
        cm = self.aligner.align(view) if self.aligned else foreground_map(view.segments)
        parsed = self.parse(view, cm)
        results: dict[str, FeatureScore] = {}
        for bank in self.patch_banks:
            results.update(bank.score(parsed))
        for n, f in self.features.items():
            if n not in results:
                results[n] = f.score(parsed, self.states[n])
        values = {n: results[n].value for n in self.features}
        patch_maps = {
            n: r.anomaly_map for n, r in results.items()
            if isinstance(self.features[n], PatchScore) and r.anomaly_map is not None
        }
        if self._scores_dir is not None:
            entry = {f"score/{n}": np.float64(v) for n, v in values.items()}
            entry.update({f"map/{n}": m.float().cpu().numpy() for n, m in patch_maps.items()})
            entry["class_map"] = cm.astype(np.int32)
            self._store_scores(enc.key, entry)
        return values, patch_maps, cm

    # -- the scores stage of the cache ---------------------------------------------------------
    def _scores_key(self, shots: list[Encoded]):
        """Folder of this fit's stored scores, or None when the cache or its scores stage is off."""
        cache = self.cache
        if cache is None or not cache.enabled or not cache.scores:
            return None
        key = {
            "shots": [s.key for s in shots],
            "aligner": component_key(self.aligner) if self.aligned else None,
            "features": {n: component_key(f) for n, f in self.features.items()},
            "feature_norm": self.feature_norm,
            "work_size": self.work_size,
            "max_loo": self.max_loo,
            "code": code_fingerprint(),
        }
        return cache.config_dir("scores", key)

    def _cached_scores(self, name: str) -> dict[str, np.ndarray] | None:
        if self._scores_dir is None:
            return None
        want = {f"loo/{n}" for n in self.features} if name == "loo" else {f"score/{n}" for n in self.features} | {"class_map"}
        return self.cache.get("scores", self._scores_dir, name, lambda v: want <= set(v))

    def _store_scores(self, name: str, entry: dict[str, np.ndarray]) -> None:
        if self._scores_dir is not None:
            self.cache.put("scores", self._scores_dir, name, entry)

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        return self.fusion.fuse(scores)


def foreground_map(segments: np.ndarray) -> np.ndarray:
    """Class map without alignment: 1 on every segment, 0 on background."""
    return (segments > 0).astype(np.int64)


def reference_part_lut(ref_classes: np.ndarray, ref_parts: np.ndarray, unmatched_id: int) -> np.ndarray:
    """reference class id -> the true part id most of its pixels have (0 for background and
    unmatched, which never count as correct)."""
    lut = np.zeros(unmatched_id + 1, dtype=np.int64)
    for c in range(1, unmatched_id):
        vals = ref_parts[ref_classes == c]
        if vals.size:
            lut[c] = np.bincount(vals).argmax()
    return lut


def alignment_accuracy(class_map: np.ndarray, parts: np.ndarray, lut: np.ndarray) -> float:
    """Fraction of true-foreground pixels whose aligned class maps to their true part."""
    fg = parts > 0
    if not fg.any():
        return float("nan")
    pred = lut[np.clip(class_map, 0, len(lut) - 1)]
    return float((pred[fg] == parts[fg]).mean())


def foreground_iou(class_map: np.ndarray, parts: np.ndarray) -> float:
    """IoU of predicted foreground (any class) with the true foreground: segmentation quality."""
    pred, true = class_map != BACKGROUND, parts > 0
    union = (pred | true).sum()
    return float((pred & true).sum() / union) if union else float("nan")
