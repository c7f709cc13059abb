"""Symmetry: balances that hold in every shot are rules; a test image is scored by how far it breaks them."""

import numpy as np
import pytest
from skimage.color import rgb2lab

from locoad.features.symmetry import SymmetryScore, balance_chance
from locoad.types import ParsedImage
from test_composition import BOX, PIN, pair  # two connectors with n poles each

SHOTS = [pair(2, 2, seed=0), pair(4, 4, seed=1), pair(2, 2, seed=2), pair(4, 4, seed=3)]


@pytest.mark.parametrize("measure", ["pieces", "area"])
def test_a_pair_that_matches_in_no_variant_breaks_the_rule(measure):
    """2 + 4 poles: a normal total (between the variants), but two poles more on one side."""
    f = SymmetryScore(n_colours=3, measure=measure)
    state = f.fit(SHOTS)
    assert state.rules.any()
    assert [f.score(pair(n, n, seed=7 + n), state).value for n in (2, 4)] == [1.0, 1.0]
    assert f.score(pair(2, 4, seed=9), state).value == pytest.approx(2 / 0.5, rel=0.1)
    assert f.score(pair(3, 2, seed=9), state).value == pytest.approx(1 / 0.5, rel=0.1)


def test_no_rule_where_a_shot_is_unbalanced_or_from_one_shot():
    """Loose parts that fall to either side in some shot carry no rule, and one or two shots balance by
    chance: the score is then 1 for every image, so it ranks nothing."""
    f = SymmetryScore(n_colours=3)
    loose = f.fit([*SHOTS[:3], pair(4, 2, seed=3)])
    one = f.fit(SHOTS[:2])
    for state in (loose, one):
        assert not state.rules.any()
        assert f.score(pair(2, 4, seed=9), state).value == 1.0
    # with the chance test off (two shots of 4 and 8 poles balance by chance 1 time in 10)
    assert SymmetryScore(n_colours=3, min_shots=2, max_chance=None).fit(SHOTS[:2]).rules.any()
    assert not SymmetryScore(n_colours=3, min_shots=2).fit(SHOTS[:2]).rules.any()


def test_loose_pairs_that_balance_by_chance_carry_no_rule():
    """One pole a side (a pair of loose parts) balances by chance 1 time in 2: four shots agree
    1 time in 16, too often for a rule that good images then break; eight shots agree 1 time in 256."""
    f = SymmetryScore(n_colours=3)
    pairs = [pair(1, 1, seed=s) for s in range(8)]
    assert not f.fit(pairs[:4]).rules.any()
    assert SymmetryScore(n_colours=3, max_chance=None).fit(pairs[:4]).rules.any()  # the old rule
    assert f.fit(pairs).rules.any()
    assert f.fit(SHOTS).rules.any()  # 4 + 8 + 4 + 8 poles: 1 time in 95


def test_balance_chance_is_the_central_binomial_mass():
    assert balance_chance(np.array([2, 4, 3, 0, np.nan]), 0.5) == pytest.approx([0.5, 0.375, 0.0, 1.0, 1.0])
    assert balance_chance(np.array([3]), 1.0) == pytest.approx([0.75])  # within one piece: 1 - 2 / 8


def test_bad_settings_say_which():
    with pytest.raises(ValueError, match="floor"):
        SymmetryScore(floor=0)
    with pytest.raises(ValueError, match="min_shots"):
        SymmetryScore(min_shots=0)
    with pytest.raises(ValueError, match="max_chance"):
        SymmetryScore(max_chance=0)
    with pytest.raises(ValueError, match="merge_distance"):
        SymmetryScore(merge_distance=[])


def painted(p: ParsedImage, rows: slice, cols: slice) -> ParsedImage:
    """``p`` with a block of the poles' colour at ``rows``, ``cols``."""
    rgb = p.rgb.copy()
    rgb[rows, cols] = PIN
    return ParsedImage(rgb, rgb2lab(rgb).astype(np.float32), p.class_map, p.features, p.class_grid, 1)


def with_middle_pole(p: ParsedImage) -> ParsedImage:
    return painted(p, np.s_[44:52], np.s_[44:52])  # on the foreground's vertical centre line


def test_no_rule_for_a_kind_with_a_piece_on_the_centre_line():
    """A pole on the line between the connectors falls to either side by chance (a shift of a
    pixel moves half of it): balanced shots would otherwise learn a rule that good images break."""
    f = SymmetryScore(n_colours=3)
    plain, middle = f.fit(SHOTS), f.fit([with_middle_pole(p) for p in SHOTS])
    pole_kind = np.nanargmin(np.abs(plain.unit - 64 / SHOTS[0].rgb[..., 0].size))  # the 8 x 8 poles' kind
    assert plain.rules[pole_kind, 0]
    assert not middle.rules[:, 0].any()


