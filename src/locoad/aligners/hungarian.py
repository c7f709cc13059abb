"""Hungarian alignment: a one-to-one matching of segments to reference segments
(scipy's linear_sum_assignment). Segments left over, or matched above ``max_cost``, are
"unmatched" — an extra part stays visible instead of being merged into a class."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from locoad.aligners.cost import CostAligner


class HungarianAligner(CostAligner):
    def assign(self, cost: np.ndarray) -> dict[int, int | None]:
        rows, cols = linear_sum_assignment(cost)
        out: dict[int, int | None] = {s + 1: None for s in range(cost.shape[0])}
        for r, c in zip(rows, cols):
            if self.max_cost is None or cost[r, c] <= self.max_cost:
                out[int(r) + 1] = int(c) + 1
        return out
