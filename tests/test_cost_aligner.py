"""The cost aligners (Hungarian, nearest): their settings and edge inputs."""

from __future__ import annotations

import pytest

from locoad.aligners.hungarian import HungarianAligner
from locoad.aligners.nearest import NearestAligner
from locoad.errors import ConfigError


@pytest.mark.parametrize("aligner", [HungarianAligner, NearestAligner])
@pytest.mark.parametrize(("kwargs", "key"), [
    ({"weights": {"color": 2.0}}, "aligner.weights"),  # misspelt: once silently kept colour at 1.0
    ({"weights": {"colour": -1.0}}, "aligner.weights"),
    ({"weights": {"colour": "1"}}, "aligner.weights"),
])
def test_misspelt_or_negative_weights_are_refused(aligner, kwargs, key):
    with pytest.raises(ConfigError, match=key):
        aligner(**kwargs)


def test_yaml_weights_are_accepted():
    from omegaconf import OmegaConf

    w = OmegaConf.create({"embedding": 1.0, "colour": 1.0, "position": 1.0, "area": 0.5, "shape": 0})
    assert HungarianAligner(weights=w, max_cost=0, group_threshold=0.6).weights is w