def test_max_piece_leaves_out_a_large_piece_of_the_kinds_colour():
    """A variant's cable of its poles' colour lies on one side: counted as one more piece there it
    breaks the balance of a good image; pieces many times the kind's typical one are not counted
    with ``max_piece``."""
    def with_cable(p):
        return painted(p, np.s_[80:94], np.s_[14:28])  # 14 x 14: three poles' area, below the left connector

    plain, capped = SymmetryScore(n_colours=3), SymmetryScore(n_colours=3, max_piece=2.0)
    assert plain.score(with_cable(pair(4, 4, seed=8)), plain.fit(SHOTS)).value == 2.0
    state = capped.fit(SHOTS)
    assert state.rules.any()
    assert capped.score(with_cable(pair(4, 4, seed=8)), state).value == 1.0
    assert capped.score(pair(2, 4, seed=9), state).value == 2 / 0.5  # a pole pair more still breaks it
    with pytest.raises(ValueError, match="max_piece must be >= 1"):
        SymmetryScore(max_piece=0.5)


def test_pieces_measure_counts_whole_pieces():
    """``measure=pieces``: the same rule read as pieces by side (2 + 4 poles: two pieces more)."""
    f = SymmetryScore(n_colours=3, measure="pieces")
    state = f.fit(SHOTS)
    assert state.rules.any()
    assert f.score(pair(4, 4, seed=8), state).value == 1.0
    assert f.score(pair(2, 4, seed=9), state).value == 2 / 0.5
    with pytest.raises(ValueError, match="measure"):
        SymmetryScore(measure="mass")


def test_a_coarser_cut_joins_one_colour_in_two_shades():
    """Poles lit from the left on one connector and from the right on the other: two shades
    about 16 apart, two kinds at composition's cuts (6, 12), each all on one side; a third cut
    (``merge_distance=[6, 12, 24]``) joins them into one balanced kind, whose rule an extra pole
    then breaks."""
    def shaded(p):
        rgb = p.rgb.copy()
        right = rgb[:, 48:]
        right[(np.abs(right.astype(int) - PIN) < 8).all(-1)] = (240, 90, 40)  # pair() adds noise of ±4
        return ParsedImage(rgb, rgb2lab(rgb).astype(np.float32), p.class_map, p.features, p.class_grid, 1)

    plain = [pair(n, n, seed=s) for s, n in enumerate((2, 4, 2, 4))]
    shots = [shaded(p) for p in plain]
    two_cuts = SymmetryScore(n_colours=4, merge_distance=[6, 12])
    assert not two_cuts.fit(shots).rules.any()
    f = SymmetryScore(n_colours=4, merge_distance=[6, 12, 24])
    state = f.fit(shots)
    assert state.rules.any()
    assert f.score(shaded(pair(4, 4, seed=8)), state).value == 1.0
    assert f.score(shaded(pair(2, 4, seed=9)), state).value > 3


def test_pieces_measure_learns_where_edges_move_the_area():
    """Poles a quarter narrower on the left connector (at a low work size anti-aliased edges shift
    a small part's area like this from capture to capture): the pole kind's area is then off by
    more than half a pole in balanced shots, so ``measure=area`` learns no rule for it, while the
    pole count per side still balances and ``measure=pieces`` scores an extra pole."""
    def narrow_left(p):
        rgb = p.rgb.copy()
        left = rgb[:, 18:20]
        left[(np.abs(left.astype(int) - PIN) < 8).all(-1)] = BOX
        return ParsedImage(rgb, rgb2lab(rgb).astype(np.float32), p.class_map, p.features, p.class_grid, 1)

    shots = [narrow_left(p) for p in SHOTS]
    odd = narrow_left(pair(2, 4, seed=9))
    area, pieces = SymmetryScore(n_colours=3, measure="area"), SymmetryScore(n_colours=3, measure="pieces")
    assert area.score(odd, area.fit(shots)).value == 1.0
    state = pieces.fit(shots)
    assert pieces.score(narrow_left(pair(4, 4, seed=8)), state).value == 1.0
    assert pieces.score(odd, state).value == 2 / 0.5


