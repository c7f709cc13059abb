"""Simple rules: raw weighted sum, max of normalised scores, mean rank."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from locoad.fusion.base import Fusion


class WeightedSum(Fusion):
    """Sum of raw scores times ``weights`` (no LOO normalisation): the naive baseline."""

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        return np.sum([self.weights.get(n, 1.0) * np.asarray(s, np.float64) for n, s in scores.items()], axis=0)


class MaxNormalised(Fusion):
    """The largest LOO-normalised score: one feature far outside its normal range suffices."""

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        return np.max(list(self.normalised(scores).values()), axis=0)


class MeanRank(Fusion):
    """Mean over features of each image's rank within the test set (scale-free).

    Transductive: the fused score of an image depends on the other test images.
    """

    transductive = True

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        norm = self.normalised(scores)
        ranks = [rankdata(s) / len(s) for s in norm.values()]
        return np.mean(ranks, axis=0)
