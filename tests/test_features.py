"""Each feature on a hand-made case: the anomaly it targets raises its score."""

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
from locoad.features.class_aware_patch import ClassAwarePatchScore
from locoad.features.class_colour import ClassColourScore
from locoad.features.class_embedding import ClassEmbeddingScore
from locoad.features.class_histogram import ClassHistogramScore
from locoad.features.class_location import ClassLocationScore
from locoad.features.foreground_patch import ForegroundPatchScore
from locoad.models.seven_feature.torch_model import majority_grid
from locoad.types import ParsedImage

S, G, C = 64, 8, 4  # image size, grid, classes (background, 2 parts, unmatched)
COLOURS = {1: (200, 30, 30), 2: (30, 30, 200)}


def scene(parts: dict[int, tuple[int, int]], colours=COLOURS, scratch=False, seed=0) -> ParsedImage:
    """Square parts (class -> top-left corner) on grey; features = a noisy colour code per patch."""
    rng = np.random.default_rng(seed)
    rgb = np.full((S, S, 3), 120, np.uint8)
    cmap = np.zeros((S, S), np.int64)
    for c, (y, x) in parts.items():
        rgb[y : y + 16, x : x + 16] = colours[c]
        cmap[y : y + 16, x : x + 16] = c
    feats = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)
    feats = torch.nn.functional.avg_pool2d(feats[None], S // G)[0]
    feats = torch.cat([feats, torch.ones(1, G, G)]) + 0.01 * torch.from_numpy(rng.normal(size=(4, G, G))).float()
    if scratch:
        feats[:, 2, 2] = torch.tensor([0.0, 1.0, 0.0, -1.0])
    return ParsedImage(rgb, rgb2lab(rgb).astype(np.float32), cmap, feats, majority_grid(cmap, G, C), C)


GOOD = {1: (8, 8), 2: (8, 40)}
SHOTS = [scene(GOOD, seed=i) for i in range(3)]


def score(feature, test):
    return feature.score(test, feature.fit(SHOTS)).value


def test_extra_part_raises_histogram():
    f = ClassHistogramScore()
    extra = scene({**GOOD, 3: (40, 24)}, colours={**COLOURS, 3: (30, 200, 30)})
    assert score(f, extra) > 10 * max(score(f, scene(GOOD, seed=9)), 1e-6)


def test_missing_part_raises_histogram_and_is_not_nan_elsewhere():
    missing = scene({1: (8, 8)})
    assert score(ClassHistogramScore(), missing) > 0.05
    for f in (ClassColourScore(), ClassLocationScore(), ClassEmbeddingScore()):
        v = score(f, missing)
        assert np.isfinite(v) and v > score(f, scene(GOOD, seed=9))


@pytest.mark.parametrize("mode", ["ab", "ratio"])
def test_recoloured_part_raises_colour(mode):
    f = ClassColourScore(mode=mode)
    recoloured = scene(GOOD, colours={1: (200, 200, 30), 2: COLOURS[2]})
    assert score(f, recoloured) > 5 * max(score(f, scene(GOOD, seed=9)), 1e-3)


@pytest.mark.parametrize("mode", ["centroid", "radial"])
def test_moved_part_raises_location(mode):
    f = ClassLocationScore(mode=mode)
    moved = scene({1: (40, 40), 2: (8, 40)})
    assert score(f, moved) > 5 * max(score(f, scene(GOOD, seed=9)), 1e-3)


@pytest.mark.parametrize("mode", ["centroid", "radial"])
def test_foreground_frame_ignores_a_shift_of_everything_but_not_a_moved_part(mode):
    shifted = scene({1: (16, 14), 2: (16, 46)})  # both parts 8 px down, 6 px right
    moved = scene({1: (40, 8), 2: (8, 40)})  # one part moved relative to the other
    image, fg = ClassLocationScore(mode=mode), ClassLocationScore(mode=mode, frame="foreground")
    assert score(image, shifted) > 0.5  # the seed's image frame calls the shift a location anomaly
    assert score(fg, shifted) < 0.05
    assert score(fg, moved) > 5 * max(score(fg, shifted), 1e-3)
    with pytest.raises(ValueError, match="frame"):
        ClassLocationScore(frame="box")


@pytest.mark.parametrize("cls", [ClassAgnosticPatchScore, ForegroundPatchScore, ClassAwarePatchScore])
def test_scratch_raises_patch_scores_and_map(cls):
    f = cls(top_percent=2.0)
    state = f.fit(SHOTS)
    good, scratched = f.score(scene(GOOD, seed=9), state), f.score(scene(GOOD, seed=9, scratch=True), state)
    assert scratched.value > 3 * good.value
    assert scratched.anomaly_map.shape == (G, G)
    assert scratched.anomaly_map.flatten().argmax() == 2 * G + 2


def test_class_aware_takes_worst_class_and_handles_unseen_class():
    f = ClassAwarePatchScore()
    state = f.fit(SHOTS)
    unseen = scene({**GOOD, 3: (40, 24)}, colours={**COLOURS, 3: (30, 200, 30)})
    assert 3 not in state.groups[0].labels  # the unmatched class is compared with the union of the banks
    assert f.score(unseen, state).value > f.score(scene(GOOD, seed=9), state).value


def test_empty_foreground_scores_maximal_not_nan():
    empty = scene({})
    assert ForegroundPatchScore().score(empty, ForegroundPatchScore().fit(SHOTS)).value == 1.0


@pytest.mark.parametrize("cls", [ClassAgnosticPatchScore, ForegroundPatchScore, ClassAwarePatchScore])
def test_patch_leave_one_out_equals_refitting(cls):
    shots = SHOTS + [scene(GOOD, seed=5, scratch=True)]
    f = cls()
    fast = f.loo_scores(shots, [0, 1, 2, 3])
    slow = [f.score(shots[i], f.fit(shots[:i] + shots[i + 1 :])).value for i in range(4)]
    np.testing.assert_allclose(fast, slow, rtol=1e-6)
    assert fast[3] > fast[0]  # the scratched shot stands out against the others


def test_vectorised_eccentricity_matches_regionprops():
    from skimage.measure import label, regionprops

    from locoad.aligners.cost import SegmentDescriptors, describe_segments
    from locoad.types import SegmentedImage

    rng = np.random.default_rng(0)
    seg = label(rng.random((48, 48)) > 0.6) % 7  # irregular blobs, several per id
    seg[:3, :3] = 0
    rgb = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    desc: SegmentDescriptors = describe_segments(SegmentedImage(rgb, seg.astype(np.int32)))
    for rp in regionprops(seg):
        assert desc.shape[rp.label - 1] == pytest.approx(rp.eccentricity, abs=1e-6)
        assert desc.position[rp.label - 1] == pytest.approx((np.array(rp.centroid) + 0.5) / 48, abs=1e-9)


@pytest.mark.parametrize("make,match", [
    (lambda: ClassColourScore(scale=0.0), "class_colour scale must be > 0"),
    (lambda: ClassLocationScore(scale=-1.0), "class_location scale must be > 0"),
    (lambda: ClassColourScore(eps=0.0), "class_colour eps must be > 0"),
])
def test_a_vector_score_divisor_that_is_not_positive_is_refused(make, match):
    """scale 0 made a normal image's distance NaN; eps 0 let the a/b ratio divide by zero."""
    from locoad.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        make()