def test_symmetry_reads_the_colour_kinds_composition_fits(tmp_path):
    # symmetry's rules are balances of composition's colour kinds: both take their kind settings
    # from conf/components/colour_kinds.yaml, so the default presets fit the same kinds
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from conftest import REPO, compose_cfg

    kinds = OmegaConf.load(REPO / "conf" / "components" / "colour_kinds.yaml")
    cfg = compose_cfg(["logger=none"], tmp_path / "run")
    for feature in ("composition", "symmetry"):
        assert {k: cfg.features[feature][k] for k in kinds} == OmegaConf.to_container(kinds)
    composition, symmetry = (instantiate(cfg.features[n]) for n in ("composition", "symmetry"))
    assert vars(composition.kinds) | {"owner": None} == vars(symmetry.kinds) | {"owner": None}
    assert composition.merge_distances == symmetry.merge_distances == [6.0, 12.0]


def test_area_balance_reads_the_same_at_twice_the_resolution():
    """With measure=area the balance was in pixels over a typical piece in the shots' pixels, so
    the same image at twice the resolution broke a rule four times as far."""
    from locoad.colour import rgb_to_lab

    def twice(p: ParsedImage) -> ParsedImage:
        rgb = np.kron(p.rgb, np.ones((2, 2, 1), np.uint8))  # nearest: the same content, 4x the pixels
        return ParsedImage(rgb, rgb_to_lab(rgb), np.kron(p.class_map, np.ones((2, 2), np.int64)),
                           p.features, p.class_grid, p.num_classes)

    shots = [pair(2, 2, seed=0), pair(4, 4, seed=1), pair(2, 2, seed=2), pair(4, 4, seed=3)]
    f = SymmetryScore(n_colours=3, measure="area")
    state = f.fit(shots)
    for test in (pair(2, 2, seed=9), pair(3, 2, seed=9)):
        assert f.score(twice(test), state).value == pytest.approx(f.score(test, state).value, rel=1e-6)
    assert f.score(pair(3, 2, seed=9), state).value > 1.0  # the mismatched pair still breaks the rule


def test_skip_near_counts_the_pieces_off_the_line():
    """A piece of the poles' colour on the centre line in every shot (a cable across the middle)
    vetoed the rule; ``skip_near=0`` leaves it out of the balance, so the poles carry the rule
    and an extra pole still breaks it, while a good image scores 1 with or without that piece."""
    shots = [with_middle_pole(p) for p in SHOTS]
    assert not SymmetryScore(n_colours=3).fit(shots).rules[:, 0].any()
    f = SymmetryScore(n_colours=3, skip_near=0)
    state = f.fit(shots)
    assert state.rules[:, 0].any()
    assert f.score(with_middle_pole(pair(4, 4, seed=8)), state).value == 1.0
    assert f.score(with_middle_pole(pair(2, 4, seed=9)), state).value == 2 / 0.5
    assert f.score(with_middle_pole(pair(3, 2, seed=9)), state).value == 1 / 0.5


def test_skip_near_needs_the_shots_to_agree_on_the_pieces_on_the_line():
    """Pins that sit on the line only in some shots would fall on it or to either side in a test
    image: no rule for their kind and axis."""
    f = SymmetryScore(n_colours=3, skip_near=0)
    mixed = [with_middle_pole(p) for p in SHOTS[:2]] + SHOTS[2:]
    assert not f.fit(mixed).rules[:, 0].any()
    assert f.fit(SHOTS).rules[:, 0].any()  # none on the line in any shot: the rule as before


def test_skip_near_settings_say_which():
    with pytest.raises(ValueError, match="skip_near must be >= 0"):
        SymmetryScore(skip_near=-1)
    with pytest.raises(ValueError, match="skip_near must be >= 0"):
        SymmetryScore(skip_near=True)
    with pytest.raises(ValueError, match="skip_near leaves pieces out .* needs measure=pieces"):
        SymmetryScore(skip_near=0, measure="area")


def test_skip_near_leaves_out_only_pieces_larger_than_its_share():
    """``skip_near=2``: a cable of the poles' colour across the middle (2.6 poles' area) is left
    out of the balance, a pole-sized piece on the line still vetoes the rule."""
    def with_cable(p: ParsedImage) -> ParsedImage:
        return painted(p, np.s_[84:90], np.s_[34:62])  # below the connectors, across the vertical centre line

    f = SymmetryScore(n_colours=3, skip_near=2.0)
    assert not f.fit([with_middle_pole(p) for p in SHOTS]).rules[:, 0].any()
    assert not SymmetryScore(n_colours=3).fit([with_cable(p) for p in SHOTS]).rules[:, 0].any()
    state = f.fit([with_cable(p) for p in SHOTS])
    assert state.rules[:, 0].any()
    assert f.score(with_cable(pair(4, 4, seed=8)), state).value == 1.0
    assert f.score(with_cable(pair(2, 4, seed=9)), state).value == 2 / 0.5
