"""Weight-free part segmentation: Felzenszwalb's graph segmentation, then merging of
adjacent regions with similar mean CIELAB colour (a region adjacency graph).

Over-segmentation splits a shaded part into pieces; the merge step rejoins them, so segments
are part-level. Runs at ``work_size`` px and is upsampled back (nearest) to the input size.

Two merge rules (``merge``):

* ``components``: join every adjacent pair closer than the threshold and take connected
  components (single linkage). Fast, but it *chains*: the thin, mixed-colour strips that
  Felzenszwalb leaves along anti-aliased edges are close to both sides, so two clearly
  different parts (a pale housing and a grey table, a dark box and its lighter compartments)
  are joined through them, and whether they are depends on the lighting of each image.
* ``hierarchical``: first absorb edge strips (thin regions whose colour is a blend of their
  neighbours') into their most similar neighbour, then repeatedly merge the closest adjacent pair and
  recompute its mean colour (centroid linkage, as skimage's ``merge_hierarchical``) until no
  pair is closer than the threshold. Two regions merge only if their *means* are alike, so
  segments are stable across images of the same scene.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.color import rgb2lab
from skimage.filters import gaussian
from skimage.segmentation import felzenszwalb

from locoad.errors import ConfigError
from locoad.segmenters.base import Segmenter, check_work_size, to_size, to_work_size


class FelzenszwalbSegmenter(Segmenter):
    def __init__(
        self,
        scale: float = 300.0,
        sigma: float = 0.8,
        min_size: int = 40,
        merge_threshold: float = 12.0,
        work_size: int | None = 256,
        min_area: float = 0.001,
        drop_background: bool = True,
        max_segments: int = 64,
        merge: str = "hierarchical",
        strip_width: float = 2.5,
        foreground_strip_width: float | None = None,
    ):
        super().__init__(min_area=min_area, drop_background=drop_background, max_segments=max_segments)
        if merge not in ("components", "hierarchical"):
            raise ConfigError(f"merge must be 'components' or 'hierarchical', got {merge!r}")
        check_work_size(work_size)
        self.merge = merge
        self.strip_width = strip_width
        self.foreground_strip_width = foreground_strip_width
        self.scale = scale
        self.sigma = sigma
        self.min_size = min_size
        self.merge_threshold = merge_threshold
        self.work_size = work_size
        # The last image's graph segmentation and smoothed CIELAB, shared with the foreground
        # segmenter, which differs only in the merge: Felzenszwalb (most of the cost) runs once
        # per image for both.
        self._last: dict = {}

    def foreground_segmenter(self) -> FelzenszwalbSegmenter | None:
        """The same segmenter with ``strip_width=foreground_strip_width`` (None: the parts'
        foreground). Absorbing edge strips makes steadier parts, but a thin part of a colour
        close to the background's (a cable, a lever) can go into the background with them on
        one capture and not on the next; without the absorption the foreground stays put across
        capture sizes (``benchmarks/segmenter_stability.py``)."""
        if self.foreground_strip_width is None or self.merge != "hierarchical":
            return None  # the components merge absorbs no strips
        kwargs = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        fg = FelzenszwalbSegmenter(**{**kwargs, "strip_width": self.foreground_strip_width,
                                      "foreground_strip_width": None})
        fg._last = self._last
        return fg

    def graph_regions(self, small: np.ndarray) -> np.ndarray:
        """Felzenszwalb's regions of a work-size image; the last image's are reused."""
        key = (hashlib.blake2b(small.tobytes(), digest_size=16).digest(), small.shape,
               self.scale, self.sigma, self.min_size)
        if self._last.get("key") != key:
            self._last.clear()
            self._last.update(key=key, regions=felzenszwalb(small, scale=self.scale, sigma=self.sigma,
                                                            min_size=self.min_size))
        return self._last["regions"]

    def propose(self, rgb: np.ndarray) -> np.ndarray:
        small = to_work_size(rgb, self.work_size)
        regions = self.graph_regions(small)
        if self.merge_threshold > 0:
            # Merge on a lightly smoothed CIELAB image: distances are perceptual, noise averaged
            # out. Kept with the regions (the same image) for the foreground segmenter.
            if "lab" not in self._last:
                self._last["lab"] = rgb2lab(gaussian(small, sigma=1.0, channel_axis=-1))
            lab = self._last["lab"]
            if self.merge == "hierarchical":
                regions = merge_hierarchical(regions, lab, self.merge_threshold, self.strip_width)
            else:
                regions = merge_similar_regions(regions, lab, self.merge_threshold)
        return to_size(regions, rgb.shape[:2])


def merge_similar_regions(regions: np.ndarray, lab: np.ndarray, threshold: float) -> np.ndarray:
    """Join adjacent regions whose mean colours are closer than ``threshold``.

    The same cut as skimage's ``rag_mean_color`` + ``cut_threshold`` (connected components of
    the graph of similar neighbours), vectorised: the RAG construction there calls Python per
    pixel and dominated the run time.
    """
    n = int(regions.max()) + 1
    ids = regions.ravel()
    counts = np.maximum(np.bincount(ids, minlength=n), 1)
    means = np.stack([np.bincount(ids, weights=lab[..., c].ravel(), minlength=n) for c in range(3)], 1) / counts[:, None]
    pairs = np.concatenate(
        [
            np.stack([regions[:, :-1].ravel(), regions[:, 1:].ravel()], 1),
            np.stack([regions[:-1, :].ravel(), regions[1:, :].ravel()], 1),
        ]
    )
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    close = np.linalg.norm(means[pairs[:, 0]] - means[pairs[:, 1]], axis=1) < threshold
    a, b = pairs[close].T
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return component[regions]


def _adjacent_pairs(regions: np.ndarray) -> np.ndarray:
    """(P, 2) unique unordered pairs of 4-adjacent region ids (a < b)."""
    pairs = np.concatenate(
        [
            np.stack([regions[:, :-1].ravel(), regions[:, 1:].ravel()], 1),
            np.stack([regions[:-1, :].ravel(), regions[1:, :].ravel()], 1),
        ]
    )
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(np.sort(pairs, axis=1), axis=0)


def region_half_width(regions: np.ndarray) -> np.ndarray:
    """Per region id, the largest distance (px) from one of its pixels to the region's border:
    about half the region's width at its widest (0.5-1 for a strip 1-2 px wide)."""
    from scipy import ndimage

    r = np.pad(regions, 1, mode="edge")
    inner = (
        (r[1:-1, 1:-1] == r[:-2, 1:-1]) & (r[1:-1, 1:-1] == r[2:, 1:-1])
        & (r[1:-1, 1:-1] == r[1:-1, :-2]) & (r[1:-1, 1:-1] == r[1:-1, 2:])
    )
    dist = ndimage.distance_transform_edt(inner) + 0.5  # border pixels count half a pixel
    n = int(regions.max()) + 1
    out = np.zeros(n)
    np.maximum.at(out, regions.ravel(), dist.ravel())
    return out


