"""Gated sum: a feature adds evidence only where it exceeds its own LOO maximum.

Patch scores often *fall* when a part is missing (less to mismatch), so in a plain sum they
dilute the histogram's evidence. Here each score contributes ``w * max(0, r - 1)`` (r: the score
over its LOO maximum, w its weight: the gate is on the ratio, so a weight below 1, such as a
score's share of ``shared_weights``, does not raise the bar); a small ``tie_weight`` times the
mean weighted ratio (a score and its copies as one) orders the images no feature flags.
"""

from __future__ import annotations

import numpy as np

from locoad.fusion.base import Fusion


class GatedSum(Fusion):
    def __init__(self, tie_weight: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.tie_weight = tie_weight

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        ratios = self.ratios(scores)
        weights = {n: self.weights.get(n, 1.0) for n in ratios}
        evidence = np.sum([weights[n] * np.maximum(r - 1.0, 0.0) for n, r in ratios.items()], axis=0)
        ties = np.mean(list(self.grouped({n: weights[n] * r for n, r in ratios.items()}).values()), axis=0)
        return evidence + self.tie_weight * ties
