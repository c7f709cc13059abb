"""sPRO against hand-computed cases and a brute-force threshold loop."""

from __future__ import annotations

import numpy as np
import pytest

from locoad.metrics.spro import (
    LIMITS,
    Region,
    area_up_to,
    au_spro,
    saturation_pixels,
    spro_curve,
    spro_curves,
)

KEYS = ("0.01", "0.05", "0.1", "0.3", "1.0")


def _box(shape, rows, cols) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


def _two_regions(shape=(20, 20)):
    a, b = _box(shape, slice(2, 6), slice(2, 6)), _box(shape, slice(10, 14), slice(10, 18))
    return a, b


def test_limit_keys():
    assert tuple(au_spro([(np.zeros((4, 4)), [Region.plain(_box((4, 4), 0, 0))])]).keys()) == KEYS
    assert len(LIMITS) == 5


def test_perfect_map_is_one():
    a, b = _two_regions()
    good = np.zeros((20, 20), np.float32)
    amap = (a | b).astype(np.float32)
    out = au_spro([(good, []), (amap, [Region.plain(a), Region.plain(b)])])
    assert out == {k: pytest.approx(1.0) for k in KEYS}


def test_missing_one_of_two_regions_is_half():
    a, b = _two_regions()
    amap = np.full((20, 20), 0.5, np.float32)  # defect-free pixels in the middle
    amap[a], amap[b] = 1.0, 0.0  # region a found first, region b only after every false positive
    out = au_spro([(np.full((20, 20), 0.5, np.float32), []), (amap, [Region.plain(a), Region.plain(b)])])
    assert out == {k: pytest.approx(0.5) for k in KEYS}


def test_saturation_reached_early():
    region = _box((20, 20), slice(0, 10), slice(0, 10))  # 100 pixels
    amap = np.full((20, 20), 0.5, np.float32)
    amap[region] = 0.0
    amap[0, :10] = 1.0  # only 10 of its 100 pixels score above the background
    plain = au_spro([(amap, [Region.plain(region)])])
    saturated = au_spro([(amap, [Region(region, saturation_pixels(100, 10, relative=False))])])
    assert plain == {k: pytest.approx(0.1) for k in KEYS}
    assert saturated == {k: pytest.approx(1.0) for k in KEYS}
    # an absolute threshold above the region's area saturates at the area
    assert saturation_pixels(100, 500, relative=False) == 100


def test_relative_saturation():
    region = _box((20, 20), slice(0, 10), slice(0, 10))
    amap = np.full((20, 20), 0.5, np.float32)
    amap[region] = 0.0
    amap[0:3, :10] = 1.0  # 30 of 100 pixels found; saturation at half the area = 50 pixels
    sat = saturation_pixels(100, 0.5, relative=True)
    assert sat == 50
    # whole pixels, rounded down as the official evaluation's int(threshold * area); at least one
    assert saturation_pixels(101, 0.5, relative=True) == 50
    assert saturation_pixels(1, 0.5, relative=True) == 1
    assert au_spro([(amap, [Region(region, sat)])]) == {k: pytest.approx(30 / 50) for k in KEYS}


def test_empty_region_channel_is_skipped():
    a, b = _two_regions()
    amap = np.full((20, 20), 0.5, np.float32)
    amap[a], amap[b] = 1.0, 0.0
    empty = Region(np.zeros((20, 20), bool), 1.0)
    with_empty = au_spro([(amap, [Region.plain(a), empty, Region.plain(b)])])
    without = au_spro([(amap, [Region.plain(a), Region.plain(b)])])
    assert with_empty == without
    assert with_empty["0.05"] == pytest.approx(0.5)  # not 1/3: the empty channel is no region


def test_diagonal_curve_is_cut_at_the_limit():
    # region and defect-free pixels share the same n distinct scores: the curve is y = x
    n = 50
    amap = np.repeat(np.arange(1, n + 1, dtype=np.float32)[None], 2, axis=0)
    region = np.zeros_like(amap, bool)
    region[0] = True
    out = au_spro([(amap, [Region.plain(region)])])
    assert out == {k: pytest.approx(float(k) / 2) for k in KEYS}


def test_area_up_to_handles_vertical_steps():
    x = np.array([0.0, 0.0, 0.2, 0.2, 1.0])
    y = np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    assert area_up_to(x, y, 0.1) == pytest.approx(0.5)
    assert area_up_to(x, y, 0.4) == pytest.approx((0.2 * 0.5 + 0.2 * 1.0) / 0.4)
    with pytest.raises(ValueError, match="limit"):
        area_up_to(x, y, 0.0)


def _brute_force(images, limit):
    """sPRO curve by looping over every distinct score (all pixels), then the same area."""
    values = np.unique(np.concatenate([m.ravel() for m, _ in images]))[::-1]
    neg_total = sum(int((~np.any([r.mask for r in rs] or [np.zeros_like(m, bool)], axis=0)).sum()) for m, rs in images)
    regions = [(m, r) for m, rs in images for r in rs if r.mask.any()]
    xs, ys = [0.0], [0.0]
    for t in values:
        fp = 0
        for m, rs in images:
            inside = np.any([r.mask for r in rs], axis=0) if rs else np.zeros(m.shape, bool)
            fp += int(((m >= t) & ~inside).sum())
        s = np.mean([min(((m >= t) & r.mask).sum() / r.saturation, 1.0) for m, r in regions])
        xs.append(fp / neg_total)
        ys.append(s)
    xs.append(1.0)
    ys.append(ys[-1])
    return area_up_to(np.array(xs), np.array(ys), limit)


def test_matches_brute_force_with_ties_and_saturation():
    rng = np.random.default_rng(3)
    images = []
    for i in range(4):
        amap = rng.integers(0, 12, (9, 11)).astype(np.float32)  # many ties
        regions = []
        if i:
            for _ in range(i):
                mask = rng.random((9, 11)) < 0.15
                regions.append(Region(mask, saturation_pixels(int(mask.sum()), rng.uniform(0.3, 1.0), True)))
        images.append((amap, regions))
    curve = spro_curve(images)
    for limit in LIMITS:
        assert curve.area(limit) == pytest.approx(_brute_force(images, limit), abs=1e-12)


def test_subsets_equal_separate_computation():
    rng = np.random.default_rng(0)
    images = [(rng.random((8, 8)).astype(np.float32), [Region.plain(rng.random((8, 8)) < 0.2)] if i % 2 else [])
              for i in range(6)]
    both = spro_curves(images, {"a": [0, 1, 2], "b": [0, 3, 4, 5]})
    for name, idx in {"a": [0, 1, 2], "b": [0, 3, 4, 5]}.items():
        alone = spro_curve([images[i] for i in idx])
        assert both[name].au_spro() == alone.au_spro()


def test_undefined_without_regions_and_bad_inputs():
    with pytest.warns(UserWarning, match="no ground-truth region"):
        out = au_spro([(np.zeros((4, 4)), [])])
    assert all(np.isnan(v) for v in out.values())
    with pytest.warns(UserWarning, match="no ground-truth region"):
        curve = spro_curve([(np.zeros((4, 4)), [])])
    assert all(np.isnan(v) for v in curve.au_spro().values())  # the curve's own areas too (were 0)
    with pytest.raises(ValueError, match="differ"):
        au_spro([(np.zeros((4, 4)), [Region.plain(np.ones((5, 5), bool))])])
    with pytest.raises(ValueError, match="NaN"):
        au_spro([(np.full((4, 4), np.nan), [Region.plain(np.ones((4, 4), bool))])])
