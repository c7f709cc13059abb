"""Composition: per part kind, how much of it there is, in how many pieces of what size, where
and of what colour, as z-scores against the shots' own spread.

Part kinds are either *colour classes* fitted on the shots (``classes="colour"``, default:
k-means of the shots' CIELAB pixels, every pixel of an image assigned to its nearest centre;
no segmenter and no aligner involved) or the aligner's classes (``classes="aligned"``). Per
kind and image the descriptor is: area (fraction of the image), number of connected pieces,
mean / largest / smallest piece, centroid (y, x), mean chroma (a, b) and *units*: the area in
units of the kind's typical piece in the shots (the median over the shots of each shot's median
piece). A missing pin is one piece fewer of the pin colour, a short screw a smaller smallest
piece, a cable of the wrong colour area moved between two colour classes, whatever the segmenter
did with them. Units count pieces without connectivity: two washers that touch are one piece but
still two units, so a merge in a good image moves the piece count and not the units, while a
missing or extra washer moves both.

Colour classes are fitted robustly to the light: every image is white-balanced first (the
channel medians give the colour cast, the bright end the exposure: a median made grey would
saturate the light parts of an image on a dark background into one white), lightness weighs
half of chroma, k-means centres closer than ``merge_distance`` are merged (one colour in two
shades is one kind), and the kinds that own the image border in the shots are background and
ignored. With a list of distances the kinds of every cut of the same k-means fit are described
side by side: a fine cut keeps two close colours apart (a white pin on a light cell: at one
coarse cut a missing pin is only a smaller cell), a coarse cut joins the shades of one colour; a
kind that is unstable at one cut has a large std over the shots there and hence a small z.
Positions are relative to the centroid of all non-background pixels, so a shift of the whole
scene moves no part. ``balance`` (off by default) adds per kind the area left minus right of that
centroid and above minus below it, in units of the typical piece: a pair whose halves match in
every variant (two connectors with the same pole count) balances, a mismatched pair does not.

Score: every descriptor entry becomes ``|x - mean| / sqrt(std^2 + floor^2)`` over the shots,
with the std raised to its upper ``std_confidence`` bound (a few shots often agree by chance on
an entry that varies) and a per-entry floor (``abs_floor`` plus ``rel_floor`` of the mean for
area and sizes; for counts and units half a piece over the square root of the number of shots:
one piece more or less is evidence however many there are, and the more shots agree on a count
the more; ``position_floor``; ``chroma_floor``). A kind whose smallest piece averages
below ``speckle`` times ``min_piece`` in the shots has speckle for its smallest piece (shading and
noise fragments): its smallest-piece entry is not scored. The image score is the mean of the
``top_n`` largest z. Entries the shots show to vary get a small z, so the score needs no per-category tuning.

Options off by default (docs/ablations.md has their measurements): ``capture_copies`` also
describes each shot under random capture changes (``capture_jitter``: their ranges) and adds how far
an entry moves among them to its denominator; ``adapt_centres`` lets the colour centres follow each
image's own pixels a bounded step; ``fits`` fits the colour kinds several times and averages the scores.
``min_seen`` (1 by default) leaves out the entries fewer shots have: a kind's piece sizes, position
and chroma seen in one shot have no spread to learn from.
``swap_shades`` matches an image's kinds to the shots' within each group of close shades (the
order with the least summed squared z): a surface that light moves whole into a neighbouring
shade is compared as the shade the shots showed it in.
"""

from __future__ import annotations

import copy
import itertools
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.stats import chi2

from locoad.colour import rgb_to_lab
from locoad.components.capture_jitter import CaptureJitter
from locoad.components.colour_kinds import ColourKinds, merge_distances
from locoad.errors import ConfigError, is_whole_number
from locoad.features.base import Feature, FeatureScore
from locoad.nested import is_number
from locoad.types import BACKGROUND, ParsedImage

