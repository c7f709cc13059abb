"""The cost aligners (Hungarian, nearest): their settings and edge inputs."""

from __future__ import annotations

import numpy as np
import pytest

from locoad.aligners.hungarian import HungarianAligner
from locoad.aligners.nearest import NearestAligner
from locoad.errors import ConfigError
from locoad.types import SegmentedImage


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


def _parts_with_a_gap() -> tuple[SegmentedImage, SegmentedImage]:
    """A reference with segment ids 1 and 3 (no 2) and a target showing the same two parts and
    an extra green one."""
    rgb = np.full((40, 40, 3), 128, np.uint8)
    rgb[2:10, 2:10], rgb[20:30, 20:30], rgb[30:38, 2:8] = (255, 0, 0), (0, 0, 255), (0, 255, 0)
    ref = np.zeros((40, 40), np.int32)
    ref[2:10, 2:10], ref[20:30, 20:30] = 1, 3
    tgt = np.zeros((40, 40), np.int32)
    tgt[2:10, 2:10], tgt[20:30, 20:30], tgt[30:38, 2:8] = 1, 2, 3
    return SegmentedImage(rgb, ref), SegmentedImage(rgb, tgt)


@pytest.mark.parametrize("group_threshold", [None, 0.6])
def test_a_gap_in_the_reference_ids_is_no_class(group_threshold):
    """Segment id 2 of no pixels was a reference class nothing shows, and the one-to-one
    matching gave it to the extra part instead of calling that part unmatched."""
    ref, tgt = _parts_with_a_gap()
    for aligner in (HungarianAligner(group_threshold=group_threshold), NearestAligner(group_threshold=group_threshold)):
        aligner.fit(ref)
        assert aligner.num_reference_classes == 2 and aligner.unmatched_id == 3
        assert set(np.unique(aligner.reference_class_map())) == {0, 1, 2}
    out = HungarianAligner(group_threshold=group_threshold).fit(ref).align(tgt)
    assert out[5, 5] == 1 and out[25, 25] == 2 and out[33, 4] == 3  # the extra part: unmatched


def test_a_gap_in_the_target_ids_changes_nothing():
    ref, tgt = _parts_with_a_gap()
    gap = SegmentedImage(tgt.rgb, np.where(tgt.segments == 3, 5, tgt.segments))
    aligner = HungarianAligner().fit(tgt)
    np.testing.assert_array_equal(aligner.align(gap), aligner.align(tgt))


@pytest.mark.parametrize("aligner", [HungarianAligner, NearestAligner])
@pytest.mark.parametrize("call", [
    lambda a: a.reference_class_map(),  # once an AttributeError ('NoneType' has no attribute 'segments')
    lambda a: a.align(_parts_with_a_gap()[1]),
    lambda a: a.num_reference_classes,
], ids=["reference_class_map", "align", "num_reference_classes"])
def test_an_aligner_used_before_fit_says_so_in_one_line(aligner, call):
    with pytest.raises(RuntimeError, match=rf"{aligner.__name__} used before fit\(reference\): call fit"):
        call(aligner())
