"""The seed's rule: divide each score by its leave-one-out maximum over the k shots, then sum.

``log_features`` enter as ``log(1 + r)`` of their normalised score ``r`` instead of ``r``: for
heavy-tailed scores. The class features' (composition, class location, class count) follow a
segmentation or alignment error, or a variant of the product no shot shows, and then give one
normal image 20-80 times their leave-one-out maximum, which in a plain sum outweighs every other
score's evidence. Their log still rises with every step of evidence but cannot drown the rest.
The anomaly map (the patch scores' maps) stays linear.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from locoad.fusion.base import Fusion, warn_unknown


class LeaveOneOutSum(Fusion):
    def __init__(self, log_features: Sequence[str] = (), **kwargs):
        super().__init__(**kwargs)
        self._named_log = frozenset(log_features)
        self.log_features = self.with_copies(log_features)  # a score's copies enter as it does

    def fit(self, loo_scores: dict[str, np.ndarray], shots: int | None = None) -> LeaveOneOutSum:
        warn_unknown("log_features", self._named_log, loo_scores)
        return super().fit(loo_scores, shots)

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        terms = [self.weights.get(n, 1.0) * (np.log1p(np.maximum(r, 0.0)) if n in self.log_features else r)
                 for n, r in self.ratios(scores).items()]
        return np.sum(terms, axis=0)
