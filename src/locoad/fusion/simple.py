"""Simple rules: raw weighted sum, max of normalised scores, mean rank."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from locoad.errors import ConfigError
from locoad.fusion.base import Fusion


class WeightedSum(Fusion):
    """Sum of raw scores times ``weights`` (no LOO normalisation): the naive baseline."""

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        return np.sum([self.weights.get(n, 1.0) * np.asarray(s, np.float64) for n, s in scores.items()], axis=0)

    def map_weight(self, name: str) -> float:
        return self.weights.get(name, 1.0)  # raw, like the image scores


class MaxNormalised(Fusion):
    """The largest LOO-normalised score: one feature far outside its normal range suffices. A
    score and its weight-sharing copies (``shared_weights``) count as one, their terms summed."""

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        return np.max(list(self.grouped(self.normalised(scores)).values()), axis=0)


class MeanRank(Fusion):
    """Weighted mean over features of each image's rank within the test set (scale-free).

    Ranks are invariant to any positive scaling, so ``weights`` weight the ranks themselves
    (not the scores, where they would have no effect); weight 0 drops a feature.
    Transductive: the fused score of an image depends on the other test images.
    """

    transductive = True

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        used = {n: s for n, s in scores.items() if self.weights.get(n, 1.0) != 0}
        if not used:
            raise ConfigError("fusion.weights switch off every feature; give at least one a non-zero weight")
        w = np.array([self.weights.get(n, 1.0) for n in used], dtype=np.float64)
        if (w < 0).any():
            raise ConfigError(f"fusion=rank needs non-negative fusion.weights, got {self.weights}")
        ranks = np.array([rankdata(np.asarray(s, np.float64)) / len(s) for s in used.values()])
        return (w[:, None] * ranks).sum(axis=0) / w.sum()
