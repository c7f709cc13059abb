"""The MVTec LOCO AD evaluation on top of :mod:`locoad.metrics.spro`.

AU-sPRO of logical and structural anomalies apart (the good images added to each) and their
mean, with anomaly maps resized to each image's ground-truth resolution; per-defect image AUROC
(one defect's images against the good ones).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from locoad.data.ground_truth import LocoGroundTruth
from locoad.metrics.image import TYPES, auroc
from locoad.metrics.spro import LIMITS, Region, limit_key, spro_curves

log = logging.getLogger(__name__)


def resize_map(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) anomaly map bilinearly resized to ``size`` = (H, W), float32.

    The map covers the whole (square-resized) image, so each axis scales on its own.
    """
    a = np.asarray(amap, dtype=np.float32)
    if a.shape == tuple(size):
        return a
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


class _AtGroundTruth(Sequence):
    """images[i] = (map i at the ground truth's resolution, regions of sample i)."""

    def __init__(self, maps: Sequence[np.ndarray], gt: LocoGroundTruth):
        self.maps, self.gt = maps, gt

    def __len__(self) -> int:
        return len(self.maps)

    def __getitem__(self, i: int) -> tuple[np.ndarray, list[Region]]:
        return resize_map(self.maps[i], self.gt.size(i)), self.gt.regions(i)


def type_subsets(gt: LocoGroundTruth) -> dict[str, list[int]]:
    """"logical"/"structural" -> indices of the good images plus that type's images with masks.

    Anomalous images without ground truth are left out: their pixels are not defect-free.
    """
    kinds = [s.anomaly_type for s in gt.samples]
    good = [i for i, k in enumerate(kinds) if k == "good"]
    out = {}
    for short, folder in TYPES.items():
        with_gt = [i for i, k in enumerate(kinds) if k == folder and gt.samples[i].masks]
        if with_gt:
            out[short] = good + with_gt
    return out


def loco_au_spro(maps: Sequence[np.ndarray], gt: LocoGroundTruth,
                 limits: Sequence[float] = LIMITS) -> dict[str, dict[str, float]] | None:
    """{"logical"|"structural"|"mean": {limit: AU-sPRO}}; ``maps[i]`` belongs to ``gt.samples[i]``.

    "mean" averages the types present. None when no test image has ground truth.
    """
    if len(maps) != len(gt):
        raise ValueError(f"{len(maps)} anomaly maps for {len(gt)} ground-truth samples")
    subsets = type_subsets(gt)
    if not subsets:
        return None
    curves = spro_curves(_AtGroundTruth(maps, gt), subsets)
    out = {t: {limit_key(lim): float(c.area(lim)) if c.n_regions and c.n_negatives else float("nan")
               for lim in limits} for t, c in curves.items()}
    out["mean"] = {k: float(np.mean([out[t][k] for t in subsets])) for k in out[next(iter(subsets))]}
    return out


def loco_au_spro_maps(maps: Mapping[str, Sequence[np.ndarray]], gt: LocoGroundTruth, workers: int = 1,
                      limits: Sequence[float] = LIMITS) -> dict[str, dict[str, dict[str, float]] | None]:
    """:func:`loco_au_spro` of several scores' maps (name -> maps in ``gt``'s order), ``workers``
    at a time: numpy's sorts and binary searches, its cost at LOCO resolution, release the GIL."""
    if not maps:
        return {}
    for i in range(len(gt)):
        gt.size(i)  # every mask read once, before threads share the ground truth's cache
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(maps)))) as pool:
        return dict(zip(maps, pool.map(lambda m: loco_au_spro(m, gt, limits), maps.values())))


def per_defect_auroc(scores: np.ndarray, labels: np.ndarray, defects: Sequence[Sequence[str]]) -> dict[str, dict]:
    """{defect name: {"auroc", "n"}}: the images showing that defect against the good images."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    good = labels == 0
    names = sorted({d for names in defects for d in names})
    out = {}
    for name in names:
        has = np.array([name in d for d in defects])
        keep = good | has
        out[name] = {"auroc": auroc(has[keep].astype(int), scores[keep]), "n": int(has.sum())}
    return out