# Descriptor entries per part kind (columns); counts are in pieces, the rest image fractions.
COLUMNS = ("area", "pieces", "piece_mean", "piece_max", "piece_min", "cy", "cx", "a", "b", "units")
_COUNT = COLUMNS.index("pieces")
_UNITS = COLUMNS.index("units")
_PIECE_MIN = COLUMNS.index("piece_min")
_POSITION = (COLUMNS.index("cy"), COLUMNS.index("cx"))
_CHROMA = (COLUMNS.index("a"), COLUMNS.index("b"))
# With ``balance``: per kind, the area left minus right of (above minus below) the foreground's
# centroid, in units of the kind's typical piece. Two connectors with the same pole count
# balance whichever variant the image shows; a connector with another count unbalances it.
BALANCE = ("left_right", "top_bottom")
_BALANCE = slice(len(COLUMNS), None)  # their columns, after COLUMNS
# The piece sizes of a kind with no piece in an image: unknown (NaN: that image leaves the kind's
# size statistics) or zero (it has none; a surface that flips between two shade kinds from capture
# to capture then shows the shots' spread instead of the chance agreement of the shots that have it).
ABSENT_SIZES = ("unknown", "zero")
# With ``fits`` above 1, how the colour-kind fits differ: the k-means seed or the number of colours.
FIT_SPREADS = ("seed", "colours")
# swap_shades: the largest group of shades whose rows are permuted (5! = 120 orders)
MAX_SWAP_GROUP = 5


@dataclass
class CompositionState:
    # Per merge level: colour-class centres (K, 3) in scaled CIELAB, or None (aligned classes),
    # and (K,) bool, the kinds that make up the image border in the shots.
    levels: list[tuple[np.ndarray | None, np.ndarray | None]]
    mean: np.ndarray  # (sum K, columns) over the shots (NaN-aware: absent kinds ignored)
    floor_std: np.ndarray  # (sum K, columns) sqrt(std over the shots ** 2 + floor ** 2); NaN: not scored (min_seen)
    unit: np.ndarray  # (sum K,) typical piece of each kind in the shots (image fraction)