def _is_blend(c: np.ndarray, others: list[np.ndarray], tol: float = 0.15) -> bool:
    """Is colour ``c`` a mixture ``t * a + (1 - t) * b`` (0.1 <= t <= 0.9) of two of ``others``,
    up to ``tol`` times their distance? Anti-aliased and blurred edges are."""
    for x in range(len(others)):
        for y in range(x + 1, len(others)):
            a, b = others[x], others[y]
            d = a - b
            dd = float(np.dot(d, d))
            if dd < 1e-9:
                continue
            t = float(np.dot(c - b, d)) / dd
            if 0.1 <= t <= 0.9 and np.linalg.norm(c - (b + t * d)) <= tol * np.sqrt(dd):
                return True
    return False


def merge_hierarchical(regions: np.ndarray, lab: np.ndarray, threshold: float, strip_width: float = 2.5) -> np.ndarray:
    """Merge adjacent regions by mean CIELAB colour with centroid linkage.

    1. Edge strips are absorbed, narrowest first, into the adjacent region of the closest mean
       colour, whatever the distance: regions at most 2 px wide (every pixel on the border),
       and regions of half-width <= ``strip_width`` px (0 disables both) whose colour is a
       blend of two neighbours' colours (what blur and anti-aliasing leave along an edge).
       A thin region of a colour of its own (a lever, a cable) is a part and stays.
    2. The adjacent pair of closest means merges (means recomputed, pixel-weighted) while the
       closest distance is below ``threshold``.

    Returns a label map with the same region semantics as :func:`merge_similar_regions`.
    """
    import heapq

    n = int(regions.max()) + 1
    ids = regions.ravel()
    counts = np.bincount(ids, minlength=n).astype(np.float64)
    sums = np.stack([np.bincount(ids, weights=lab[..., c].ravel(), minlength=n) for c in range(3)], 1)
    parent = np.arange(n)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in _adjacent_pairs(regions):
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))

    def mean(i: int) -> np.ndarray:
        return sums[i] / max(counts[i], 1.0)

    def join(keep: int, gone: int) -> None:
        sums[keep] += sums[gone]
        counts[keep] += counts[gone]
        counts[gone] = 0
        parent[gone] = keep
        for m in neighbours[gone]:
            if m != keep:
                neighbours[m].discard(gone)
                neighbours[m].add(keep)
                neighbours[keep].add(m)
        neighbours[keep].discard(gone)
        neighbours[gone] = set()

    alive = counts > 0
    if strip_width > 0:
        half = region_half_width(regions)
        for i in np.argsort(half, kind="stable"):
            i = int(i)
            if not alive[i] or half[i] > strip_width or not neighbours[i]:
                continue
            nb = list(neighbours[i])
            if half[i] > 0.5 and not _is_blend(mean(i), [mean(m) for m in nb]):
                continue  # thin but of its own colour: a thin part, not an edge
            d = [np.linalg.norm(mean(i) - mean(m)) for m in nb]
            target = nb[int(np.argmin(d))]
            join(target, i)
            alive[i] = False

    heap: list[tuple[float, int, int]] = []
    for a in range(n):
        if alive[a]:
            for b in neighbours[a]:
                if a < b:
                    heap.append((float(np.linalg.norm(mean(a) - mean(b))), a, b))
    heapq.heapify(heap)
    while heap:
        d, a, b = heapq.heappop(heap)
        if d >= threshold:
            break
        if not (alive[a] and alive[b]) or b not in neighbours[a]:
            continue
        # Stale entry (a or b changed since it was pushed): the current distance is pushed
        # again whenever a region changes, so skip unless it still holds.
        cur = float(np.linalg.norm(mean(a) - mean(b)))
        if abs(cur - d) > 1e-9:
            continue
        keep, gone = (a, b) if counts[a] >= counts[b] else (b, a)
        join(keep, gone)
        alive[gone] = False
        for m in neighbours[keep]:
            heapq.heappush(heap, (float(np.linalg.norm(mean(keep) - mean(m))), min(keep, m), max(keep, m)))

    # Resolve parents to roots.
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    return root[regions]
