"""``fusion.log_features``: heavy-tailed scores enter as weight * log(1 + score / scale)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from locoad.fusion.loo import LeaveOneOutSum

# Two images: a normal one whose composition is 50x its LOO max (a variant no shot shows) and
# an anomaly whose patch score is 2.5x its LOO max with composition at its normal level.
SCORES = {"patch": np.array([0.8, 2.5]), "composition": np.array([50.0, 1.0])}
LOO = {"patch": np.array([0.5, 1.0]), "composition": np.array([0.7, 1.0])}
WEIGHTS = {"patch": 6.0, "composition": 2.0}


def test_log_features_keep_one_outlier_from_outweighing_the_rest():
    linear = LeaveOneOutSum(weights=WEIGHTS).fit(LOO).fuse(SCORES)
    logged = LeaveOneOutSum(weights=WEIGHTS, log_features=["composition"]).fit(LOO).fuse(SCORES)
    assert linear[0] > linear[1]  # the plain sum ranks the normal image first
    assert logged[1] > logged[0]  # with the log the anomaly ranks first
    np.testing.assert_allclose(logged, 6.0 * SCORES["patch"] + 2.0 * np.log1p(SCORES["composition"]))


def test_log_is_monotone_and_as_steep_as_the_ratio_at_one_with_weight_two():
    fusion = LeaveOneOutSum(weights={"c": 2.0}, log_features=["c"]).fit({"c": np.array([1.0])})
    r = np.linspace(0.0, 30.0, 301)
    fused = fusion.fuse({"c": r})
    assert np.all(np.diff(fused) > 0)  # every step of evidence still counts
    slope = np.gradient(fused, r)[np.searchsorted(r, 1.0)]
    assert slope == pytest.approx(1.0, rel=0.01)  # at the LOO max: as the linear rule at weight 1
    assert fusion.fuse({"c": np.array([-1.0])})[0] == 0.0  # a negative score cannot go below log(1)


def test_log_feature_that_is_not_a_feature_is_reported_and_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="locoad.fusion.loo"):
        fusion = LeaveOneOutSum(weights=WEIGHTS, log_features=["compositoin"]).fit(LOO)
    assert "compositoin not among this model's features" in caplog.text
    np.testing.assert_allclose(fusion.fuse(SCORES), LeaveOneOutSum(weights=WEIGHTS).fit(LOO).fuse(SCORES))


def test_default_fusion_logs_the_class_features(tmp_path):
    from conftest import compose_cfg
    from locoad.utils import build

    cfg = compose_cfg(["logger=none"], tmp_path / "run")
    fusion = build(cfg.fusion)
    assert fusion.log_features == {"class_location", "class_count", "composition"} <= set(cfg.features)
    assert {n: fusion.weights[n] for n in fusion.log_features} == {"class_location": 2.0, "class_count": 2.0,
                                                                  "composition": 3.0}
    assert fusion.full_weight_shots == {"composition": 3}  # 1 / 2 / 3 at k = 1 / 2 / 3+ (test_fusion_weights)