class CompositionScore(Feature):
    name = "composition"

    def __init__(
        self,
        classes: str = "colour",
        n_colours: int = 8,
        lightness_weight: float = 0.5,
        sample_stride: int = 4,
        min_piece: float = 0.0003,
        top_n: int = 2,
        abs_floor: float = 0.002,
        rel_floor: float = 0.1,
        count_floor: float = 0.5,
        position_floor: float = 0.05,
        chroma_floor: float = 2.0,
        background_share: float = 0.1,
        white_balance: str | bool = "cast_and_level",  # bool: configs before the choice (ColourKinds)
        merge_distance: float | Sequence[float] = 12.0,
        std_confidence: float | None = 0.8,
        units: bool = True,
        balance: bool = False,
        speckle: float = 3.0,
        capture_copies: int = 0,
        capture_jitter: dict | None = None,
        adapt_centres: float = 0.0,
        fits: int = 1,
        fit_spread: str = "seed",
        seed: int = 0,
        dark_chroma: float = 0.0,
        absent_sizes: str = "unknown",
        min_seen: int = 1,
        swap_shades: float = 0.0,
    ):
        if classes not in ("colour", "aligned"):
            raise ConfigError(f"composition classes must be 'colour' or 'aligned', got {classes!r}")
        if not is_whole_number(top_n, 1):
            raise ConfigError(f"composition top_n must be a whole number >= 1 (the largest z averaged), got {top_n!r}")
        # A floor of 0 leaves an entry the shots agree on with a z denominator of 0: a missing piece
        # there is an infinite z, which the score then dropped as not finite (no evidence at all).
        for key, value in (("abs_floor", abs_floor), ("count_floor", count_floor), ("position_floor", position_floor),
                           ("chroma_floor", chroma_floor)):
            if not value > 0:
                raise ConfigError(f"composition {key} must be > 0 (it bounds a z denominator away from 0), got {value}")
        if not rel_floor >= 0:
            raise ConfigError(f"composition rel_floor must be >= 0 (a share of the shots' mean), got {rel_floor}")
        if speckle < 0:
            raise ConfigError(f"composition speckle must be >= 0 (times min_piece; 0: off), got {speckle}")
        if capture_copies < 0 or (capture_copies and classes != "colour"):
            raise ConfigError(f"composition capture_copies must be >= 0 and needs classes=colour (a copy is not "
                              f"segmented again), got {capture_copies} with classes={classes!r}")
        if fits < 1 or (fits > 1 and classes != "colour"):
            raise ConfigError(f"composition fits must be >= 1 and above 1 needs classes=colour (the aligner's classes "
                              f"are one partition), got {fits} with classes={classes!r}")
        if absent_sizes not in ABSENT_SIZES:
            raise ConfigError(f"composition absent_sizes must be one of {', '.join(ABSENT_SIZES)}, got {absent_sizes!r}")
        if min_seen < 1:
            raise ConfigError(f"composition min_seen must be >= 1 (shots that must have an entry to score it), got {min_seen}")
        if swap_shades < 0:
            raise ConfigError(f"composition swap_shades must be >= 0 (scaled CIELAB units; 0: off), got {swap_shades}")
        for key, value in (("swap_shades", swap_shades), ("adapt_centres", adapt_centres)):
            if value and classes != "colour":  # the aligner's classes have no colour centres: silently off
                raise ConfigError(f"composition {key} moves colour kinds and needs classes=colour; got {key}={value} "
                                  f"with classes={classes!r} (set {key}=0)")
        if std_confidence is not None and (not is_number(std_confidence) or not 0.0 < std_confidence < 1.0):
            # 1 (or above) divided the std by a chi-square quantile of 0 (or NaN): every z NaN, every score 0
            raise ConfigError(f"composition std_confidence must be in (0, 1) (a confidence level; null: the plain std), "
                              f"got {std_confidence!r}")
        if fit_spread not in FIT_SPREADS:
            raise ConfigError(f"composition fit_spread must be one of {', '.join(FIT_SPREADS)}, got {fit_spread!r}")
        if fit_spread == "colours" and n_colours - fits // 2 < 2:
            raise ConfigError(f"composition fit_spread=colours with {fits} fits goes down to "
                              f"{n_colours - fits // 2} colours; raise n_colours or lower fits")
        self.capture_copies = capture_copies
        try:
            self.jitter = CaptureJitter(**(capture_jitter or {}))
        except TypeError as e:
            raise ConfigError(f"composition capture_jitter takes {', '.join(CaptureJitter.__dataclass_fields__)}; "
                              f"got {sorted(capture_jitter)}") from e
        self.seed = seed
        self.classes = classes
        self.needs_classes = classes == "aligned"
        self.min_piece = min_piece
        self.top_n = top_n
        self.abs_floor = abs_floor
        self.rel_floor = rel_floor
        self.count_floor = count_floor
        self.position_floor = position_floor
        self.chroma_floor = chroma_floor
        self.std_confidence = std_confidence
        self.units = units
        self.balance = balance
        self.speckle = speckle
        self.absent_sizes = absent_sizes
        self.min_seen = min_seen
        self.swap_shades = swap_shades
        self.columns = COLUMNS + (BALANCE if balance else ())
        self.merge_distances = merge_distances(merge_distance, "composition")
        # Colour classes, white balance and background: shared with instance_set.
        self.kinds = ColourKinds(n_colours, lightness_weight, sample_stride, background_share, white_balance,
                                 self.merge_distances[0], seed, owner="composition",
                                 adapt_centres=adapt_centres, dark_chroma=dark_chroma)
        self.members = [self._member(i, fit_spread) for i in range(fits)]

    def _member(self, i: int, spread: str) -> ColourKinds:
        """The colour kinds of fit ``i``: fit 0 as configured, the others with the k-means seed
        counted up (``seed``) or n_colours one fewer, one more, two fewer, ... (``colours``)."""
        kinds = copy.copy(self.kinds)
        if spread == "seed":
            kinds.seed = self.kinds.seed + i
        else:
            kinds.n_colours = self.kinds.n_colours + (i + 1) // 2 * (-1 if i % 2 else 1)
        return kinds

    # -- part kinds ------------------------------------------------------------------------------
    def kind_map(self, parsed: ParsedImage, centres: np.ndarray | None) -> tuple[np.ndarray, int]:
        """(H, W) part-kind id of every pixel and the number of kinds."""
        if centres is None:
            return parsed.class_map, parsed.num_classes
        return self.kinds.kind_map(parsed, centres), len(centres)

    # -- descriptor ------------------------------------------------------------------------------
    def describe(self, parsed: ParsedImage, centres: np.ndarray | None, background: np.ndarray | None = None) -> np.ndarray:
        """(K, columns: COLUMNS, then BALANCE with ``balance``); NaN where a kind is absent (positions, piece sizes, chroma) and on
        background kinds. The units column holds the median piece here (:meth:`in_units` turns
        it into the area in units of the shots' typical piece). Positions are relative to the
        centroid of all non-background pixels, so a shift of the whole scene moves no part."""
        kinds, n = self.kind_map(parsed, centres)
        h, w = kinds.shape
        size = float(h * w)
        out = np.full((n, len(self.columns)), np.nan)
        yy, xx = np.mgrid[0:h, 0:w]
        lab = self.kinds.lab(parsed)
        eight = np.ones((3, 3), dtype=bool)
        bg = np.zeros(n, dtype=bool)
        if background is not None:
            bg[: len(background)] = background[:n]
        if centres is None:
            bg[BACKGROUND] = True  # the aligned background is what the segmenter dropped, not a part
        fg = ~bg[kinds]
        oy, ox = ((yy[fg].mean() + 0.5) / h, (xx[fg].mean() + 0.5) / w) if fg.any() else (0.5, 0.5)
        cy0, cx0 = int(round(oy * h)), int(round(ox * w))  # the foreground centroid's row / column
        for c in range(n):
            if bg[c]:
                continue
            m = kinds == c
            area = m.sum()
            out[c, 0] = area / size
            out[c, 1] = 0.0
            if self.absent_sizes == "zero":
                out[c, 2:5] = 0.0  # overwritten below where the kind has a piece
            if self.balance:
                out[c, _BALANCE] = ((np.count_nonzero(m[:, :cx0]) - np.count_nonzero(m[:, cx0:])) / size,
                                    (np.count_nonzero(m[:cy0]) - np.count_nonzero(m[cy0:])) / size)
            if not area:
                continue
            pieces, npieces = ndimage.label(m, structure=eight)
            sizes = np.bincount(pieces.ravel(), minlength=npieces + 1)[1:] / size
            sizes = sizes[sizes >= self.min_piece]
            out[c, 1] = len(sizes)
            if len(sizes):
                out[c, 2:5] = sizes.mean(), sizes.max(), sizes.min()
                out[c, _UNITS] = np.median(sizes)
            out[c, 5] = (yy[m].mean() + 0.5) / h - oy
            out[c, 6] = (xx[m].mean() + 0.5) / w - ox
            out[c, 7] = lab[..., 1][m].mean()
            out[c, 8] = lab[..., 2][m].mean()
        return out

    def _floors(self, mean: np.ndarray, seen: np.ndarray) -> np.ndarray:
        f = self.abs_floor + self.rel_floor * np.abs(np.nan_to_num(mean))
        # One piece more or less is evidence however many there are; the more shots agree on a
        # count, the stronger: half a piece from one shot, shrinking as the standard error of
        # a mean (k shots: half a piece / sqrt(k)). The balance columns count pieces too.
        counted = [_COUNT, _UNITS, *range(len(COLUMNS), len(self.columns))]
        f[:, counted] = self.count_floor / np.sqrt(np.maximum(seen[:, counted], 1))
        f[:, list(_POSITION)] = self.position_floor
        f[:, list(_CHROMA)] = self.chroma_floor
        return f

    # -- Feature ---------------------------------------------------------------------------------
    def describe_levels(self, parsed: ParsedImage, levels: list[tuple[np.ndarray | None, np.ndarray | None]]) -> np.ndarray:
        """The descriptors of every merge level, stacked: (sum K, columns)."""
        return np.concatenate([self.describe(parsed, c, bg) for c, bg in levels])

    def in_units(self, desc: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """``desc`` (..., K, columns) with the units column = area / ``unit`` (K,) and the balance
        columns divided by ``unit``; NaN where the shots have no piece of a kind (or ``units`` is off)."""
        out = desc.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            u = desc[..., 0] / unit
            out[..., _UNITS] = np.where(np.isfinite(u), u, np.nan) if self.units else np.nan
            if self.balance:
                b = desc[..., _BALANCE] / unit[..., None]
                out[..., _BALANCE] = np.where(np.isfinite(b), b, np.nan)
        return out

    def fit(self, shots: list[ParsedImage]) -> CompositionState | list[CompositionState]:
        """The shots' statistics; with ``fits`` above 1, one state per colour-kind fit."""
        if self.classes != "colour":
            return self._fit(shots, [(None, None)])
        states = [self._fit(shots, kinds.fit_levels(shots, self.merge_distances)) for kinds in self.members]
        return states[0] if len(states) == 1 else states

    def _fit(self, shots: list[ParsedImage], levels: list[tuple[np.ndarray | None, np.ndarray | None]]) -> CompositionState:
        desc = [self.describe_levels(p, levels) for p in shots]
        n = max(len(d) for d in desc)
        stack = np.stack([_pad_rows(d, n) for d in desc])  # (k, K, D)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries: a kind no shot has
            unit = np.nanmedian(stack[:, :, _UNITS], axis=0)
            stack = self.in_units(stack, unit)
            mean = np.nanmean(stack, axis=0)
            seen = np.isfinite(stack).sum(axis=0)  # shots that have each entry
            std = np.nan_to_num(np.nanstd(stack, axis=0, ddof=1)) if len(stack) > 1 else np.zeros_like(mean)
        # A few shots often agree by chance on an entry that varies: its sample std is then far
        # too small and a normal image gets a huge z. The upper ``std_confidence`` bound of the
        # std (chi-square with n - 1 degrees of freedom) is used instead of the estimate.
        if self.std_confidence is not None:
            dof = np.maximum(seen - 1, 1)
            std = std * np.sqrt(dof / chi2.ppf(1.0 - self.std_confidence, dof))
        # The floor is added in quadrature: jitter below it is never evidence.
        scale = np.hypot(std, self._floors(mean, seen))
        # An entry fewer than ``min_seen`` shots have (the piece sizes of a shade one shot shows)
        # has no spread to widen: it is not scored (NaN), unless the fit has fewer shots.
        scale[(seen > 0) & (seen < min(self.min_seen, len(stack)))] = np.nan
        if self.capture_copies:
            scale = np.hypot(scale, self._capture_std(shots, stack, levels, unit))
        return CompositionState(levels, mean, scale, unit)

    def _capture_std(self, shots: list[ParsedImage], described: np.ndarray,
                     levels: list[tuple[np.ndarray | None, np.ndarray | None]], unit: np.ndarray) -> np.ndarray:
        """(K, columns) how far each entry moves when a shot is captured again (its jittered
        copies, :class:`CaptureJitter`): the std over a shot and its copies, averaged over the
        shots in quadrature; ``described``: the shots' own descriptors (k, K, columns), in units.
        Shots taken under one setup agree on entries that a change of light or focus moves (a
        shade that fragments, a part that merges with its neighbour under blur)."""
        n = described.shape[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # entries absent from every copy
            var = []
            for p, own in zip(shots, described):
                copies = np.stack([_pad_rows(self.describe_levels(c, levels), n) for c in self._copies(p)])
                var.append(np.nanvar(np.concatenate([own[None], self.in_units(copies, unit)]), axis=0, ddof=1))
            return np.nan_to_num(np.sqrt(np.nanmean(var, axis=0)))

    def _copies(self, parsed: ParsedImage) -> list[ParsedImage]:
        """``capture_copies`` jittered copies of a shot, drawn from its own pixels' checksum (the
        same copies whichever other shots it is fitted with) and kept on it for the leave-one-out fits."""
        key = f"_capture_copies_{self.capture_copies}_{self.seed}_{self.jitter}"
        cached = getattr(parsed, key, None)
        if cached is None:
            rng = np.random.default_rng([self.seed, zlib.crc32(np.ascontiguousarray(parsed.rgb[::7, ::7]).tobytes())])
            cached = []
            for _ in range(self.capture_copies):
                rgb = self.jitter(parsed.rgb, rng, parsed.aspect)
                cached.append(replace(parsed, rgb=rgb, lab=rgb_to_lab(rgb)))
            object.__setattr__(parsed, key, cached)
        return cached

    def score(self, parsed: ParsedImage, state: CompositionState | list[CompositionState]) -> FeatureScore:
        if isinstance(state, list):  # several colour-kind fits: a boundary artefact of one fit is diluted
            return FeatureScore(float(np.mean([self._score(parsed, s) for s in state])))
        return FeatureScore(self._score(parsed, state))

    def _score(self, parsed: ParsedImage, state: CompositionState) -> float:
        x = self.describe_levels(parsed, state.levels)
        n = max(len(x), len(state.mean))
        x, mean, scale = _pad_rows(x, n), _pad_rows(state.mean, n), _pad_rows(state.floor_std, n, fill=1.0)
        unit = _pad_rows(state.unit, n)
        if self.swap_shades > 0:
            x = self._swap_shades(x, mean, scale, unit, state.levels)
        z = self._z(self.in_units(x, unit), mean, scale)
        # A kind the shots never had (an aligned "unmatched" class) or one absent here: its
        # area / count entries still say so; NaN entries (no position of an absent kind) drop out.
        z = z[np.isfinite(z)]
        if not z.size:
            return 0.0
        return float(np.sort(z)[-self.top_n :].mean())

    def _z(self, x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """|x - mean| / scale per entry (rows: kinds, in units); NaN where it is not scored."""
        z = np.abs(x - mean) / scale
        # A kind whose smallest piece in the shots is speckle (a shading or noise fragment just
        # above min_piece): an image without speckle jumps to a real part's size, z 20-70 on a
        # normal capture, so that entry says nothing there.
        z[mean[:, _PIECE_MIN] < self.speckle * self.min_piece, _PIECE_MIN] = np.nan
        return z

    def _swap_shades(self, x: np.ndarray, mean: np.ndarray, scale: np.ndarray, unit: np.ndarray,
                     levels: list[tuple[np.ndarray | None, np.ndarray | None]]) -> np.ndarray:
        """``x`` (K, columns, before units) with the rows of every group of shades (non-background
        kinds of one level whose centres chain closer than ``swap_shades``) permuted to the shots'
        rows that fit them best (least summed squared z): a surface that light moves whole into a
        neighbouring shade is compared as the shade the shots showed it in."""
        out, start = x.copy(), 0
        for centres, bg in levels:
            if centres is None:
                break
            rows = np.arange(start, start + len(centres))
            start += len(centres)
            keep = rows[~bg] if bg is not None else rows
            if len(keep) < 2:
                continue
            groups = fcluster(linkage(centres[keep - rows[0]], "single"), self.swap_shades, criterion="distance")
            for g in np.unique(groups):
                members = keep[groups == g]
                if not 2 <= len(members) <= MAX_SWAP_GROUP:
                    continue
                best, best_cost = members, np.inf
                for perm in itertools.permutations(members):
                    z = self._z(self.in_units(x[list(perm)], unit[members]), mean[members], scale[members])
                    cost = float(np.nansum(z * z))
                    if cost < best_cost - 1e-12:  # ties keep the first: the identity
                        best, best_cost = perm, cost
                out[members] = x[list(best)]
        return out


def _pad_rows(a: np.ndarray, n: int, fill: float = np.nan) -> np.ndarray:
    if len(a) >= n:
        return a
    return np.concatenate([a, np.full((n - len(a), *a.shape[1:]), fill)])

