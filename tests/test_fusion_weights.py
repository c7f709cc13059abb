"""Fusion rules honour ``fusion.weights`` (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from locoad.fusion.simple import MeanRank


def test_rank_fusion_weights_change_the_result():
    # a and b order the four images in opposite ways; ranks used to be taken after a positive
    # scaling by the weight, so w=1 and w=10 gave the same output.
    scores = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([4.0, 3.0, 2.0, 1.0])}
    loo = {"a": np.array([1.0, 2.0]), "b": np.array([1.0, 2.0])}
    equal = MeanRank().fit(loo).fuse(scores)
    heavy_a = MeanRank(weights={"a": 10.0}).fit(loo).fuse(scores)
    only_b = MeanRank(weights={"a": 0.0}).fit(loo).fuse(scores)
    np.testing.assert_allclose(equal, 0.625)  # every image ties
    assert np.all(np.diff(heavy_a) > 0)  # a dominates: its order
    np.testing.assert_allclose(only_b, [1.0, 0.75, 0.5, 0.25])  # b alone
    with pytest.raises(ValueError, match="non-zero weight"):
        MeanRank(weights={"a": 0.0, "b": 0.0}).fit(loo).fuse(scores)
