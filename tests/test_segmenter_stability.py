"""benchmarks/segmenter_stability.py: the foreground agreement of two captures of the same scenes."""

from __future__ import annotations

import numpy as np
import pytest
import segmenter_stability

from locoad.data import heldout
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter


def test_foreground_agreement_measures_iou_and_segment_counts():
    a = np.zeros((4, 4), np.int32)
    a[:2, :2] = 1  # 4 foreground pixels
    b = np.zeros((4, 4), np.int32)
    b[:2, :] = 1  # 8, covering a's
    c = b.copy()
    c[:2, 2:] = 2  # the same foreground as b, in two segments
    row = segmenter_stability.foreground_agreement([a, b], [b, c])
    assert row["iou_mean"] == pytest.approx(0.75)  # 0.5 and 1.0
    assert row["iou_min"] == pytest.approx(0.5)
    assert row["below_0.9"] == pytest.approx(0.5)
    assert row["segment_count_differs"] == pytest.approx(0.5)  # b has 1 segment, c 2
    assert row["images"] == 2


def test_two_captures_both_without_foreground_agree():
    """No foreground at either size is the same foreground, not a moved one."""
    empty = np.zeros((4, 4), np.int32)
    row = segmenter_stability.foreground_agreement([empty], [empty.copy()])
    assert row["iou_min"] == 1.0 and row["below_0.9"] == 0.0


def test_the_same_capture_read_twice_is_perfectly_stable_and_two_sizes_are_compared(tmp_path):
    roots = [heldout.generate_heldout(tmp_path / f"x{f}", seed=0, size_factor=f, categories=["cable_pair"], n_train=1,
                                      n_validation=1, n_test_good=1, n_logical=1, n_structural=1, capture="clean")
             for f in (0.1, 0.2)]
    seg = FelzenszwalbSegmenter()
    small, large = (segmenter_stability.read_split_images(str(r), "cable_pair", 64, 64) for r in roots)
    assert len(small) == len(large) == 4 and small[0].shape == (64, 64, 3) and small[0].dtype == np.uint8
    same = segmenter_stability.foreground_agreement([seg(x) for x in small], [seg(x) for x in small])
    assert same["iou_min"] == 1.0 and same["segment_count_differs"] == 0.0
    other = segmenter_stability.foreground_agreement([seg(x) for x in small], [seg(x) for x in large])
    assert 0.0 <= other["iou_min"] <= other["iou_mean"] <= 1.0


def test_the_foreground_patch_scores_own_foreground_is_measured_too():
    names = ["felzenszwalb", "border_colour"]
    segs = segmenter_stability.measured_segmenters(names, [])
    assert list(segs) == ["felzenszwalb", "felzenszwalb/foreground", "border_colour"]  # the default's
    assert segs["felzenszwalb/foreground"].strip_width == 0.0 and segs["felzenszwalb"].strip_width > 0
    off = segmenter_stability.measured_segmenters(["felzenszwalb"], ["segmenter.foreground_strip_width=null"])
    assert list(off) == ["felzenszwalb"]
