"""Symmetry: parts that must match each other, learnt from the shots as balances that hold.

Two connectors joined by a cable carry the same number of poles, whichever variant the image
shows; a connector with one pole more is a logical anomaly that no count over the whole image
sees (the total lies between two normal variants) and no patch sees (every pole looks normal).
Per part kind (colour classes fitted on the shots, as ``composition`` has them, so no segmenter
merge or split and no alignment error touches it) and per image axis, the *balance* is the number
of the kind's pieces whose centre lies on one side of the foreground's centroid minus the number
on the other side. A balance that holds in every shot (within ``floor`` pieces, in at least
``min_shots`` shots, for a kind of at least ``min_units`` typical pieces, with no piece of the kind
near the centre line in any shot: such a piece falls to either side by chance) is a learnt rule;
loose parts (screws in a bag) break it in some shot and are never scored. A few shots of loose
pairs can all balance by chance (one piece a side, one time in two per shot), so a rule also
needs the shots' balance to be unlikely by chance (``max_chance``): were each piece to fall to
either side at random, every shot would balance with at most that probability.

``measure="area"`` reads the kind's area instead, in units of its typical piece in the shots: at
a low work size the anti-aliased edges of small parts move their area by up to a piece from
capture to capture, their count not (a merge or split of touching pieces moves the count, the
area not).

``skip_near`` (null: off; the config's default 2): a piece near the centre line larger than that
many times the kind's median piece in the image (0: any) does not veto the rule; it is left out
of that axis' balance (and of its chance) in the shots and in every test image alike (a cable
across the middle), so the pieces off the line carry it. The shots must then agree on how many
such pieces there are: parts that sit there only now and then (pins in a middle column) would
fall to either side in a test image.

``max_piece`` (null: off): pieces larger than that many times the kind's median piece in the image
are not counted (another part of the same colour, such as one variant's cable beside its poles).

Score: ``max(1, largest |balance| over the learnt rules / floor)``; 1 where no rule was learnt
or every rule holds, so the score says nothing about products without one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.stats import binom

from locoad.components.colour_kinds import ColourKinds, merge_distances
from locoad.errors import ConfigError
from locoad.features.base import Feature, FeatureScore
from locoad.nested import is_number
from locoad.types import ParsedImage


@dataclass
class SymmetryState:
    levels: list[tuple[np.ndarray, np.ndarray]]  # per merge level: centres (K, 3), background (K,) bool
    unit: np.ndarray  # (sum K,) typical piece of each kind in the shots (image fraction)
    rules: np.ndarray  # (sum K, 2) bool: the balances (left-right, top-bottom) that hold in the shots


class SymmetryScore(Feature):
    name = "symmetry"
    needs_classes = False

    def __init__(
        self,
        n_colours: int = 8,
        lightness_weight: float = 0.5,
        sample_stride: int = 4,
        min_piece: float = 0.0003,
        background_share: float = 0.1,
        white_balance: str = "cast_and_level",
        merge_distance: float | Sequence[float] = (6.0, 12.0),
        floor: float = 0.5,
        min_shots: int = 3,
        min_units: float = 2.0,
        measure: str = "pieces",
        max_chance: float | None = 0.05,
        seed: int = 0,
        dark_chroma: float = 0.0,
        max_piece: float | None = None,
        skip_near: float | None = None,
    ):
        if skip_near is not None and (not is_number(skip_near) or not skip_near >= 0):
            raise ConfigError(f"symmetry skip_near must be >= 0 (times the kind's median piece; 0: every piece near the "
                              f"centre line) or null (each such piece vetoes its rule), got {skip_near!r}")
        if skip_near is not None and measure != "pieces":
            raise ConfigError("symmetry skip_near leaves pieces out of the balance, so it needs measure=pieces; set "
                              "features.symmetry.measure=pieces or skip_near=null")
        self.skip_near = skip_near
        if max_piece is not None and (not is_number(max_piece) or not max_piece >= 1):
            raise ConfigError(f"symmetry max_piece must be >= 1 (times the kind's median piece) or null (off), got {max_piece!r}")
        self.max_piece = max_piece
        if max_chance is not None and not 0 < max_chance <= 1:
            raise ConfigError(f"symmetry max_chance must be in (0, 1] or null (off), got {max_chance}")
        self.max_chance = max_chance
        if measure not in ("area", "pieces"):
            raise ConfigError(f"symmetry measure must be 'area' or 'pieces', got {measure!r}")
        self.measure = measure
        if floor <= 0:
            raise ConfigError(f"symmetry floor must be > 0 (pieces; typical pieces with measure=area), got {floor}")
        if min_shots < 1:
            raise ConfigError(f"symmetry min_shots must be >= 1, got {min_shots}")
        self.merge_distances = merge_distances(merge_distance, "symmetry")
        self.min_piece = min_piece
        self.floor = floor
        self.min_shots = min_shots
        self.min_units = min_units
        self.kinds = ColourKinds(n_colours, lightness_weight, sample_stride, background_share, white_balance,
                                 self.merge_distances[0], seed, owner="symmetry", dark_chroma=dark_chroma)

    def describe(self, parsed: ParsedImage, levels: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Per kind of every level: (sum K, 11) area, left minus right and top minus bottom of the
        foreground's centroid (image fractions, so an image at another resolution reads the same),
        the pieces near the vertical / horizontal centre line (within one piece's width: their
        side is then chance) that veto a rule, the pieces left minus right and above minus below,
        the pieces counted in each axis' balance, and those near each line left out of it
        (``skip_near``); and (sum K,) median piece (image fraction; NaN: no piece)."""
        out, piece = [], []
        eight = np.ones((3, 3), dtype=bool)
        min_px = self.min_piece * parsed.lab.shape[0] * parsed.lab.shape[1]
        for centres, bg in levels:
            kinds = self.kinds.kind_map(parsed, centres)
            n = len(centres)
            fg = ~bg[kinds]
            yy, xx = np.nonzero(fg)
            cy, cx = (yy.mean(), xx.mean()) if len(yy) else ((kinds.shape[0] - 1) / 2, (kinds.shape[1] - 1) / 2)
            # Pixels on the centre line count half to each side (their sign is 0).
            sx = np.broadcast_to(np.sign(np.arange(kinds.shape[1]) - cx)[None, :], kinds.shape)
            sy = np.broadcast_to(np.sign(np.arange(kinds.shape[0]) - cy)[:, None], kinds.shape)
            flat = kinds.ravel()
            d = np.full((n, 11), np.nan)
            d[:, 0] = np.bincount(flat, minlength=n)[:n]
            d[:, 1] = -np.bincount(flat, weights=sx.ravel(), minlength=n)[:n]
            d[:, 2] = -np.bincount(flat, weights=sy.ravel(), minlength=n)[:n]
            d[:, 3:] = 0.0
            med = np.full(n, np.nan)
            for c in np.flatnonzero(~bg & (d[:, 0] > 0)):
                pieces, npieces = ndimage.label(kinds == c, structure=eight)
                sizes = np.bincount(pieces.ravel(), minlength=npieces + 1)[1:]
                keep = sizes >= min_px
                if not keep.any():
                    continue
                med[c] = np.median(sizes[keep])
                if self.max_piece is not None:
                    # a piece many times the kind's typical one is another part of that colour (a
                    # variant's cable beside its poles), not one of the pieces a balance counts
                    keep &= sizes <= self.max_piece * med[c]
                reach = np.sqrt(med[c])  # about one piece's width
                skip = sizes > (np.inf if self.skip_near is None else self.skip_near * med[c])
                for sl, kept, skipped in zip(ndimage.find_objects(pieces), keep, skip):
                    if not kept:
                        continue
                    # pieces by the side their box's centre lies on (a whole piece each)
                    for axis, (box, centre) in enumerate(((sl[1], cx), (sl[0], cy))):
                        if box.start - reach <= centre <= box.stop - 1 + reach:  # near the line
                            if skipped:
                                d[c, 9 + axis] += 1
                                continue
                            d[c, 3 + axis] += 1
                        d[c, 5 + axis] -= np.sign((box.start + box.stop - 1) / 2 - centre)
                        d[c, 7 + axis] += 1
            d[bg] = np.nan
            d[:, :3] /= kinds.size
            out.append(d)
            piece.append(med / kinds.size)
        return np.concatenate(out), np.concatenate(piece)

    def _balance(self, desc: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """(..., K, 2) left-right and top-bottom balance, in typical pieces (area) or pieces."""
        if self.measure == "pieces":
            return desc[..., 5:7]
        with np.errstate(invalid="ignore", divide="ignore"):
            return desc[..., 1:3] / unit[..., :, None]

    def fit(self, shots: list[ParsedImage]) -> SymmetryState:
        levels = self.kinds.fit_levels(shots, self.merge_distances)
        desc, piece = zip(*(self.describe(p, levels) for p in shots))
        desc, piece = np.stack(desc), np.stack(piece)  # (k, K, 11), (k, K)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: a kind no shot has a piece of
            unit = np.nanmedian(piece, axis=0)
        # A rule: balanced in every shot, no piece near the line in any shot (NaN compares
        # False) but those left out of the balance, and as many of those in every shot (a cable
        # always; pins only now and then).
        holds = (np.all(np.abs(self._balance(desc, unit)) <= self.floor, axis=0) & np.all(desc[..., 3:5] == 0, axis=0)
                 & np.all(desc[..., 9:11] == desc[:1, :, 9:11], axis=0))
        with np.errstate(invalid="ignore"):
            big = np.all(desc[..., 0] / unit >= self.min_units, axis=0)  # area in typical pieces
        rules = holds & big[:, None] & (len(shots) >= self.min_shots)
        if self.max_chance is not None:
            # How likely the shots balance by chance if the kind's pieces fell to either side at
            # random (a fair coin each): n pieces balance within the floor with the central
            # binomial probability, and every shot must. Loose pairs in a bag balance in four
            # shots one time in sixteen, per kind and axis: a chance rule that good images break.
            chance = np.prod(balance_chance(desc[..., 7:9], self.floor), axis=0)
            rules &= chance <= self.max_chance
        return SymmetryState(levels, unit, rules)

    def score(self, parsed: ParsedImage, state: SymmetryState) -> FeatureScore:
        if not state.rules.any():
            return FeatureScore(1.0)
        desc, _ = self.describe(parsed, state.levels)
        balance = np.abs(self._balance(desc, state.unit))[state.rules]
        balance = balance[np.isfinite(balance)]
        return FeatureScore(float(max(1.0, balance.max(initial=0.0) / self.floor)))


def balance_chance(pieces: np.ndarray, floor: float) -> np.ndarray:
    """P(|left - right| <= floor) for ``pieces`` pieces (any shape; NaN: none) that each fall
    to either side with probability 1/2: the binomial mass between (n -/+ floor) / 2."""
    n = np.nan_to_num(pieces, nan=0.0)
    return binom.cdf(np.floor((n + floor) / 2), n, 0.5) - binom.cdf(np.ceil((n - floor) / 2) - 1, n, 0.5)
