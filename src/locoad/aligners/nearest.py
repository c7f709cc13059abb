"""Nearest alignment: each segment takes its nearest reference class (many-to-one), or
"unmatched" when even the nearest costs more than ``max_cost``."""

from __future__ import annotations

import numpy as np

from locoad.aligners.hungarian import HungarianAligner


class NearestAligner(HungarianAligner):
    def assign(self, cost: np.ndarray) -> dict[int, int]:
        best = cost.argmin(axis=1)
        out = {}
        for s, c in enumerate(best):
            ok = self.max_cost is None or cost[s, c] <= self.max_cost
            out[s + 1] = int(c) + 1 if ok else self.unmatched_id
        return out
