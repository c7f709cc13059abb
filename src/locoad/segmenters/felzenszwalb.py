"""Weight-free part segmentation: Felzenszwalb's graph segmentation, then merging of
adjacent regions with similar mean CIELAB colour (a region adjacency graph).

Over-segmentation splits a shaded part into pieces; the merge step rejoins them, so segments
are part-level. Runs at ``work_size`` px and is upsampled back (nearest) to the input size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.color import rgb2lab
from skimage.filters import gaussian
from skimage.segmentation import felzenszwalb

from locoad.segmenters.base import Segmenter


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
    ):
        super().__init__(min_area=min_area, drop_background=drop_background, max_segments=max_segments)
        self.scale = scale
        self.sigma = sigma
        self.min_size = min_size
        self.merge_threshold = merge_threshold
        self.work_size = work_size

    def propose(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        small = rgb
        if self.work_size and max(h, w) != self.work_size:
            f = self.work_size / max(h, w)
            small = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR))
        regions = felzenszwalb(small, scale=self.scale, sigma=self.sigma, min_size=self.min_size)
        if self.merge_threshold > 0:
            # Merge on a lightly smoothed CIELAB image: distances are perceptual, noise averaged out.
            lab = rgb2lab(gaussian(small, sigma=1.0, channel_axis=-1))
            regions = merge_similar_regions(regions, lab, self.merge_threshold)
        if regions.shape != (h, w):
            regions = np.asarray(Image.fromarray(regions.astype(np.int32)).resize((w, h), Image.NEAREST))
        return regions


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
