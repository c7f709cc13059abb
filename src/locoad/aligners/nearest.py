"""Nearest alignment: each segment takes its nearest reference segment's class
(many-to-one), or "unmatched" when even the nearest costs more than ``max_cost``."""

from __future__ import annotations

import numpy as np

from locoad.aligners.cost import CostAligner


class NearestAligner(CostAligner):
    def assign(self, cost: np.ndarray) -> dict[int, int | None]:
        best = cost.argmin(axis=1)
        return {
            s + 1: (int(c) + 1 if self.max_cost is None or cost[s, c] <= self.max_cost else None)
            for s, c in enumerate(best)
        }
