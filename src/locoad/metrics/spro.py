"""Saturated per-region overlap (sPRO), the localisation metric of MVTec LOCO AD, computed exactly.

A region is one ground-truth channel (one PNG of ``ground_truth/<type>/<id>/``) with a saturation
threshold in pixels. At an anomaly-score threshold t its sPRO is
``min(|{p in region: map(p) >= t}| / saturation, 1)``; the curve's y value is the mean over all
regions of the images evaluated, its x value the false-positive rate over every pixel of those
images that lies in no region (good images included). AU-sPRO up to a false-positive-rate limit
is the area under that curve up to the limit, divided by the limit.

The curve here is exact (every distinct score is a threshold), with no per-threshold loop:

1. the region pixels' scores are sorted once; each pixel's rank inside its own region gives the
   gain in that region's saturated overlap, and a cumulative sum of the gains in score order is
   the mean sPRO after every distinct score;
2. the defect-free pixels of each image are sorted and binned against those distinct scores
   (``np.searchsorted``, run lengths; one image at a time, so memory stays at one image; images
   shared by several subsets, e.g. the good ones, are binned once) and a reverse cumulative sum
   gives the false positives at every threshold.

Between two region scores only the false-positive rate moves (a horizontal segment), so the
polyline through "just above" and "at" every region score is the curve through every distinct
score of all pixels: the area is exact, including tied scores (a diagonal segment).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LIMITS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.3, 1.0)


def limit_key(limit: float) -> str:
    """The metrics.json key of a limit: "0.01", "0.05", "0.1", "0.3", "1.0"."""
    return repr(float(limit))


@dataclass(frozen=True)
class Region:
    """One ground-truth region: a (H, W) bool mask and its saturation threshold in pixels."""

    mask: np.ndarray
    saturation: float

    @classmethod
    def plain(cls, mask: np.ndarray) -> Region:
        """Saturation = the region's area: plain per-region overlap (PRO)."""
        mask = np.asarray(mask, dtype=bool)
        return cls(mask, float(mask.sum()))


def saturation_pixels(area: int, threshold: float, relative: bool) -> float:
    """Pixels of overlap at which a region of ``area`` pixels saturates.

    Relative: a fraction of the area, rounded down to whole pixels as the official MVTec LOCO
    evaluation does (``int(threshold * area)``), at least one pixel (the official code would
    divide by zero there). Absolute: a pixel count, capped at the area (a region smaller than the
    threshold is fully found when all of it is found).
    """
    if relative:
        return float(max(int(float(threshold) * area), 1))
    return min(float(threshold), float(area))


@dataclass
class SproCurve:
    """Vertices of the sPRO curve: ``fpr`` non-decreasing from 0 to 1, ``spro`` the mean sPRO."""

    fpr: np.ndarray
    spro: np.ndarray
    n_regions: int
    n_negatives: int

    def area(self, limit: float) -> float:
        """Area under the curve for fpr in [0, limit], divided by ``limit``; NaN where the curve
        is undefined (no region or no defect-free pixel)."""
        if not (self.n_regions and self.n_negatives):
            return math.nan
        return area_up_to(self.fpr, self.spro, limit)

    def au_spro(self, limits: Sequence[float] = LIMITS) -> dict[str, float]:
        return {limit_key(lim): self.area(lim) for lim in limits}


