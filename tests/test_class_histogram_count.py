"""Instance counts in the class histogram: a missing or extra small part changes the count by
one whatever its size, while size jitter of the other parts does not change it at all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from locoad.features.class_histogram import ClassHistogramScore, class_instance_counts
from locoad.types import ParsedImage

S = 64


def parsed(cmap: np.ndarray, num_classes: int = 4) -> ParsedImage:
    rgb = np.zeros((S, S, 3), np.uint8)
    return ParsedImage(rgb, rgb.astype(np.float32), cmap, torch.zeros(1, 8, 8),
                       torch.zeros(8, 8, dtype=torch.long), num_classes)


def pins(n: int, size: int = 4, big: int = 20, extra_unmatched: int = 0) -> np.ndarray:
    """A big part (class 1, ``big`` px square) and ``n`` small pins of class 2; extra pins of
    the unmatched class 3."""
    cmap = np.zeros((S, S), np.int64)
    cmap[2 : 2 + big, 2 : 2 + big] = 1
    for k in range(n + extra_unmatched):
        y, x = 40 + (k // 5) * 8, 4 + (k % 5) * 10
        cmap[y : y + size, x : x + size] = 2 if k < n else 3
    return cmap


def test_class_instance_counts():
    counts = class_instance_counts(pins(5, extra_unmatched=2), 4)
    assert counts.tolist()[1:] == [1, 5, 2]
    # Regions under min_pixels are ignored.
    assert class_instance_counts(pins(5, size=2), 4, min_pixels=5)[2] == 0


def test_count_sees_a_missing_pin_that_area_jitter_hides():
    shots = [parsed(pins(6, big=b)) for b in (18, 20, 22)]
    jittered = parsed(pins(6, big=21))  # normal: the big part a bit larger
    missing = parsed(pins(5, big=20))  # one pin fewer
    area, count = ClassHistogramScore(mode="area"), ClassHistogramScore(mode="count")
    # By area the missing 16 px pin is below the big part's normal jitter ...
    assert area.score(missing, area.fit(shots)).value <= area.score(jittered, area.fit(shots)).value
    # ... by count it is exactly one instance, and the normal image is 0.
    assert count.score(jittered, count.fit(shots)).value == 0.0
    assert count.score(missing, count.fit(shots)).value == 1.0


def test_count_sees_an_extra_unmatched_part():
    f = ClassHistogramScore(mode="count")
    state = f.fit([parsed(pins(4))])
    assert f.score(parsed(pins(4, extra_unmatched=1)), state).value == 1.0


def test_both_adds_weighted_count_to_area():
    shots = [parsed(pins(6))]
    test = parsed(pins(5))
    a = ClassHistogramScore(mode="area")
    b = ClassHistogramScore(mode="both", count_weight=0.5)
    va = a.score(test, a.fit(shots)).value
    assert b.score(test, b.fit(shots)).value == pytest.approx(va + 0.5)


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        ClassHistogramScore(mode="volume")


def test_loo_floor_is_one_instance_in_count_mode():
    shots = [parsed(pins(6)) for _ in range(3)]  # identical counts: raw LOO scores are 0
    assert ClassHistogramScore(mode="count").loo_scores(shots, [0, 1, 2]).tolist() == [1.0] * 3
    assert ClassHistogramScore(mode="area").loo_scores(shots, [0, 1, 2]).tolist() == [0.0] * 3
    assert ClassHistogramScore(mode="both", count_weight=0.02).loo_scores(shots, [0]).tolist() == [0.02]
    assert ClassHistogramScore(mode="count", loo_floor=0.0).loo_scores(shots, [0]).tolist() == [0.0]
