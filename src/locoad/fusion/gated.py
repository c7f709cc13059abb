"""Gated sum: a feature adds evidence only where it exceeds its own LOO maximum.

Patch scores often *fall* when a part is missing (less to mismatch), so in a plain sum they
dilute the histogram's evidence. Here each normalised score contributes max(0, s - 1); a small
``tie_weight`` times the mean normalised score orders the images no feature flags.
"""

from __future__ import annotations

import numpy as np

from locoad.fusion.base import Fusion


class GatedSum(Fusion):
    def __init__(self, tie_weight: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.tie_weight = tie_weight

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        norm = np.array(list(self.normalised(scores).values()))
        return np.maximum(norm - 1.0, 0.0).sum(axis=0) + self.tie_weight * norm.mean(axis=0)
