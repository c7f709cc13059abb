"""The stage cache (``locoad.cache``) as wrappers around the stages it stores: backbone
features and label maps per image, and the scores of a fitted model (leave-one-out and per test
image). The model itself only computes; the Lightning module composes these around it when
``model.cache`` is enabled, so a sweep's jobs share the expensive stages and fusion-only jobs
skip scoring.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from locoad.backbones.ensemble import BackboneEnsemble
from locoad.cache import (
    StageCache,
    backbone_key,
    code_fingerprint,
    component_key,
    content_hash,
    segmenter_key,
)
from locoad.cache.fingerprint import jsonable
from locoad.models.seven_feature.torch_model import Encoded, SevenFeatureModel
from locoad.segmenters.base import foreground_segmenter_of


class StoredBackbone(nn.Module):
    """``backbone(images)`` with stored rows read back; the backbone runs, batched, on the misses.
    Everything else (grid size, feature norm preference...) is the wrapped backbone's."""

    def __init__(self, backbone: nn.Module, cache: StageCache):
        super().__init__()
        self.inner = backbone
        self.cache = cache

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.cache.features(self.inner, images)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "inner":
                raise
            return getattr(self.inner, name)


def stored_backbone(backbone: nn.Module, cache: StageCache) -> nn.Module:
    """``backbone`` with its features stored; an ensemble's members are stored one by one
    (in place), so the ensemble and each member alone share their stored features."""
    if isinstance(backbone, BackboneEnsemble):
        for name, member in backbone.members.items():
            if not isinstance(member, StoredBackbone):
                backbone.members[name] = StoredBackbone(member, cache)
        return backbone
    return StoredBackbone(backbone, cache)


def bare(part: Any) -> Any:
    """A backbone or segmenter without its stage-cache wrapper."""
    return part.inner if isinstance(part, (StoredBackbone, StoredSegmenter)) else part


def encoding_settings(model: SevenFeatureModel) -> dict:
    """What the encoded shots depend on besides the images, as plain values: the backbone (its
    settings and weights, each ensemble member's), the segmenter's settings, the photometric
    normalisation, the shots' moves and the work size. A checkpoint keeps the shots encoded, so
    testing it under other settings would compare shots and test images encoded differently."""
    bb = model.backbone
    members = bb.members.items() if isinstance(bb, BackboneEnsemble) else [("backbone", bb)]
    return jsonable({
        "backbone": {n: backbone_key(bare(m)) for n, m in members},
        "segmenter": segmenter_key(bare(model.segmenter)),
        "photometric": model.photometric,
        "shot_augment": model.shot_augment,
        "work_size": model.work_size,
    })


class StoredSegmenter:
    """``segmenter(rgb)`` read back when stored for the same image and segmenter settings."""

    def __init__(self, segmenter: Any, cache: StageCache):
        self.inner = segmenter
        self.cache = cache

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.cache.segments(self.inner, rgb)

    def foreground_segmenter(self) -> StoredSegmenter | None:
        """The inner segmenter's foreground segmenter, its label maps stored too."""
        inner = foreground_segmenter_of(self.inner)
        return None if inner is None else StoredSegmenter(inner, self.cache)

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "cache"):  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)


def encoded_key(enc: Encoded) -> str:
    """Content hash of everything the later stages read (image, label map, features, and a
    shot's moved copies' features); kept with the image so it is computed once."""
    key = enc.memo.get("content_key")
    if key is None:
        parts = (content_hash(enc.rgb), content_hash(enc.segments), content_hash(enc.features.float()),
                 f"aspect={enc.aspect!r}")  # the capture's shape: a score may measure at its scale
        if enc.foreground is not None:
            parts += (content_hash(enc.foreground),)
        if enc.augmented is not None:  # a shot's moved copies are in the patch memory too
            parts += (content_hash(enc.augmented.float()),)
        key = enc.memo["content_key"] = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    return key


class StoredScores:
    """``fit`` and ``score`` of a :class:`SevenFeatureModel`, with the leave-one-out scores and
    each test image's scores stored per fit (keyed by the shots' content, the aligner, the
    features with their settings and a hash of the package source, so an edited feature is never
    served stale scores). Same results as the model's own ``fit`` / ``score``."""

    def __init__(self, model: SevenFeatureModel, cache: StageCache):
        self.model = model
        self.cache = cache
        self._dir = None  # this fit's folder in the cache

    def fit(self, shots: list[Encoded]) -> None:
        m = self.model
        m.fit_memory(shots)
        self._dir = self.cache.config_dir("scores", {
            "shots": [encoded_key(s) for s in shots],
            "aligner": component_key(m.aligner) if m.aligned else None,
            "features": {n: component_key(f) for n, f in m.features.items()},
            "feature_norm": m.feature_norm,
            "work_size": m.work_size,
            "max_loo": m.max_loo,
            "shot_augment": m.shot_augment,
            "reference": m.reference,
            "loo_reference": m.loo_reference,
            "code": code_fingerprint(),
        })
        stored = self._get("loo", {f"loo/{n}" for n in m.features})
        if stored is not None:
            m.calibrate({n: stored[f"loo/{n}"] for n in m.features})
            return
        m.calibrate()
        self._put("loo", {f"loo/{n}": np.asarray(v, dtype=np.float64) for n, v in m.loo_scores.items()})

    def score(self, encoded: list[Encoded]) -> tuple[dict[str, np.ndarray], torch.Tensor | None, list[np.ndarray]]:
        scores, amap, _, class_maps = self.score_with_maps(encoded)
        return scores, amap, class_maps

    def score_with_maps(self, encoded: list[Encoded]) -> tuple[
            dict[str, np.ndarray], torch.Tensor | None, dict[str, torch.Tensor], list[np.ndarray]]:
        m = self.model
        if self._dir is None:
            raise RuntimeError("StoredScores.score before fit: fit through the wrapper")
        values: dict[str, list[float]] = {n: [0.0] * len(encoded) for n in m.features}
        patch_maps: list[dict[str, torch.Tensor]] = [{} for _ in encoded]
        class_maps: list[np.ndarray | None] = [None] * len(encoded)
        want = {f"score/{n}" for n in m.features} | {"class_map"}
        todo = []
        for i, enc in enumerate(encoded):
            stored = self._get(encoded_key(enc), want)
            if stored is None:
                todo.append(i)
                continue
            for n in m.features:
                values[n][i] = float(stored[f"score/{n}"])
                if f"map/{n}" in stored:
                    patch_maps[i][n] = torch.from_numpy(stored[f"map/{n}"]).to(enc.features.device)
            class_maps[i] = stored["class_map"].astype(np.int64)
        if todo:
            v, pm, cm = m.score_parts([encoded[i] for i in todo])
            for j, i in enumerate(todo):
                for n in m.features:
                    values[n][i] = v[n][j]
                patch_maps[i], class_maps[i] = pm[j], cm[j]
                entry = {f"score/{n}": np.float64(values[n][i]) for n in m.features}
                entry.update({f"map/{n}": t.float().cpu().numpy() for n, t in patch_maps[i].items()})
                entry["class_map"] = class_maps[i].astype(np.int32)
                self._put(encoded_key(encoded[i]), entry)
        return m.assemble(values, patch_maps, class_maps)  # type: ignore[arg-type]

    def _get(self, name: str, want: set[str]) -> dict[str, np.ndarray] | None:
        return self.cache.get("scores", self._dir, name, lambda v: want <= set(v))

    def _put(self, name: str, entry: dict[str, np.ndarray]) -> None:
        self.cache.put("scores", self._dir, name, entry)
