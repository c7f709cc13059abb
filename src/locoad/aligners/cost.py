"""A cost between segments of two images, shared by the Hungarian and nearest aligners.

Each term is scaled to be about 1 for a clearly different pair, so weights are comparable:
embedding (1 - cosine of mean backbone features), colour (CIELAB distance / 50), position
(centroid distance / 0.25 of the image side), area (|log area ratio| / log 4), shape
(|eccentricity difference|).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import rgb2lab
from skimage.measure import regionprops

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
    lab = rgb2lab(image.rgb).reshape(-1, 3)
    colour = np.stack([np.bincount(ids, weights=lab[:, j], minlength=s + 1)[1:] for j in range(3)], 1) / n
    yy, xx = np.mgrid[0:h, 0:w]
    position = np.stack(
        [np.bincount(ids, weights=(yy.ravel() + 0.5) / h, minlength=s + 1)[1:],
         np.bincount(ids, weights=(xx.ravel() + 0.5) / w, minlength=s + 1)[1:]], 1
    ) / n
    shape = np.zeros(s)
    for rp in regionprops(seg):
        shape[rp.label - 1] = rp.eccentricity
    embedding = np.zeros((s, 0))
    if image.features is not None and s > 0:
        feats = image.features.detach().float().cpu().numpy()  # (D, gh, gw)
        d, gh, gw = feats.shape
        # Weight each grid cell by how many of the segment's pixels fall in it, so small
        # segments still get an embedding.
        cell = (yy * gh // h) * gw + (xx * gw // w)
        weights = np.zeros((s + 1, gh * gw))
        np.add.at(weights, (ids, cell.ravel()), 1.0)
        weights = weights[1:] / n
        embedding = weights @ feats.reshape(d, -1).T
    return SegmentDescriptors(embedding, colour, position, counts / (h * w), shape)


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
