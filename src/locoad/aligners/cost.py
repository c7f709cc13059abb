"""A cost between segments of two images, shared by the Hungarian and nearest aligners.

Each term is scaled to be about 1 for a clearly different pair, so weights are comparable:
embedding (1 - cosine of mean backbone features), colour (CIELAB distance / 50), position
(centroid distance / 0.25 of the image side), area (|log area ratio| / log 4), shape
(|eccentricity difference|).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from locoad.aligners.base import Aligner, compact_ids
from locoad.errors import ConfigError
from locoad.nested import is_number
from locoad.types import SegmentedImage

DEFAULT_WEIGHTS = {"embedding": 1.0, "colour": 1.0, "position": 1.0, "area": 0.5, "shape": 0.25}


@dataclass
class SegmentDescriptors:
    """One row per segment id 1..S (row i = segment i + 1)."""

    embedding: np.ndarray  # (S, D) or (S, 0) without features
    colour: np.ndarray  # (S, 3) mean CIELAB
    position: np.ndarray  # (S, 2) centroid (y, x) in [0, 1]
    area: np.ndarray  # (S,) fraction of the image
    shape: np.ndarray  # (S,) eccentricity


def describe_segments(image: SegmentedImage) -> SegmentDescriptors:
    seg = image.segments
    s = image.num_segments
    h, w = seg.shape
    ids = seg.ravel()
    counts = np.bincount(ids, minlength=s + 1)[1:].astype(np.float64)
    n = np.maximum(counts, 1)[:, None]
    lab = image.lab.reshape(-1, 3)
    colour = np.stack([np.bincount(ids, weights=lab[:, j], minlength=s + 1)[1:] for j in range(3)], 1) / n
    yy, xx = np.mgrid[0:h, 0:w]
    y, x = yy.ravel().astype(np.float64), xx.ravel().astype(np.float64)

    def mean(v: np.ndarray) -> np.ndarray:
        return np.bincount(ids, weights=v, minlength=s + 1)[1:] / n[:, 0]

    my, mx = mean(y), mean(x)
    position = np.stack([(my + 0.5) / h, (mx + 0.5) / w], 1)
    shape = eccentricity(mean(y * y) - my**2, mean(x * x) - mx**2, mean(y * x) - my * mx)
    embedding = np.zeros((s, 0))
    if image.features is not None and s > 0:
        feats = image.features.detach().float()  # (D, gh, gw), where the backbone left them
        d, gh, gw = feats.shape
        # Weight each grid cell by how many of the segment's pixels fall in it, so small
        # segments still get an embedding.
        cell = (yy * gh // h) * gw + (xx * gw // w)
        weights = np.bincount(ids * (gh * gw) + cell.ravel(), minlength=(s + 1) * gh * gw)
        weights = (weights.reshape(s + 1, gh * gw)[1:] / n).astype(np.float32)
        # On the features' device (the (S, cells) weights travel, not the (D, cells) features);
        # torch, not numpy: one BLAS thread pool per process (two oversubscribe a small CPU).
        cell_weights = torch.from_numpy(weights).to(feats.device)
        embedding = (cell_weights @ feats.reshape(d, -1).T).cpu().numpy().astype(np.float64)
    return SegmentDescriptors(embedding, colour, position, counts / (h * w), shape)


def eccentricity(var_y: np.ndarray, var_x: np.ndarray, cov_xy: np.ndarray) -> np.ndarray:
    """Eccentricity of the ellipse with the same second moments (skimage's regionprops
    definition), vectorised over segments: sqrt(1 - l2 / l1) of the covariance eigenvalues."""
    half_sum = (var_y + var_x) / 2
    root = np.sqrt(((var_y - var_x) / 2) ** 2 + cov_xy**2)
    l1, l2 = half_sum + root, np.maximum(half_sum - root, 0.0)
    return np.sqrt(1.0 - np.divide(l2, l1, out=np.ones_like(l1), where=l1 > 0))


def segment_cost(a: SegmentDescriptors, b: SegmentDescriptors, weights: dict[str, float] | None = None) -> np.ndarray:
    """(S_a, S_b) cost matrix; lower = more alike."""
    wt = {**DEFAULT_WEIGHTS, **(weights or {})}
    cost = np.zeros((len(a.area), len(b.area)))
    if wt["embedding"] and a.embedding.shape[1] and b.embedding.shape[1]:
        na = a.embedding / np.maximum(np.linalg.norm(a.embedding, axis=1, keepdims=True), 1e-12)
        nb = b.embedding / np.maximum(np.linalg.norm(b.embedding, axis=1, keepdims=True), 1e-12)
        cost += wt["embedding"] * (1.0 - na @ nb.T)
    cost += wt["colour"] * np.linalg.norm(a.colour[:, None] - b.colour[None], axis=-1) / 50.0
    cost += wt["position"] * np.linalg.norm(a.position[:, None] - b.position[None], axis=-1) / 0.25
    la, lb = np.log(np.maximum(a.area, 1e-8)), np.log(np.maximum(b.area, 1e-8))
    cost += wt["area"] * np.abs(la[:, None] - lb[None]) / np.log(4.0)
    cost += wt["shape"] * np.abs(a.shape[:, None] - b.shape[None])
    return cost


def check_weights(weights: dict[str, float] | None) -> None:
    """Refuse what :func:`segment_cost` would silently ignore or misread: a misspelt term
    (``color``) kept its default weight, a negative weight rewarded unlike pairs."""
    unknown = sorted(set(weights or {}) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ConfigError(f"aligner.weights: unknown terms {unknown}; use {', '.join(DEFAULT_WEIGHTS)}")
    bad = {k: v for k, v in (weights or {}).items() if not is_number(v) or v < 0}
    if bad:
        raise ConfigError(f"aligner.weights must be numbers >= 0 (0 switches a term off), got {bad}")


class CostAligner(Aligner):
    """Matches segments to reference segments by :func:`segment_cost`; subclasses choose how.

    ``group_threshold`` merges reference segments that look alike (appearance cost without
    the position term below the threshold) into one class: the pins of a box or the screws of
    a bag become one class, so class features do not depend on which identical part a
    segment was matched to.
    """

    def __init__(
        self,
        weights: dict[str, float] | None = None,
        max_cost: float | None = None,
        group_threshold: float | None = None,
    ):
        super().__init__()
        check_weights(weights)
        self.weights = weights
        self.max_cost = max_cost
        self.group_threshold = group_threshold
        self._ref_desc: SegmentDescriptors | None = None
        self._groups = np.zeros(0, dtype=np.int64)  # reference segment i+1 -> class id

    def fit(self, reference: SegmentedImage) -> CostAligner:
        super().fit(reference)
        # the reference's ids as fit kept them (gaps closed), with its features
        self._ref_desc = describe_segments(dataclasses.replace(reference, segments=self.reference.segments))
        n = self.reference.num_segments
        self._groups = np.arange(1, n + 1)
        if self.group_threshold is not None and n > 1:
            look = segment_cost(self._ref_desc, self._ref_desc, {**(self.weights or {}), "position": 0.0})
            a, b = np.nonzero(np.triu(look < self.group_threshold, k=1))
            graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
            _, comp = connected_components(graph, directed=False)
            # Number classes in order of first appearance so ids follow segment area.
            _, first = np.unique(comp, return_index=True)
            order = np.argsort(np.argsort(first))
            self._groups = order[comp] + 1
        return self

    @property
    def num_reference_classes(self) -> int:
        self.fitted_reference()
        return int(self._groups.max()) if len(self._groups) else 0

    def reference_class_map(self) -> np.ndarray:
        return self.paint(self.fitted_reference().segments, {s + 1: int(g) for s, g in enumerate(self._groups)})

    @abstractmethod
    def assign(self, cost: np.ndarray) -> dict[int, int | None]:
        """segment id (1..S) -> matched reference segment id (1..R), or None if unmatched."""

    def align(self, image: SegmentedImage) -> np.ndarray:
        self.fitted_reference()
        segments = compact_ids(image.segments)  # an id of no pixels would take a reference segment
        if segments is not image.segments:
            image = dataclasses.replace(image, segments=segments)
        if image.num_segments == 0 or self.reference.num_segments == 0:
            return np.where(image.segments > 0, self.unmatched_id, 0).astype(np.int64)
        cost = segment_cost(describe_segments(image), self._ref_desc, self.weights)
        matched = self.assign(cost)
        return self.paint(
            image.segments,
            {s: (self.unmatched_id if r is None else int(self._groups[r - 1])) for s, r in matched.items()},
        )
