"""Region merging of the Felzenszwalb segmenter: single linkage chains, centroid linkage does not."""

from __future__ import annotations

import numpy as np
import pytest

from locoad.errors import ConfigError
from locoad.segmenters.felzenszwalb import (
    FelzenszwalbSegmenter,
    merge_hierarchical,
    merge_similar_regions,
    region_half_width,
)


def _two_sides_and_strip(width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Regions 0 (left, L=30), 1 (a strip ``width`` px wide, L=50), 2 (right, L=70)."""
    regions = np.zeros((20, 21), dtype=np.int64)
    regions[:, 10 : 10 + width] = 1
    regions[:, 10 + width :] = 2
    lab = np.zeros((20, 21, 3))
    lab[..., 0] = np.choose(regions, [30.0, 50.0, 70.0])
    return regions, lab


def test_single_linkage_chains_through_an_edge_strip():
    regions, lab = _two_sides_and_strip()
    merged = merge_similar_regions(regions, lab, threshold=25.0)
    assert len(np.unique(merged)) == 1  # the documented failure of ``components``


def test_hierarchical_absorbs_the_strip_and_keeps_both_sides():
    regions, lab = _two_sides_and_strip()
    merged = merge_hierarchical(regions, lab, threshold=25.0, strip_width=1.0)
    assert len(np.unique(merged)) == 2
    assert merged[0, 0] != merged[0, -1]
    # The strip joins one of its sides, it is not left as a region of its own.
    assert merged[0, 10] in (merged[0, 0], merged[0, -1])


def test_hierarchical_without_strip_absorption_keeps_wide_middle_region():
    regions, lab = _two_sides_and_strip(width=6)
    merged = merge_hierarchical(regions, lab, threshold=15.0, strip_width=1.0)
    assert len(np.unique(merged)) == 3  # 6 px wide is a part, and 20 apart is not similar


def test_hierarchical_merges_similar_neighbours_and_updates_means():
    # Four stripes 28, 30, 32, 60: the first three merge (means stay close), the last does not.
    regions = np.repeat(np.arange(4)[None], 8, axis=0).repeat(5, axis=1)
    lab = np.zeros((*regions.shape, 3))
    lab[..., 0] = np.choose(regions, [28.0, 30.0, 32.0, 60.0])
    merged = merge_hierarchical(regions, lab, threshold=5.0, strip_width=0.0)
    assert len(np.unique(merged[:, :15])) == 1
    assert merged[0, -1] != merged[0, 0]


def test_region_half_width():
    regions, _ = _two_sides_and_strip(width=1)
    half = region_half_width(regions)
    assert half[1] <= 1.0 < half[0]
    regions, _ = _two_sides_and_strip(width=6)
    assert 2.0 < region_half_width(regions)[1] <= 3.5


def test_segmenter_hierarchical_separates_box_from_its_compartments():
    # A dark box with lighter compartments on a pale table, blurred edges: both merge rules
    # must keep the compartments; hierarchical must keep them apart from the box frame.
    rng = np.random.default_rng(0)
    img = np.full((96, 96, 3), 200, dtype=np.float64)
    img[16:80, 16:80] = (58, 64, 76)
    for y0 in (20, 50):
        for x0 in (20, 50):
            img[y0 : y0 + 26, x0 : x0 + 26] = (128, 138, 150)
    from scipy.ndimage import gaussian_filter

    img = gaussian_filter(img, sigma=(1.0, 1.0, 0)) + rng.normal(0, 2, img.shape)
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    seg = FelzenszwalbSegmenter(work_size=96, merge="hierarchical", min_area=0.002)(rgb)
    frame, cell = seg[17, 48], seg[30, 30]
    assert frame > 0 and cell > 0 and frame != cell
    cells = {seg[30, 30], seg[30, 60], seg[60, 30], seg[60, 60]}
    assert len(cells) == 4 and 0 not in cells


def test_segmenter_rejects_unknown_merge():
    with pytest.raises(ValueError, match="merge"):
        FelzenszwalbSegmenter(merge="average")


@pytest.mark.parametrize(("key", "value"), [("min_area", 1.0), ("min_area", -0.1), ("max_segments", 0),
                                            ("max_segments", -1), ("max_segments", 8.0)])
def test_segmenter_rejects_post_processing_out_of_range(key, value):
    """max_segments=-1 once cut the smallest segment off, min_area=1 emptied every label map."""
    with pytest.raises(ConfigError, match=f"segmenter.{key}"):
        FelzenszwalbSegmenter(**{key: value})