def area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area of the polyline (x, y) over x in [0, limit], divided by ``limit``.

    ``x`` must be non-decreasing (vertical steps allowed); the segment crossing the limit is cut
    with linear interpolation.
    """
    if not 0 < limit <= 1:
        raise ValueError(f"integration limit must lie in (0, 1], got {limit}")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    end = min(int(np.searchsorted(x, limit, side="right")) + 1, len(x))  # x is sorted
    x, y = x[:end], y[:end]
    x0, x1, y0, y1 = x[:-1], x[1:], y[:-1], y[1:]
    inside = x1 <= limit
    area = float(np.sum((x1[inside] - x0[inside]) * (y0[inside] + y1[inside]) / 2))
    cut = np.flatnonzero((x0 < limit) & (x1 > limit))
    if cut.size:
        i = cut[0]
        y_lim = y0[i] + (y1[i] - y0[i]) * (limit - x0[i]) / (x1[i] - x0[i])
        area += (limit - x0[i]) * (y0[i] + y_lim) / 2
    return area / limit


class _Subset:
    """Region scores of one image subset, sorted once: the mean sPRO at every distinct score."""

    def __init__(self, scores: list[np.ndarray], saturations: list[float]):
        self.n_regions = len(saturations)
        if not self.n_regions:
            self.thresholds = np.zeros(0, np.float32)
            self.spro = np.zeros(0)
            return
        sizes = np.array([len(s) for s in scores])
        values = np.concatenate(scores)
        region = np.repeat(np.arange(self.n_regions), sizes)
        order = np.argsort(-values, kind="stable")
        values, region = values[order], region[order]
        # Rank of each pixel inside its own region in descending score order (1 = highest):
        # a stable sort by region keeps the score order inside each region.
        by_region = np.argsort(region, kind="stable")
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        rank = np.empty(len(values), np.int64)
        rank[by_region] = np.arange(len(values)) - np.repeat(starts, sizes) + 1
        sat = np.asarray(saturations, dtype=np.float64)[region]
        gain = np.minimum(rank / sat, 1.0) - np.minimum((rank - 1) / sat, 1.0)
        spro = np.cumsum(gain) / self.n_regions
        last = np.r_[values[1:] != values[:-1], True]  # the last pixel of every tie group
        self.thresholds = values[last][::-1].copy()  # ascending distinct region scores
        self.spro = spro[last][::-1].copy()  # mean sPRO at each of those thresholds

    def curve(self, above: np.ndarray, at: np.ndarray, n_negatives: int) -> SproCurve:
        """The curve from the defect-free pixels strictly above / exactly at each threshold."""
        if not self.n_regions or not n_negatives:
            return SproCurve(np.array([np.nan]), np.array([np.nan]), self.n_regions, n_negatives)
        fpr_gt, fpr_ge = above / n_negatives, (above + at) / n_negatives
        spro_prev = np.r_[self.spro[1:], 0.0]  # sPRO just above threshold j (ascending order)
        # Walk from the highest threshold down: (0, 0), then "just above" and "at" each one.
        fpr = np.r_[0.0, np.column_stack([fpr_gt, fpr_ge])[::-1].ravel(), 1.0]
        spro = np.r_[0.0, np.column_stack([spro_prev, self.spro])[::-1].ravel(), self.spro[0]]
        return SproCurve(fpr, spro, self.n_regions, n_negatives)


class _Negatives:
    """Histogram of defect-free scores against sorted thresholds ``t``: how many fall in
    (t[j-1], t[j]] (``count_gt``, index len(t) = above all) and exactly on t[j] (``count_eq``)."""

    def __init__(self, thresholds: np.ndarray):
        self.t = thresholds
        self.n = 0
        self.count_gt = np.zeros(len(thresholds) + 1, np.int64)
        self.count_eq = np.zeros(len(thresholds), np.int64)

    def add(self, negatives: np.ndarray) -> None:
        self.n += negatives.size
        if not len(self.t) or not negatives.size:
            return
        # Sorted needles make the binary searches walk the thresholds in order: ~10x faster
        # than random access into millions of thresholds (the cost that dominates at LOCO size).
        negatives = np.sort(negatives)
        idx = np.searchsorted(self.t, negatives, side="left")  # t[idx-1] < v <= t[idx]
        tied = idx[self.t[np.minimum(idx, len(self.t) - 1)] == negatives]
        for counts, sorted_idx in ((self.count_gt, idx), (self.count_eq, tied)):
            # idx is sorted: add run lengths (O(pixels)) instead of a full-length bincount
            start = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]]) if sorted_idx.size else sorted_idx
            counts[sorted_idx[start]] += np.diff(np.r_[start, sorted_idx.size])

    def at(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts strictly above and exactly at each of ``thresholds`` (a subset of ``t``)."""
        above_all = np.cumsum(self.count_gt[::-1])[::-1][1:]  # above_all[k]: scores > t[k]
        pos = np.searchsorted(self.t, thresholds)
        return above_all[pos], self.count_eq[pos]


