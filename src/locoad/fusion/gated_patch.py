"""Gated patch evidence: image-level scores are summed LOO-normalised (the seed's rule), patch
scores add only what exceeds their own leave-one-out maximum.

A patch score's top-2 % mean is high on every image (some patch is always far from the bank)
and moves little with a logical anomaly; summed as is, its normal spread drowns a count or
composition score that clearly fired. Gated, it contributes ``max(0, s - 1)``: nothing while it
stays within the range the shots showed, everything beyond it (a scratch). ``patch_weight``
scales the gated part against the summed part.
"""

from __future__ import annotations

import numpy as np

from locoad.fusion.base import Fusion


class GatedPatchSum(Fusion):
    def __init__(self, gated: list[str] | None = None, patch_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        # Names of the scores to gate; by default every patch score of the seven-feature model.
        self.gated = set(gated if gated is not None else ("class_agnostic_patch", "class_aware_patch", "foreground_patch"))
        self.patch_weight = patch_weight

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        norm = self.normalised(scores)
        total = np.zeros(len(next(iter(scores.values()))), dtype=np.float64)
        for name, s in norm.items():
            total += self.patch_weight * np.maximum(s - 1.0, 0.0) if name in self.gated else s
        return total
