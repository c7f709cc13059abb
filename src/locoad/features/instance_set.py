"""Instance set: the set of part instances of an image against the sets of the shots, with no
segmenter and no aligner.

Part kinds are the colour classes that ``composition`` fits on the shots (shared:
:class:`locoad.components.colour_kinds.ColourKinds`; white balance, merged shades, background
kinds). An *instance* is a connected piece of one kind (after a 3x3 majority filter that removes
the one-pixel slivers colour edges leave), at least ``min_area`` of the image, described by its
area, major and minor axis lengths (as ``skimage.measure.regionprops`` defines them, from the
piece's second moments), position relative to the foreground's centroid (a shift of the whole
scene moves nothing) and mean chroma (a, b).

Distance of a test set to one shot set, per kind: an optimal one-to-one assignment
(``scipy.optimize.linear_sum_assignment``) in which an unmatched instance costs 1 and a matched
pair costs the sum over four groups -- size (log area), shape (log axis lengths), position,
chroma -- of how far the difference exceeds the kind's tolerance, in tolerances, capped at 2
(two unmatched instances). A missing pin or an extra nut costs about one instance, a long screw
in place of a short one a mismatched pair. Tolerances are learnt from the shots: the
``tolerance_quantile`` of the matched differences between every two shots, times
``tolerance_factor``, at least a floor; so a kind whose parts lie anywhere (a bag of screws)
gets a wide position tolerance and a pin grid a tight one. Costs are in instances, so kinds and
categories with many parts or few are on one scale, and matched pairs within tolerance cost
nothing, so many parts do not add up noise. A kind's cost is divided by the largest cost of that
kind between a shot and its nearest other shot (at least 1): a kind the shots disagree on by
many instances (a background shade that breaks into specks under uneven light) weighs less.

Splits and merges cost little: an unmatched instance may join a matched pair on its own side
(a piece broken off, or two touching parts seen as one on the other side) when the union's area,
position and chroma match the partner, at ``merge_cost`` instead of 1.

Image score: the mean of the ``n_nearest`` smallest distances over the shots (kNN over sets),
so a normal variation that any shot shows is no evidence, plus ``offset``. The fusion divides a
score by its leave-one-out maximum over the shots, which for a cost that is exactly 0 within
tolerance is often 0 or a quarter instance; the offset (half an instance) keeps one shot's small
disagreement from multiplying this score in the fusion. It changes no ranking of this score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from locoad.components.colour_kinds import ColourKinds
from locoad.errors import ConfigError
from locoad.features.base import Feature, FeatureScore
from locoad.nested import is_number
from locoad.types import ParsedImage

# Raw moments per instance: pixel count, sums of y, x, y^2, xy, x^2 (pixels), sums of a, b.
_N, _Y, _X, _YY, _XY, _XX, _A, _B = range(8)
GROUPS = ("size", "shape", "position", "chroma")


@dataclass
class InstanceSet:
    kind: np.ndarray  # (n,) colour-class id of every instance
    moments: np.ndarray  # (n, 8) raw moments (for unions of instances)
    boxes: np.ndarray  # (n, 4) bounding boxes y0, x0, y1, x1 (pixels, rows at the capture's scale, end exclusive)
    shape: tuple[float, int]  # (H, W) of the image, H at the capture's scale (H * aspect)
    origin: tuple[float, float]  # foreground centroid (y, x) in pixels


@dataclass
class InstanceSetState:
    centres: np.ndarray  # (K, 3) colour-class centres (scaled CIELAB)
    background: np.ndarray  # (K,) bool
    shots: list[InstanceSet]
    tolerance: np.ndarray  # (K, len(GROUPS)) per kind and descriptor group
    norm: np.ndarray  # (K,) a kind's cost is divided by this (>= 1): its cost between the shots


def describe(m: np.ndarray, shape: tuple[int, int], origin: tuple[float, float]) -> dict[str, np.ndarray]:
    """Descriptor groups of instances from their raw moments (n, 8): size (n, 1) log area
    fraction, shape (n, 2) log major / minor axis length (fraction of sqrt(H W)), position (n, 2)
    relative to ``origin`` (fraction of H, W), chroma (n, 2)."""
    h, w = shape
    n = m[:, _N]
    cy, cx = m[:, _Y] / n, m[:, _X] / n
    # Central second moments (regionprops' inertia tensor).
    vyy = m[:, _YY] / n - cy**2
    vxx = m[:, _XX] / n - cx**2
    vxy = m[:, _XY] / n - cy * cx
    half_trace, root = (vyy + vxx) / 2, np.sqrt(((vyy - vxx) / 2) ** 2 + vxy**2)
    major = 4 * np.sqrt(np.maximum(half_trace + root, 0))
    minor = 4 * np.sqrt(np.maximum(half_trace - root, 0))
    side = np.sqrt(h * w)
    return {
        "size": np.log(n / (h * w))[:, None],
        "shape": np.log(np.maximum(np.stack([major, minor], 1), 1.0) / side),
        "position": np.stack([(cy - origin[0]) / h, (cx - origin[1]) / w], 1),
        "chroma": np.stack([m[:, _A] / n, m[:, _B] / n], 1),
    }


def group_distances(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> np.ndarray:
    """(n_a, n_b, len(GROUPS)) Euclidean distance of every pair within each group."""
    return np.stack([np.linalg.norm(a[g][:, None] - b[g][None], axis=-1) for g in GROUPS], -1)


class InstanceSetScore(Feature):
    name = "instance_set"
    needs_classes = False

    def __init__(
        self,
        n_colours: int = 8,
        lightness_weight: float = 0.5,
        sample_stride: int = 4,
        background_share: float = 0.1,
        white_balance: str | bool = "gray_world",  # bool: configs before the choice (ColourKinds)
        merge_distance: float = 12.0,
        min_area: float = 0.0003,
        smooth: bool = True,
        size_floor: float = 0.15,
        shape_floor: float = 0.15,
        position_floor: float = 0.03,
        chroma_floor: float = 10.0,
        tolerance_quantile: float = 0.9,
        tolerance_factor: float = 1.5,
        merge_cost: float = 0.25,
        merge_gap: float = 0.015,
        n_nearest: int = 1,
        offset: float = 0.5,
        seed: int = 0,
        dark_chroma: float = 0.0,
    ):
        if not is_number(merge_distance):
            # conf/components/colour_kinds.yaml's list of cuts (composition, symmetry) failed here at fit with a TypeError
            raise ConfigError(f"instance_set merge_distance must be one number (one cut; a list of cuts is for composition "
                              f"and symmetry), got {merge_distance!r}")
        if n_nearest < 1:
            raise ConfigError(f"instance_set n_nearest must be >= 1, got {n_nearest}")
        if offset < 0:
            raise ConfigError(f"instance_set offset must be >= 0, got {offset}")
        if not 0.0 < tolerance_quantile <= 1.0:
            raise ConfigError(f"instance_set tolerance_quantile must be in (0, 1], got {tolerance_quantile}")
        if not 0.0 <= merge_cost <= 1.0:
            raise ConfigError(f"instance_set merge_cost must be in [0, 1] (an unmatched instance costs 1), got {merge_cost}")
        if min(size_floor, shape_floor, position_floor, chroma_floor) <= 0:
            raise ConfigError("instance_set size/shape/position/chroma floors must be > 0 (they divide differences)")
        self.kinds = ColourKinds(n_colours, lightness_weight, sample_stride, background_share, white_balance,
                                 merge_distance, seed, owner="instance_set", dark_chroma=dark_chroma)
        self.min_area = min_area
        self.smooth = smooth
        self.floors = np.array([size_floor, shape_floor, position_floor, chroma_floor])
        self.tolerance_quantile = tolerance_quantile
        self.tolerance_factor = tolerance_factor
        self.merge_cost = merge_cost
        self.merge_gap = merge_gap
        self.n_nearest = n_nearest
        self.offset = offset

    # -- instances -------------------------------------------------------------------------------
    def instances(self, parsed: ParsedImage, centres: np.ndarray, background: np.ndarray) -> InstanceSet:
        kinds = self.kinds.kind_map(parsed, centres)
        n_kinds = len(centres)
        if self.smooth:
            # 3x3 majority vote: anti-aliased edges between two colours fall into a third kind as
            # one-pixel slivers, which would be counted as instances.
            votes = np.stack([ndimage.uniform_filter((kinds == c).astype(np.float32), 3, mode="nearest")
                              for c in range(n_kinds)])
            kinds = votes.argmax(0)
        h, w = kinds.shape
        fg = ~background[kinds]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        # The image is the capture squeezed to a square: rows are stretched back to the capture's
        # scale (a = height / width), so a part's axis lengths do not change as it turns; every
        # pixel then stands for an area a (moments weighted so; sizes stay image fractions).
        a = float(parsed.aspect)
        yy *= a
        origin = (float(yy[fg].mean()), float(xx[fg].mean())) if fg.any() else ((h - 1) / 2, (w - 1) / 2)
        lab = self.kinds.lab(parsed)
        labels = np.zeros((h, w), np.int64)
        kind_of: list[int] = []
        eight = np.ones((3, 3), dtype=bool)
        for c in np.flatnonzero(~background):
            pieces, n = ndimage.label(kinds == c, structure=eight)
            if n:
                labels[pieces > 0] = pieces[pieces > 0] + len(kind_of)
                kind_of += [int(c)] * n
        total = len(kind_of) + 1
        flat = labels.ravel()
        vals = [np.ones(h * w), yy.ravel(), xx.ravel(), yy.ravel() ** 2, (yy * xx).ravel(), xx.ravel() ** 2,
                lab[..., 1].ravel(), lab[..., 2].ravel()]
        moments = a * np.stack([np.bincount(flat, weights=v, minlength=total) for v in vals], 1)[1:]
        boxes = np.array([[b[0].start * a, b[1].start, b[0].stop * a, b[1].stop] for b in ndimage.find_objects(labels)],
                         dtype=np.float64).reshape(-1, 4)
        keep = moments[:, _N] >= self.min_area * h * a * w
        return InstanceSet(np.asarray(kind_of, dtype=np.int64)[keep], moments[keep], boxes[keep], (h * a, w), origin)

    # -- distance of two sets --------------------------------------------------------------------
    def pair_costs(self, excess: np.ndarray) -> np.ndarray:
        """Pair cost from (…, len(GROUPS)) differences in tolerances: the sum of what exceeds 1,
        capped at 2 (no worse than leaving both unmatched)."""
        return np.minimum(np.maximum(excess - 1.0, 0.0).sum(-1), 2.0)

    def kind_cost(self, a: np.ndarray, a_set: InstanceSet, b: np.ndarray, b_set: InstanceSet, tol: np.ndarray) -> float:
        """Cost of matching instances ``a`` of ``a_set`` with instances ``b`` of ``b_set`` (one kind)."""
        if not len(a) or not len(b):
            return float(len(a) + len(b))
        da = describe(a_set.moments[a], a_set.shape, a_set.origin)
        db = describe(b_set.moments[b], b_set.shape, b_set.origin)
        cost = self.pair_costs(group_distances(da, db) / tol)
        # A pair at the cap costs as much as two unmatched instances; kept as a pair, the merge
        # step below can still find that one side was split.
        rows, cols = linear_sum_assignment(cost)
        pair = cost[rows, cols]
        total = float(pair.sum()) + (len(a) - len(rows)) + (len(b) - len(cols))
        if self.merge_cost >= 1.0:
            return total
        # Splits and merges: an unmatched instance may join a matched pair on its own side when
        # it lies next to the pair's piece (within ``merge_gap``: a piece broken off, or two parts
        # that touch on the other side) and the union's size, position and chroma match the
        # partner (shape is left out: two touching parts have no shape of their own). Only the
        # side with more instances has unmatched ones, so at most one side merges and the other
        # side's pieces are the partners as they are.
        groups = [GROUPS.index(g) for g in ("size", "position", "chroma")]
        for own, own_set, other, other_set, mine, theirs in ((a, a_set, b, b_set, rows, cols),
                                                              (b, b_set, a, a_set, cols, rows)):
            union = own_set.moments[own[mine]].copy()  # (p, 8), one per matched pair
            box = own_set.boxes[own[mine]].copy()
            gap_px = self.merge_gap * np.sqrt(own_set.shape[0] * own_set.shape[1])
            partner = describe(other_set.moments[other[theirs]], other_set.shape, other_set.origin)
            for u in np.setdiff1d(np.arange(len(own)), mine):
                ub = own_set.boxes[own[u]]
                gap = np.maximum(np.maximum(box[:, :2] - ub[2:], ub[:2] - box[:, 2:]), 0).max(1)
                cand = union + own_set.moments[own[u]]
                dc = describe(cand, own_set.shape, own_set.origin)
                exc = np.stack([np.linalg.norm(dc[GROUPS[g]] - partner[GROUPS[g]], axis=-1) / tol[g] for g in groups], -1)
                new = self.pair_costs(exc) + self.merge_cost
                gain = np.where(gap <= gap_px, pair + 1.0 - new, 0.0)
                j = int(np.argmax(gain)) if len(gain) else -1
                if j >= 0 and gain[j] > 0:
                    union[j], pair[j] = cand[j], new[j] - self.merge_cost
                    box[j] = np.concatenate([np.minimum(box[j, :2], ub[:2]), np.maximum(box[j, 2:], ub[2:])])
                    total -= gain[j]
        return total

    def kind_costs(self, x: InstanceSet, y: InstanceSet, tolerance: np.ndarray) -> np.ndarray:
        """(K,) cost of every kind, in instances."""
        out = np.zeros(len(tolerance))
        for c in np.union1d(x.kind, y.kind):
            out[c] = self.kind_cost(np.flatnonzero(x.kind == c), x, np.flatnonzero(y.kind == c), y, tolerance[c])
        return out

    def set_distance(self, x: InstanceSet, y: InstanceSet, tolerance: np.ndarray, norm: np.ndarray) -> float:
        """Sum over kinds of the kind cost over the kind's norm."""
        return float((self.kind_costs(x, y, tolerance) / norm).sum())

    # -- Feature ---------------------------------------------------------------------------------
    def fit(self, shots: list[ParsedImage]) -> InstanceSetState:
        centres, background = self.kinds.fit(shots)
        sets = [self.instances(p, centres, background) for p in shots]
        tolerance = self._tolerances(sets, len(centres))
        return InstanceSetState(centres, background, sets, tolerance, self._norms(sets, tolerance))

    def _norms(self, sets: list[InstanceSet], tolerance: np.ndarray) -> np.ndarray:
        """(K,) per kind, the largest cost between a shot and its nearest other shot, at least 1.
        A kind whose pieces the shots disagree on by many instances (a background shade that
        breaks into specks under uneven light, a label that differs between variants) then
        weighs less; a kind the shots agree on keeps the unit of one instance."""
        k = len(sets)
        if k < 2:
            return np.ones(len(tolerance))
        cost = np.full((k, k, len(tolerance)), np.inf)
        for i in range(k):
            for j in range(i + 1, k):
                cost[i, j] = cost[j, i] = self.kind_costs(sets[i], sets[j], tolerance)
        return np.maximum(cost.min(1).max(0), 1.0)

    def _tolerances(self, sets: list[InstanceSet], n_kinds: int) -> np.ndarray:
        """(K, len(GROUPS)): per kind, the ``tolerance_quantile`` of the matched differences
        between every two shots times ``tolerance_factor``, at least the floors. A kind seen in
        fewer than two shots (one variant of a category that has several) gets the quantile of
        all kinds' differences: the capture's jitter is shared. The matching that finds the
        pairs allows a wide position change (parts of a bag lie anywhere)."""
        wide = self.floors.copy()
        wide[GROUPS.index("position")] = max(wide[GROUPS.index("position")], 0.25)
        diffs: dict[int, list[np.ndarray]] = {}
        for c in range(n_kinds):
            for i in range(len(sets)):
                for j in range(i + 1, len(sets)):
                    a, b = np.flatnonzero(sets[i].kind == c), np.flatnonzero(sets[j].kind == c)
                    if not len(a) or not len(b):
                        continue
                    d = group_distances(describe(sets[i].moments[a], sets[i].shape, sets[i].origin),
                                        describe(sets[j].moments[b], sets[j].shape, sets[j].origin))
                    rows, cols = linear_sum_assignment(self.pair_costs(d / wide) + (d / wide).sum(-1) * 1e-3)
                    diffs.setdefault(c, []).append(d[rows, cols])
        tol = np.tile(self.floors, (n_kinds, 1))
        if diffs:
            pooled = np.quantile(np.concatenate([x for v in diffs.values() for x in v]), self.tolerance_quantile, axis=0)
            tol = np.maximum(tol, self.tolerance_factor * pooled)
        for c, v in diffs.items():
            tol[c] = np.maximum(self.floors, self.tolerance_factor * np.quantile(np.concatenate(v), self.tolerance_quantile, axis=0))
        return tol

    def score(self, parsed: ParsedImage, state: InstanceSetState) -> FeatureScore:
        x = self.instances(parsed, state.centres, state.background)
        d = np.sort([self.set_distance(x, s, state.tolerance, state.norm) for s in state.shots])
        return FeatureScore(float(d[: self.n_nearest].mean()) + self.offset)
