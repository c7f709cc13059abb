"""The two kinds of feature score: patch scores (kNN over a patch memory bank) and vector
scores (nearest-neighbour dissimilarity of one per-image descriptor).

Every score has two halves, ``fit(shots) -> state`` and ``score(parsed, state)``; the
leave-one-out calibration calls the same two halves on k - 1 shots.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from locoad.components.knn import group_median, worst_group_top_percent
from locoad.errors import ConfigError
from locoad.nested import is_number
from locoad.types import BACKGROUND, ParsedImage


@dataclass
class FeatureScore:
    value: float
    anomaly_map: torch.Tensor | None = None  # (h, w) on the patch grid, patch scores only


class Feature(ABC):
    """A named anomaly score. ``name`` is the key in scores.csv and metrics.json."""

    name: str = "feature"
    # False for scores that only look at patches or the foreground: with no score that needs
    # aligned classes, the model skips alignment altogether (e.g. the anomalydino preset).
    needs_classes: bool = True
    # True for scores that read ``ParsedImage.foreground_grid``: only then does the model run
    # the segmenter's foreground segmenter, where it has one.
    reads_foreground: bool = False

    @abstractmethod
    def fit(self, shots: list[ParsedImage]) -> Any:
        """Build this score's memory from the normal shots."""

    @abstractmethod
    def score(self, parsed: ParsedImage, state: Any) -> FeatureScore:
        """Anomaly score of one image against the fitted state (higher = more anomalous)."""

    def loo_scores(self, shots: list[ParsedImage], held: list[int]) -> np.ndarray:
        """Score of each held-out shot ``i`` against a memory fitted on the other shots."""
        return self.loo_floored(np.array([self.score(shots[i], self.fit(shots[:i] + shots[i + 1 :])).value
                                          for i in held]))

    def loo_floored(self, scores: np.ndarray) -> np.ndarray:
        """Leave-one-out scores as the calibration takes them (a score may floor them)."""
        return scores


def missing_backbone_part(score: str, part: str, have: Iterable[str]) -> ValueError:
    """The error for a patch score whose ``backbone_part`` the backbone does not have (``have``:
    the backbone's member names), raised where the model is built or, used alone, where it scores."""
    names = ", ".join(have) or "none (one backbone)"
    return ValueError(f"{score} reads backbone part {part!r}, the backbone's parts are {names}: choose an ensemble "
                      "backbone with that member (e.g. backbone=efficientnet_lite0_lite2) or remove that score")


LOCAL_SCALES = ("none", "nearest", "mean")


