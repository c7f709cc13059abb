"""Composition score: a missing, extra or resized piece of a part kind raises it, with colour
classes fitted on the shots (no segmenter/aligner) and with the aligner's classes."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from locoad.components.capture_jitter import CaptureJitter, light_ramp
from locoad.components.colour_kinds import ColourKinds
from locoad.features.composition import CompositionScore
from locoad.types import ParsedImage

S = 96
PIN, BOX = (220, 40, 40), (40, 60, 200)


def scene(pins: list[tuple[int, int]], pin_size: int = 8, shift: int = 0, seed: int = 0) -> ParsedImage:
    """A blue box with red pins on grey; the class map says background / box / pin."""
    rng = np.random.default_rng(seed)
    rgb = np.full((S, S, 3), 128, np.uint8)
    cmap = np.zeros((S, S), np.int64)
    rgb[10 + shift : 86 + shift, 10:86] = BOX
    cmap[10 + shift : 86 + shift, 10:86] = 1
    for y, x in pins:
        rgb[y + shift : y + shift + pin_size, x : x + pin_size] = PIN
        cmap[y + shift : y + shift + pin_size, x : x + pin_size] = 2
    rgb = np.clip(rgb.astype(np.int16) + rng.integers(-4, 5, rgb.shape), 0, 255).astype(np.uint8)
    return ParsedImage(rgb, rgb2lab(rgb).astype(np.float32), cmap, torch.zeros(1, 4, 4), torch.zeros(4, 4, dtype=torch.long), 4)


PINS = [(20, 20), (20, 50), (50, 20), (50, 50), (35, 70)]


@pytest.mark.parametrize("classes", ["colour", "aligned"])
def test_missing_extra_and_small_piece_raise_the_score(classes):
    f = CompositionScore(classes=classes, n_colours=3, top_n=1)
    state = f.fit([scene(PINS, seed=i, shift=i) for i in range(3)])
    good = f.score(scene(PINS, seed=7, shift=1), state).value
    missing = f.score(scene(PINS[:-1], seed=7), state).value
    extra = f.score(scene(PINS + [(70, 30)], seed=7), state).value
    small = f.score(scene(PINS, pin_size=4, seed=7), state).value
    assert np.isfinite(good)
    # one piece of five gone or added: a whole piece against a floor of half a piece / sqrt(3)
    assert missing >= 2.0 * np.sqrt(3) - 1e-9 and extra >= 2.0 * np.sqrt(3) - 1e-9 and good < 2.0
    assert small > 2 * good


def test_the_count_floor_shrinks_as_more_shots_agree():
    """Half a piece from one shot; k shots agreeing on a count: half a piece / sqrt(k)."""
    f = CompositionScore(classes="aligned", top_n=1)
    for k in (1, 4, 9):
        state = f.fit([scene(PINS, seed=i) for i in range(k)])
        pieces = state.floor_std[2, 1]  # the pin class's count entry; the shots agree: no std
        assert pieces == pytest.approx(0.5 / np.sqrt(k))
        assert f.score(scene(PINS[:-1], seed=11), state).value >= 2.0 * np.sqrt(k) - 1e-9


def with_blob(p: ParsedImage, y: int) -> ParsedImage:
    """``p`` with a green 6-px blob of class 3 (a kind that only some images show) at row ``y``."""
    rgb, cmap = p.rgb.copy(), p.class_map.copy()
    rgb[y : y + 6, 76:82], cmap[y : y + 6, 76:82] = (40, 200, 60), 3
    return replace(p, rgb=rgb, lab=rgb2lab(rgb).astype(np.float32), class_map=cmap)


def test_an_entry_one_shot_has_is_not_scored_with_min_seen_2():
    """A kind one of four shots shows has a position (and piece sizes) with no spread: against the
    floor alone a normal image with that kind elsewhere scores high; ``min_seen=2`` leaves those
    entries out (the kind's area, count and units, which every shot has, still count), and a
    1-shot fit scores them."""
    shots = [with_blob(scene(PINS, seed=0), 14)] + [scene(PINS, seed=i) for i in (1, 2, 3)]
    test = with_blob(scene(PINS, seed=7), 74)
    every, two = (CompositionScore(classes="aligned", top_n=1, min_seen=m) for m in (1, 2))
    high = every.score(test, every.fit(shots)).value
    assert high > 4.0  # moved by 60 px of 96 against a position floor of 0.05
    assert two.score(test, two.fit(shots)).value < 0.25 * high
    one = [with_blob(scene(PINS, seed=0), 14)]
    assert two.score(test, two.fit(one)).value == every.score(test, every.fit(one)).value
    with pytest.raises(ValueError, match="min_seen must be >= 1"):
        CompositionScore(min_seen=0)


def test_one_shot_and_bad_options():
    f = CompositionScore(n_colours=3)
    v = f.score(scene(PINS[:2]), f.fit([scene(PINS)])).value
    assert np.isfinite(v) and v > 1.0
    with pytest.raises(ValueError, match="classes"):
        CompositionScore(classes="segments")
    with pytest.raises(ValueError, match="n_colours"):
        CompositionScore(n_colours=1)
    with pytest.raises(ValueError, match="white_balance must be one of"):
        CompositionScore(white_balance="auto")


def bag(bolts: int, seed: int = 0) -> ParsedImage:
    """A light-blue bag with grey bolts on a dark background (most of the image)."""
    rng = np.random.default_rng(seed)
    rgb = np.empty((S, S, 3), np.int16)
    rgb[:] = (52, 60, 70)
    rgb[20:70, 15:80] = (167, 192, 212)
    for i in range(bolts):
        rgb[28 + 14 * i : 34 + 14 * i, 25 + 2 * seed : 65 + 2 * seed] = (122, 132, 140)
    rgb = np.clip(rgb + rng.integers(-3, 4, rgb.shape), 0, 255).astype(np.uint8)
    return ParsedImage(rgb, rgb2lab(rgb).astype(np.float32), np.zeros((S, S), np.int64), torch.zeros(1, 4, 4),
                       torch.zeros(4, 4, dtype=torch.long), 1)


def test_a_missing_bolt_on_a_light_bag_counts_on_a_dark_background():
    """With gray_world the dark background's median is made mid-grey: bag and bolts saturate to
    one white and a missing bolt is invisible; cast_and_level keeps them apart."""
    scores = {}
    for balance in ("cast_and_level", "gray_world"):
        f = CompositionScore(n_colours=4, top_n=1, white_balance=balance)
        state = f.fit([bag(3, seed=i) for i in range(3)])
        scores[balance] = f.score(bag(3, seed=5), state).value, f.score(bag(2, seed=5), state).value
    good, missing = scores["cast_and_level"]
    assert missing >= 2.0 * np.sqrt(3) - 1e-9 and missing > 2.5 * good
    good, missing = scores["gray_world"]
    assert missing < 2 * max(good, 0.5)


def test_merge_levels_keep_a_close_colour_apart():
    """White pins on a light green box are ~10 apart in scaled CIELAB: one cut at 12 merges them
    into the box's kind and a missing pin is lost in its area; with a finer cut beside it
    ([6, 12]) the pins are a kind of their own, and one piece fewer is a whole piece."""
    pin, box = (246, 246, 240), (186, 204, 190)

    def close(pins, seed):
        p = scene(pins, seed=seed, shift=seed % 3)
        rgb = p.rgb.copy()
        rgb[np.all(np.abs(p.rgb.astype(int) - PIN) < 6, axis=-1)] = pin
        rgb[np.all(np.abs(p.rgb.astype(int) - BOX) < 6, axis=-1)] = box
        return ParsedImage(rgb, rgb2lab(rgb).astype(np.float32), p.class_map, p.features, p.class_grid, 4)

    shots = [close(PINS, i) for i in range(3)]
    scores = {}
    for md in (12.0, [6.0, 12.0]):
        f = CompositionScore(n_colours=3, top_n=1, merge_distance=md)
        state = f.fit(shots)
        scores[str(md)] = [f.score(close(p, 7), state).value for p in (PINS, PINS[:-1])]
    assert scores["12.0"][1] < 2.0  # merged: the missing pin is a 1 % smaller box
    good, missing = scores["[6.0, 12.0]"]
    assert missing >= 2.0 > good
    with pytest.raises(ValueError, match="merge_distance"):
        CompositionScore(merge_distance=[])


def test_units_count_touching_pieces_that_connectivity_merges():
    """Two pins that touch are one connected piece but still two units of the shots' typical
    pin: a merge in a good image moves the piece count, not the units; a missing pin moves both."""
    touching = PINS[:-1] + [(28, 50)]  # the fifth pin right below the one at (20, 50): one 16 x 8 piece
    scores = {}
    for units in (False, True):
        f = CompositionScore(classes="aligned", top_n=1, units=units)
        state = f.fit([scene(PINS, seed=i, shift=i) for i in range(4)])
        x = f.in_units(f.describe_levels(scene(touching, seed=7), state.levels), state.unit)
        scores[units] = (x[2], f.score(scene(PINS[:-1], seed=7), state).value)
    (merged_off, _), (merged_on, missing_on) = scores[False], scores[True]
    pieces, units = merged_on[1], merged_on[-1]
    assert pieces == 4 and units == pytest.approx(5.0)  # connectivity sees 4, units still 5
    assert np.isnan(merged_off[-1])  # units off: no units entry
    assert missing_on >= 2.0 * np.sqrt(4) - 1e-9


def test_colour_kinds_keep_one_balanced_image_per_white_balance():
    """composition and instance_set read the same parsed shots; each must get its own balance."""
    p = bag(2)
    level, grey = ColourKinds(white_balance="cast_and_level").lab(p), ColourKinds(white_balance="gray_world").lab(p)
    assert np.abs(level - grey).max() > 5.0
    np.testing.assert_array_equal(ColourKinds(white_balance="gray_world").lab(p), grey)
    np.testing.assert_array_equal(ColourKinds(white_balance=True).lab(p), grey)  # older configs: true
    np.testing.assert_array_equal(ColourKinds(white_balance="none").lab(p), p.lab)


def pair(left: int, right: int, seed: int = 0) -> ParsedImage:
    """Two blue connectors with ``left`` / ``right`` red poles each, on grey."""
    rng = np.random.default_rng(seed)
    rgb = np.full((S, S, 3), 128, np.uint8)
    for x0, n, side in ((12, left, 0), (64, right, 1)):
        rgb[20:76, x0 : x0 + 20] = BOX
        for j in range(n):
            y = 24 + j * 13
            rgb[y : y + 8, x0 + 12 * side : x0 + 12 * side + 8] = PIN
    rgb = np.clip(rgb.astype(np.int16) + rng.integers(-4, 5, rgb.shape), 0, 255).astype(np.uint8)
    return ParsedImage(rgb, rgb2lab(rgb).astype(np.float32), np.zeros((S, S), np.int64),
                       torch.zeros(1, 4, 4), torch.zeros(4, 4, dtype=torch.long), 1)


def test_balance_sees_a_pair_that_does_not_match_in_any_variant():
    """Normal pairs come in two variants (2 + 2 and 4 + 4 poles); 2 + 4 has a normal total (the
    variants' mean) but unbalanced halves: two pieces more on one side (a floor of half a piece /
    sqrt(4)), where without the balance only the poles' centroid, a small shift, shows it."""
    shots = [pair(2, 2, seed=0), pair(4, 4, seed=1), pair(2, 2, seed=2), pair(4, 4, seed=3)]
    goods = [pair(2, 2, seed=7), pair(4, 4, seed=8)]
    scores = {}
    for balance in (False, True):
        f = CompositionScore(n_colours=3, top_n=1, balance=balance)
        state = f.fit(shots)
        scores[balance] = (max(f.score(g, state).value for g in goods), f.score(pair(2, 4, seed=9), state).value)
    (good_off, odd_off), (good_on, odd_on) = scores[False], scores[True]
    assert good_on == pytest.approx(good_off)  # a balanced pair: no balance evidence
    assert odd_on >= 2 / (0.5 / 2) - 1e-6 > 3 * odd_off  # two units against a quarter unit
    assert CompositionScore(balance=True).columns[-2:] == ("left_right", "top_bottom")


def test_flat_white_balance_divides_out_a_lighting_gradient():
    """Light falling off across the scene makes the right-hand of two equal pins darker: with
    ``cast_and_level`` they stay apart in lightness (and can fall into two colour kinds);
    ``flat_cast_and_level`` divides the gradient out first, fitted on the background ring."""
    rgb = np.full((S, S, 3), (90, 110, 90), np.float32)
    rgb[40:56, 10:26] = rgb[40:56, S - 26:S - 10] = (200, 60, 60)
    img = np.clip(rgb * np.exp(np.linspace(0.0, -0.6, S))[None, :, None], 0, 255).astype(np.uint8)
    p = ParsedImage(img, rgb2lab(img).astype(np.float32), np.zeros((S, S), np.int64), torch.zeros(1, 4, 4),
                    torch.zeros(4, 4, dtype=torch.long), 4)

    def lightness_gap(balance: str) -> float:
        lab = ColourKinds(white_balance=balance).lab(p)
        return abs(float(lab[40:56, 10:26, 0].mean() - lab[40:56, S - 26:S - 10, 0].mean()))

    assert lightness_gap("cast_and_level") > 10
    assert lightness_gap("flat_cast_and_level") < 2


def speckled(flecks: int, seed: int) -> ParsedImage:
    """The pin scene (larger pins) with ``flecks`` 2 x 2 px flecks of pin colour on the box:
    shading fragments just above min_piece, as a noisy capture shows some."""
    p = scene(PINS, pin_size=14, seed=seed)
    for j in range(flecks):
        y, x = 78, 14 + 6 * j
        p.rgb[y : y + 2, x : x + 2] = PIN
        p.class_map[y : y + 2, x : x + 2] = 2
    p.lab[:] = rgb2lab(p.rgb)
    return p


@pytest.mark.parametrize("classes", ["colour", "aligned"])
def test_a_kind_whose_smallest_piece_is_speckle_in_the_shots_scores_no_smallest_piece(classes):
    """Every shot has flecks of pin colour (one to three): the pins' smallest piece is a fleck. A
    good image without any jumps to a whole pin there (z above 10 without the rule), which says
    nothing."""
    shots = [speckled(1 + i % 3, seed=i) for i in range(4)]
    clean = speckled(0, seed=7)
    on = CompositionScore(classes=classes, n_colours=3, top_n=1)
    off = CompositionScore(classes=classes, n_colours=3, top_n=1, speckle=0.0)
    assert off.score(clean, off.fit(shots)).value > 10.0
    state = on.fit(shots)
    assert on.score(clean, state).value < 3.0
    # a smaller pin still counts where the smallest piece is a pin (no flecks in the shots)
    plain = on.fit([speckled(0, seed=i) for i in range(4)])
    small = scene(PINS[:-1] + [(35, 70)], pin_size=14, seed=7)
    small.rgb[35:49, 70:84], small.class_map[35:49, 70:84] = BOX, 1
    small.rgb[35:43, 70:78], small.class_map[35:43, 70:78] = PIN, 2
    small.lab[:] = rgb2lab(small.rgb)
    assert on.score(small, plain).value > 3.0
    with pytest.raises(ValueError, match="speckle"):
        CompositionScore(speckle=-1.0)


def jittered(p: ParsedImage, seed: int) -> ParsedImage:
    rgb = CaptureJitter()(p.rgb, np.random.default_rng(seed))
    return replace(p, rgb=rgb, lab=rgb2lab(rgb).astype(np.float32))


def test_capture_jitter_is_another_capture_of_the_same_scene():
    p = scene(PINS)
    a, b = (CaptureJitter()(p.rgb, np.random.default_rng(3)) for _ in range(2))
    assert a.shape == p.rgb.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    diff = np.abs(a.astype(int) - p.rgb.astype(int))
    assert diff.mean() > 1.0  # moved, lit and cast differently ...
    assert abs(float(a.mean()) - float(p.rgb.mean())) < 0.2 * float(p.rgb.mean())  # ... but the same scene


def test_light_ramp_rises_across_the_frame_in_its_direction():
    right, down = light_ramp(5, 7, torch.tensor([0.0, torch.pi / 2]))  # one frame per angle
    assert right.shape == down.shape == (5, 7)
    assert torch.allclose(right[:, 0], torch.full((5,), -1.0)) and torch.allclose(right[:, -1], torch.ones(5))
    assert torch.allclose(right[0], right[-1])  # constant down each column
    assert torch.allclose(down[0], torch.full((7,), -1.0), atol=1e-6) and torch.allclose(down[-1], torch.ones(7))


def test_capture_jitter_leaves_out_a_change_whose_range_is_zero_and_gamma_bends_the_tones():
    ramp = np.repeat(np.linspace(0, 255, 64).astype(np.uint8)[None, :, None], 3, axis=2).repeat(8, axis=0)
    still = CaptureJitter(rotation=0, blur=0, gradient=0, gain=0, noise=0)
    assert np.array_equal(still(ramp, np.random.default_rng(0)), ramp)
    toned = CaptureJitter(rotation=0, blur=0, gradient=0, gain=0, noise=0, gamma=0.3)
    out = [toned(ramp, np.random.default_rng(s)).astype(int) for s in range(6)]
    for o in out:  # black and white stay, the mid-tones move one way (an exponent, not a gain)
        assert o[0, 0, 0] == 0 and o[0, -1, 0] == 255
        d = o[0, 1:-1, 0] - ramp[0, 1:-1, 0].astype(int)
        assert np.all(d >= -1) or np.all(d <= 1)
    assert max(np.abs(o - ramp.astype(int)).max() for o in out) > 10
    with pytest.raises(ValueError, match="capture_jitter takes rotation, blur"):
        CompositionScore(capture_copies=2, capture_jitter={"tilt": 3.0})


def test_capture_copies_discount_what_a_capture_change_moves_and_keep_a_missing_piece():
    """Each shot's jittered copies show how far an entry moves under light, focus and a few
    degrees: a good image captured differently scores lower, a missing pin (which no capture
    change makes) still scores its full count evidence. The copies depend on the shot's pixels,
    not on its place among the shots."""
    shots = [scene(PINS, seed=i, shift=i) for i in range(4)]
    plain = CompositionScore(n_colours=3, top_n=1)
    copies = CompositionScore(n_colours=3, top_n=1, capture_copies=4)
    ps, cs = plain.fit(shots), copies.fit(shots)
    assert np.all(cs.floor_std >= ps.floor_std - 1e-12) and np.any(cs.floor_std > 1.05 * ps.floor_std)
    for s in range(6):
        good = jittered(scene(PINS, seed=7 + s, shift=1), s)
        assert copies.score(good, cs).value < plain.score(good, ps).value
    missing = scene(PINS[:-1], seed=7)
    assert copies.score(missing, cs).value == pytest.approx(2.0 * np.sqrt(4))  # one pin / (half a pin / sqrt(4))
    np.testing.assert_allclose(copies.fit(shots[::-1]).floor_std, cs.floor_std)
    for bad in ({"capture_copies": -1}, {"capture_copies": 2, "classes": "aligned"}):
        with pytest.raises(ValueError, match="capture_copies"):
            CompositionScore(**bad)


def test_adapted_centres_keep_a_surface_that_light_moves_toward_another_shade_in_one_kind():
    """A surface lit unevenly runs from its own shade (a = 0) to past the midpoint toward a
    neighbouring shade (a = 8, which a patch beside it has): the plain nearest-centre map cuts
    the surface in two kinds; centres that follow their pixels (at most 3 units) keep it whole,
    and the patch keeps its kind."""
    h, w = 40, 40
    lab = np.zeros((h, w, 3), np.float32)
    lab[..., 0] = 60.0
    lab[:, :30, 1] = np.linspace(0.0, 4.8, 30)[None]  # the surface
    lab[:, 30:, 1] = 8.0  # the neighbouring shade's patch
    p = ParsedImage(np.zeros((h, w, 3), np.uint8), lab, np.zeros((h, w), np.int64), torch.zeros(1, 4, 4),
                    torch.zeros(4, 4, dtype=torch.long), 4)
    centres = np.array([[30.0, 0.0, 0.0], [30.0, 8.0, 0.0]], np.float32)  # scaled: L x 0.5
    plain = ColourKinds(white_balance="none").kind_map(p, centres)
    adapted = ColourKinds(white_balance="none", adapt_centres=3.0).kind_map(p, centres)
    assert (plain[:, :30] == 0).mean() < 0.9 and (adapted[:, :30] == 0).mean() > 0.95
    assert (plain[:, 30:] == 1).all() and (adapted[:, 30:] == 1).all()
    with pytest.raises(ValueError, match="adapt_centres"):
        CompositionScore(adapt_centres=-1.0)


@pytest.mark.parametrize("spread, members", [("seed", [(3, 0), (3, 1), (3, 2)]), ("colours", [(4, 0), (3, 0), (5, 0)])])
def test_several_fits_average_the_scores_of_fits_that_differ_as_configured(spread, members):
    """fits=3: the score is the mean of three single fits configured with the member's n_colours
    and seed, on test images and leave-one-out fits alike."""
    shots = [scene(PINS, seed=i, shift=i) for i in range(3)]
    n_colours = members[0][0]
    fits = CompositionScore(n_colours=n_colours, fits=3, fit_spread=spread)
    assert [(k.n_colours, k.seed) for k in fits.members] == members
    singles = [CompositionScore(n_colours=n, seed=s) for n, s in members]
    for image in (scene(PINS, seed=7, shift=1), scene(PINS[:-1], seed=7)):
        want = np.mean([f.score(image, f.fit(shots)).value for f in singles])
        assert fits.score(image, fits.fit(shots)).value == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(fits.loo_scores(shots, [0, 2]),
                               np.mean([f.loo_scores(shots, [0, 2]) for f in singles], axis=0), rtol=1e-12)
    assert fits.score(scene(PINS[:-1], seed=7), fits.fit(shots)).value > 2 * fits.score(scene(PINS, seed=7, shift=1), fits.fit(shots)).value


def test_bad_fit_options_name_the_fix():
    with pytest.raises(ValueError, match="fits must be >= 1"):
        CompositionScore(fits=0)
    with pytest.raises(ValueError, match="needs classes=colour"):
        CompositionScore(classes="aligned", fits=2)
    with pytest.raises(ValueError, match="fit_spread must be one of seed, colours"):
        CompositionScore(fits=2, fit_spread="random")
    with pytest.raises(ValueError, match="raise n_colours or lower fits"):
        CompositionScore(n_colours=3, fits=5, fit_spread="colours")
    # colour-kind options the aligner's classes have no use for were silently off
    for key in ("swap_shades", "adapt_centres"):
        with pytest.raises(ValueError, match=f"{key} moves colour kinds and needs classes=colour"):
            CompositionScore(classes="aligned", **{key: 3.0})


@pytest.mark.parametrize("key", ["count_floor", "abs_floor", "position_floor", "chroma_floor"])
def test_a_floor_of_zero_is_refused_as_it_hid_a_missing_piece(key):
    """With count_floor 0 the shots' agreeing pin count had a z denominator of 0: the missing pin's
    infinite z was dropped as not finite and the image scored as a normal one's jitter."""
    shots = [scene(PINS, seed=i, shift=i) for i in range(4)]
    f = CompositionScore(n_colours=3)
    assert f.score(scene(PINS[:-1], seed=9), f.fit(shots)).value >= 3.0
    with pytest.raises(ValueError, match=f"{key} must be > 0"):
        CompositionScore(n_colours=3, **{key: 0.0})
    with pytest.raises(ValueError, match="rel_floor must be >= 0"):
        CompositionScore(rel_floor=-0.1)
    with pytest.raises(ValueError, match="top_n must be a whole number"):
        CompositionScore(top_n=1.5)


@pytest.mark.parametrize("level", [1.0, 1.5, 0.0])
def test_a_std_confidence_that_is_no_confidence_level_is_refused(level):
    """At 1 or above the std bound was a division by a chi-square quantile of 0 (or NaN): every z
    NaN and every image, a missing pin included, scored 0 without a word."""
    with pytest.raises(ValueError, match="std_confidence must be in"):
        CompositionScore(n_colours=3, std_confidence=level)
    f = CompositionScore(n_colours=3, std_confidence=None)
    assert f.score(scene(PINS[:-1], seed=9), f.fit([scene(PINS, seed=i, shift=i) for i in range(3)])).value > 1.0


def test_dark_chroma_keeps_a_dark_part_of_a_jittered_tint_in_its_kind():
    """Dark teeth of one kind with a per-part tint (most purple, one green) beside a neutral
    background: in plain scaled CIELAB the green tooth is nearer the background's centre than its
    own kind's, so a count drops it; with chroma faded below L = 30 it stays with the teeth, and
    the light background keeps its kind."""
    h, w = 20, 40
    lab = np.zeros((h, w, 3), np.float32)
    lab[..., 0] = 36.0  # background
    lab[5:9, 5:9] = lab[5:9, 15:19] = lab[5:9, 25:29] = (17.6, 6.7, -5.5)  # the kind's tint
    lab[12:16, 25:29] = (16.0, -2.4, 2.3)  # one tooth jittered green
    p = ParsedImage(np.zeros((h, w, 3), np.uint8), lab, np.zeros((h, w), np.int64), torch.zeros(1, 4, 4),
                    torch.zeros(4, 4, dtype=torch.long), 4)
    kinds = []
    for dark_chroma in (0.0, 30.0):
        k = ColourKinds(white_balance="none", dark_chroma=dark_chroma)
        x = k.scaled_lab(p).reshape(h, w, 3)
        centres = np.stack([x[0, 0], x[6, 6]])  # each kind's centre as its own pixels give it
        kinds.append(k.kind_map(p, centres))
    plain, faded = kinds
    assert plain[13, 26] == 0 and faded[13, 26] == 1
    assert (plain[6, 6], faded[6, 6], plain[0, 0], faded[0, 0]) == (1, 1, 0, 0)
    with pytest.raises(ValueError, match="dark_chroma"):
        CompositionScore(dark_chroma=-1.0)


def test_zero_absent_sizes_see_a_surface_that_flips_between_two_shade_kinds():
    """The box is one shade kind (1) in two shots and the other (3) in the other two; a good image
    shows its middle in one and its rim in the other. With unknown sizes the two shots that have
    kind 1 agree on its largest piece by chance (a whole box) and the smaller piece scores far off;
    with zero sizes the shots without it count as none and the spread covers it. A missing pin
    still counts."""
    def shaded(pins, box_kinds, seed):
        p = scene(pins, seed=seed)
        box = p.class_map == 1
        p.class_map[box] = box_kinds[1]
        middle = np.zeros_like(box)
        middle[29:67, 29:67] = True  # centred on the box: the kinds' centroids stay where they were
        p.class_map[box & middle] = box_kinds[0]
        return p

    shots = [shaded(PINS, (1, 1), 0), shaded(PINS, (1, 1), 1), shaded(PINS, (3, 3), 2), shaded(PINS, (3, 3), 3)]
    good, missing = shaded(PINS, (1, 3), 7), shaded(PINS[:-1], (1, 3), 7)
    unknown = CompositionScore(classes="aligned", top_n=1)
    zero = CompositionScore(classes="aligned", top_n=1, absent_sizes="zero")
    assert unknown.score(good, unknown.fit(shots)).value > 3.0
    state = zero.fit(shots)
    assert zero.score(good, state).value < 2.0
    assert zero.score(missing, state).value >= 2.0 * np.sqrt(4) - 1e-9
    with pytest.raises(ValueError, match="absent_sizes"):
        CompositionScore(absent_sizes="none")


def test_swapped_shades_compare_a_surface_that_crosses_whole_into_its_neighbouring_shade():
    """The box is one blue with a rim in a lighter shade of it (8.5 scaled units apart, nearly all
    lightness: two kinds at the cut of 6) in every shot; a good image lit otherwise shows the box in the rim's shade and the rim in
    the box's. Compared kind by kind that is a whole box gone and another come; with the shades'
    rows matched to the shots' (swap_shades above their distance) it is a good box. A missing pin
    still counts, and shades farther apart than swap_shades are not matched."""
    near = (104, 100, 249)

    def shaded(pins, seed, box, rim):
        p = scene(pins, seed=seed)
        rgb = p.rgb.copy()
        inside = np.zeros(rgb.shape[:2], bool)
        inside[10:86, 10:86] = True
        core = np.zeros_like(inside)
        core[14:82, 14:82] = True
        blue = inside & (p.class_map == 1)
        rgb[blue & core], rgb[blue & ~core] = box, rim
        return replace(p, rgb=rgb, lab=rgb2lab(rgb).astype(np.float32))

    shots = [shaded(PINS, i, BOX, near) for i in range(4)]
    good, missing = shaded(PINS, 7, near, BOX), shaded(PINS[:-1], 7, near, BOX)
    kw = dict(n_colours=4, top_n=1, white_balance="none", merge_distance=6.0)
    plain, swapped, too_far = (CompositionScore(**kw), CompositionScore(**kw, swap_shades=12.0),
                               CompositionScore(**kw, swap_shades=5.0))
    assert plain.score(good, plain.fit(shots)).value > 10.0
    state = swapped.fit(shots)
    assert swapped.score(good, state).value < 2.0
    assert swapped.score(missing, state).value >= 2.0 * np.sqrt(4) - 1e-9
    assert too_far.score(good, too_far.fit(shots)).value > 10.0
    with pytest.raises(ValueError, match="swap_shades"):
        CompositionScore(swap_shades=-1.0)


def test_capture_jitter_turns_the_capture_not_the_squeezed_square():
    """Composition's shots are captures squeezed to a square; the jitter turned the square, which
    for a 2:1 capture is a shear (horizontal edges turned by less than the angle, vertical ones
    by more)."""
    from PIL import Image

    from locoad.components.augment import RigidMove, move_images

    h, w, s = 100, 200, 128
    capture = np.zeros((h, w, 3), np.uint8)
    capture[45:55, 20:180] = 255  # a long horizontal bar
    squeeze = lambda a: np.asarray(Image.fromarray(a).resize((s, s), Image.BILINEAR)).astype(np.float64)  # noqa: E731
    jitter = CaptureJitter(rotation=6.0, blur=0.0, gradient=0.0, gain=0.0, noise=0.0)
    turned = jitter(squeeze(capture).astype(np.uint8), np.random.default_rng(4), aspect=h / w).astype(np.float64)
    angle = np.random.default_rng(4).uniform(-6.0, 6.0)  # the draw the jitter made
    x = torch.from_numpy(capture).permute(2, 0, 1)[None].float()
    truth = squeeze(move_images(x, RigidMove(angle=angle))[0].permute(1, 2, 0).clamp(0, 255).byte().numpy())
    sheared = jitter(squeeze(capture).astype(np.uint8), np.random.default_rng(4)).astype(np.float64)

    def slope(img):  # the bar's rows by column: its centre line's slope in squeezed pixels
        cols = np.arange(30, 98)
        ys = [(img[:, c, 0] * np.arange(s)).sum() / img[:, c, 0].sum() for c in cols]
        return np.polyfit(cols, ys, 1)[0]

    assert abs(angle) > 2
    assert slope(turned) == pytest.approx(slope(truth), abs=0.01)
    assert abs(slope(sheared) - slope(truth)) > 0.03  # what the square's turn made of it