ImageItem = tuple[np.ndarray, Sequence[Region]]


def _check(i: int, amap: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    amap = np.asarray(amap, dtype=np.float32)
    if amap.ndim != 2:
        raise ValueError(f"image {i}: anomaly map must be (H, W), got shape {amap.shape}")
    if not np.isfinite(amap).all():
        raise ValueError(f"image {i}: anomaly map holds NaN or inf; fix the score that produced it")
    for r in regions:
        if r.mask.shape != amap.shape:
            raise ValueError(
                f"image {i}: region mask {r.mask.shape} and anomaly map {amap.shape} differ; "
                "resize the map to the ground truth's resolution first"
            )
    return amap


def spro_curves(images: Sequence[ImageItem], subsets: Mapping[str, Sequence[int]]) -> dict[str, SproCurve]:
    """The sPRO curve of every subset of ``images`` (name -> image indices).

    ``images[i]`` is (anomaly map (H, W), regions of that image); it is read twice (region
    scores, then false positives), so a lazy sequence that loads on access keeps memory at one
    image. Regions with an empty mask are skipped (they hold no pixel to find). A subset
    without regions or without defect-free pixels gets a NaN curve, with a warning.
    """
    members: dict[int, list[str]] = {}
    for name, idx in subsets.items():
        for i in idx:
            members.setdefault(int(i), []).append(name)
    scores: dict[str, list[np.ndarray]] = {n: [] for n in subsets}
    sats: dict[str, list[float]] = {n: [] for n in subsets}
    for i in sorted(members):
        amap, regions = images[i]
        amap = _check(i, amap, regions)
        for r in regions:
            if r.mask.any():
                if not r.saturation > 0:
                    raise ValueError(f"image {i}: saturation threshold must be > 0, got {r.saturation}")
                vals = amap[r.mask]
                for name in members[i]:
                    scores[name].append(vals)
                    sats[name].append(float(r.saturation))
    state = {n: _Subset(scores[n], sats[n]) for n in subsets}
    del scores
    # One histogram per membership (e.g. the good images belong to every subset), over the
    # union of all subsets' thresholds: every image's defect-free pixels are binned once.
    union = np.unique(np.concatenate([s.thresholds for s in state.values()]))
    counters: dict[tuple[str, ...], _Negatives] = {}
    for i in sorted(members):
        amap, regions = images[i]
        amap = _check(i, amap, regions)
        inside = np.zeros(amap.shape, bool)
        for r in regions:
            inside |= r.mask
        counters.setdefault(tuple(members[i]), _Negatives(union)).add(amap[~inside])
    curves = {}
    for name, sub in state.items():
        mine = [c for key, c in counters.items() if name in key]
        counts = [c.at(sub.thresholds) for c in mine]
        above, at = sum(a for a, _ in counts), sum(e for _, e in counts)
        curves[name] = sub.curve(above, at, sum(c.n for c in mine))
    for name, c in curves.items():
        if not c.n_regions or not c.n_negatives:
            what = "no ground-truth region" if not c.n_regions else "no defect-free pixel"
            warnings.warn(f"sPRO of {name!r} undefined: {what}; returning NaN", stacklevel=2)
    return curves


def spro_curve(images: Sequence[ImageItem]) -> SproCurve:
    """The sPRO curve over all ``images`` (see :func:`spro_curves`)."""
    return spro_curves(images, {"all": range(len(images))})["all"]


def au_spro(images: Sequence[ImageItem], limits: Sequence[float] = LIMITS) -> dict[str, float]:
    """AU-sPRO of ``images`` at every limit, keyed by :func:`limit_key`."""
    curve = spro_curve(images)
    if np.isnan(curve.fpr).any():
        return {limit_key(lim): float("nan") for lim in limits}
    return curve.au_spro(limits)