class PatchScore(Feature):
    """kNN cosine distance of patches to a memory bank, per group of patches.

    Subclasses define the groups (:meth:`groups`): all patches, the foreground, or one group
    per class. The image score is the mean of the ``top_percent`` most distant patches of a
    group, and the worst group wins. Patches of a group no shot has (e.g. an unmatched
    segment) are compared with the union of all groups' banks, so they still count.

    ``baseline="median"`` first subtracts each group's median distance in the image (map and
    score, floored at 0): a capture or a part colour that moves every patch of the image away
    from the shots (a tint, blur, noise) lifts the median with the top patches, a defect only
    the top patches.

    ``backbone_part`` (with a backbone ensemble, ``backbones/ensemble.py``): the member whose
    features this score searches; None: the primary member's (the only one without an ensemble).

    ``local_scale`` (``nearest`` | ``mean``; ``none``: off): a patch's distance is taken to the
    memory patch that minimises the distance minus that memory patch's own distance to the other
    shots (the same moved copy): to the nearest patch of any other shot (``nearest``), or to each
    other shot's nearest patch, averaged over the shots (``mean``: the same whether a shot is held
    out or not, so the leave-one-out calibration sees the scale the test images see). Where the
    shots differ among themselves (loose parts that touch anew in every bag) a new patch is
    expected and counts less, where they agree it counts more. Needs at least three shots (two,
    once one is held out); below that the plain distance. ``local_scale_cap`` (a quantile in (0, 1),
    null: none) caps every memory patch's scale at that quantile of the bank's: a memory patch
    unlike every other shot's (a unique arrangement of loose parts) then cannot become the nearest
    of every novel patch by its large scale alone.
    """

    def __init__(
        self,
        top_percent: float = 2.0,
        chunk_size: int = 4096,
        half: bool = False,
        coreset_ratio: float | None = None,
        coreset_max: int | None = None,
        coreset_projection_dim: int | None = 128,
        coreset_seed: int = 0,
        baseline: str = "none",
        backbone_part: str | None = None,
        local_scale: str = "none",
        local_scale_cap: float | None = None,
    ):
        check_baseline(self.name, baseline)
        if coreset_ratio is not None and not 0.0 < coreset_ratio <= 1.0:
            raise ConfigError(f"coreset_ratio must be in (0, 1] or null, got {coreset_ratio}")
        if coreset_max is not None and coreset_max < 1:
            raise ConfigError(f"coreset_max must be >= 1 or null, got {coreset_max}")
        if local_scale not in LOCAL_SCALES:
            raise ConfigError(f"{self.name} local_scale must be one of {LOCAL_SCALES}, got {local_scale!r}")
        if local_scale != "none" and (coreset_ratio is not None or coreset_max is not None):
            raise ConfigError(f"{self.name}: local_scale compares every shot patch with every other shot's, which a "
                              "coreset bank is too large for; set coreset_ratio and coreset_max to null or local_scale=none")
        if local_scale_cap is not None and not 0.0 < local_scale_cap < 1.0:
            raise ConfigError(f"{self.name} local_scale_cap must be a quantile in (0, 1) or null, got {local_scale_cap}")
        if local_scale_cap is not None and local_scale == "none":
            raise ConfigError(f"{self.name}: local_scale_cap caps the local scale, which is off; set local_scale=nearest|mean "
                              "or local_scale_cap=null")
        if not is_number(top_percent) or not 0 < top_percent <= 100:
            # above 100 the top-k mean read past its image into the next one of the batch
            raise ConfigError(f"{self.name} top_percent must be in (0, 100] (the share of patches averaged), got {top_percent!r}")
        self.top_percent = top_percent
        self.chunk_size = chunk_size
        self.half = half
        # Greedy k-center subsampling of the bank's grouped rows (PatchCore): coreset_ratio of
        # them, at most coreset_max; both null = exact search against every shot patch.
        self.coreset_ratio = coreset_ratio
        self.coreset_max = coreset_max
        self.coreset_projection_dim = coreset_projection_dim
        self.coreset_seed = coreset_seed
        self.baseline = baseline
        self.backbone_part = backbone_part
        self.local_scale = local_scale
        self.local_scale_cap = local_scale_cap

    def features_of(self, parsed: ParsedImage) -> torch.Tensor:
        """The (D, h, w) patch features this score searches (``backbone_part``)."""
        if self.backbone_part is None:
            return parsed.features
        if parsed.parts is None or self.backbone_part not in parsed.parts:
            raise missing_backbone_part(self.name, self.backbone_part, parsed.parts or {})
        return parsed.parts[self.backbone_part]

    @abstractmethod
    def groups(self, parsed: ParsedImage) -> dict[int, torch.Tensor]:
        """group id -> (h, w) bool mask of the patches in that group."""

    @property
    def exact(self) -> bool:
        """True when the bank is every shot patch (no coreset), so scores can share one bank."""
        return self.coreset_ratio is None and self.coreset_max is None

    def query_labels(self, parsed: ParsedImage, shot_foreground: torch.Tensor) -> torch.Tensor:
        """(h*w,) group ids of a scored image's patches; ``shot_foreground``: (k, h, w) bool, the
        foreground of the shots in memory (the moved copies left out). Default: :meth:`labels`."""
        return self.labels(parsed)

    def labels(self, parsed: ParsedImage) -> torch.Tensor:
        """(h*w,) group id of every patch, row-major; -1 for patches in no group."""
        out = torch.full((parsed.class_grid.numel(),), -1, dtype=torch.long, device=parsed.class_grid.device)
        for g, m in self.groups(parsed).items():
            out[m.flatten().to(out.device)] = g
        return out

    def fit(self, shots: list[ParsedImage]) -> Any:
        """This score's memory on its own: a :class:`SharedPatchBank` of this one score (the model
        shares one bank among the patch scores with equal settings; one way to score a patch)."""
        from locoad.features.shared_patch_bank import SharedPatchBank  # it builds on this module

        return SharedPatchBank({self.name: self}, shots)

    def score(self, parsed: ParsedImage, state: Any) -> FeatureScore:
        return state.score(parsed)[self.name]

    def loo_scores(self, shots: list[ParsedImage], held: list[int]) -> np.ndarray:
        """Leave-one-out by masking the held-out shot's rows of the full bank (no refit; with a coreset,
        a refit on the other shots: :meth:`SharedPatchBank.loo_scores`)."""
        return self.fit(shots).loo_scores(shots, held)[self.name]

    def aggregate(self, parsed: ParsedImage, dist: torch.Tensor, labels: torch.Tensor) -> FeatureScore:
        """Image score and anomaly map from per-patch distances (h*w,) and group labels (h*w,)."""
        h, w = parsed.features.shape[-2:]
        value, amap = self.aggregate_batch(dist[None], labels[None], parsed.num_classes)
        return FeatureScore(float(value[0]), amap.view(h, w))

    def aggregate_batch(self, dist: torch.Tensor, labels: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`aggregate_patch_distances` at this score's ``top_percent`` and ``baseline``."""
        return aggregate_patch_distances(dist, labels, num_groups, self.top_percent, self.baseline)


def check_baseline(score: str, baseline: str) -> None:
    """A patch score's ``baseline`` is ``"none"`` or ``"median"``."""
    if baseline not in ("none", "median"):
        raise ConfigError(f"{score} baseline must be 'none' or 'median', got {baseline!r}")


def aggregate_patch_distances(dist: torch.Tensor, labels: torch.Tensor, num_groups: int, top_percent: float,
                              baseline: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Image scores (B,) and anomaly maps (B, n) from per-patch distances (B, n) and group
    labels (B, n) (ids below ``num_groups``, the parsed images' ``num_classes``; < 0: in no group):
    the mean of the ``top_percent`` most distant patches of each group (after the group's median
    with ``baseline="median"``), worst group wins. Device ops only."""
    inside = labels >= 0
    num_groups = max(num_groups, 2)
    if baseline == "median":
        med = group_median(dist, labels, num_groups).nan_to_num(0.0)
        dist = (dist - med.gather(1, labels.clamp(0, num_groups - 1))).clamp_min(0.0)
    amap = torch.where(inside, dist, torch.zeros_like(dist))
    best = worst_group_top_percent(dist, labels, num_groups, top_percent)
    # No patch of this kind in the image (e.g. no foreground found): the image lacks
    # everything the shots had, which is maximally anomalous for a cosine distance of
    # unit vectors with non-negative similarity.
    value = torch.where(torch.isinf(best), torch.ones_like(best), best.clamp_min(0.0))
    return value, amap


class VectorScore(Feature):
    """Per-class descriptors compared with the k shots' descriptors; score = distance to the
    nearest shot.

    :meth:`describe` gives (values (C, d), present (C,)) with C = ``num_classes`` (index 0 is
    background and ignored). Per-class distance is ``min(||a - b|| / scale, 1)`` when the class
    is present in both images and 1 when present in only one, so an absent class is neither
    NaN nor a silent zero. Classes are averaged over those present in either image
    (``reduce=mean``) or the worst one taken (``reduce=max``).
    """

    def __init__(self, scale: float = 1.0, reduce: str = "mean"):
        if reduce not in ("mean", "max"):
            raise ConfigError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        if not scale > 0:
            raise ConfigError(f"{self.name} scale must be > 0 (it divides distances), got {scale}")
        self.scale = scale
        self.reduce = reduce

    @abstractmethod
    def describe(self, parsed: ParsedImage) -> tuple[np.ndarray, np.ndarray]:
        """(values (C, d), present (C,) bool)."""

    def class_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per-class distance between two (C, d) descriptors (before scaling)."""
        return np.linalg.norm(a - b, axis=-1)

    def distance(self, x: tuple[np.ndarray, np.ndarray], y: tuple[np.ndarray, np.ndarray]) -> float:
        (va, pa), (vb, pb) = x, y
        n = max(len(pa), len(pb))
        va, pa, vb, pb = _pad(va, n), _pad(pa, n), _pad(vb, n), _pad(pb, n)
        pa, pb = pa.copy(), pb.copy()
        pa[BACKGROUND] = pb[BACKGROUND] = False
        either, both = pa | pb, pa & pb
        if not either.any():
            return 0.0
        d = np.ones(n)
        d[both] = np.minimum(self.class_distance(va[both], vb[both]) / self.scale, 1.0)
        d = d[either]
        return float(d.mean() if self.reduce == "mean" else d.max())

    def fit(self, shots: list[ParsedImage]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.describe(p) for p in shots]

    def score(self, parsed: ParsedImage, state: list[tuple[np.ndarray, np.ndarray]]) -> FeatureScore:
        x = self.describe(parsed)
        return FeatureScore(min(self.distance(x, s) for s in state))


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    if len(a) >= n:
        return a
    pad = np.zeros((n - len(a), *a.shape[1:]), dtype=a.dtype)
    return np.concatenate([a, pad])


def class_masks(class_map: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, H, W) one-hot masks of a class map."""
    return class_map[None] == np.arange(num_classes)[:, None, None]
