"""Hungarian alignment: a one-to-one matching of segments to reference classes
(scipy's linear_sum_assignment). Segments left over, or matched above ``max_cost``, are
"unmatched" — an extra part stays visible instead of being merged into a class."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from locoad.aligners.base import Aligner
from locoad.aligners.cost import SegmentDescriptors, describe_segments, segment_cost
from locoad.types import SegmentedImage


class HungarianAligner(Aligner):
    def __init__(self, weights: dict[str, float] | None = None, max_cost: float | None = None, reference_index: int = 0):
        super().__init__(reference_index)
        self.weights = weights
        self.max_cost = max_cost
        self._ref_desc: SegmentDescriptors | None = None

    def fit(self, reference: SegmentedImage) -> HungarianAligner:
        super().fit(reference)
        self._ref_desc = describe_segments(reference)
        return self

    def assign(self, cost: np.ndarray) -> dict[int, int]:
        rows, cols = linear_sum_assignment(cost)
        out = {s + 1: self.unmatched_id for s in range(cost.shape[0])}
        for r, c in zip(rows, cols):
            if self.max_cost is None or cost[r, c] <= self.max_cost:
                out[r + 1] = c + 1
        return out

    def align(self, image: SegmentedImage) -> np.ndarray:
        if self._ref_desc is None:
            raise RuntimeError("aligner used before fit(reference)")
        if image.num_segments == 0 or self.num_reference_classes == 0:
            return np.where(image.segments > 0, self.unmatched_id, 0).astype(np.int64)
        cost = segment_cost(describe_segments(image), self._ref_desc, self.weights)
        return self.paint(image.segments, self.assign(cost))
