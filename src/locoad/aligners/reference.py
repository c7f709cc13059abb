"""Which shot to align to: the seed takes the first, but one odd first shot (a part hidden, two
parts merged by the segmenter) then mislabels every other image's segments. ``most_typical``
picks the shot whose segments the other shots match best under the aligners' own cost."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from locoad.aligners.cost import SegmentDescriptors, describe_segments, segment_cost
from locoad.types import SegmentedImage

# Cost of a segment left without a partner: about that of a clearly different pair
# (each term of segment_cost is scaled to ~1 for one).
UNMATCHED_COST = 1.0


def matching_cost(a: SegmentDescriptors, b: SegmentDescriptors, weights: dict[str, float] | None = None) -> float:
    """Mean cost per segment of the best one-to-one matching between two images' segments,
    unmatched segments included."""
    na, nb = len(a.area), len(b.area)
    if max(na, nb) == 0:
        return 0.0
    if min(na, nb) == 0:
        return UNMATCHED_COST
    cost = segment_cost(a, b, weights)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum() + UNMATCHED_COST * abs(na - nb)) / max(na, nb)


def most_typical(views: list[SegmentedImage], weights: dict[str, float] | None = None) -> int:
    """Index of the image with the least total :func:`matching_cost` to the others (the first
    on ties, and for fewer than three images, where no image is more typical than another)."""
    if len(views) < 3:
        return 0
    desc = [describe_segments(v) for v in views]
    n = len(desc)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d[i, j] = d[j, i] = matching_cost(desc[i], desc[j], weights)
    return int(np.argmin(d.sum(1)))
