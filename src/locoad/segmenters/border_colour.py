"""Weight-free foreground segmentation from the colour of the image border.

The objects of a LOCO-like image lie inside the frame on a fairly uniform background, so a thin
ring of pixels along the image border describes the background: its median CIELAB colour is
the background colour, and the median distance of the ring's pixels to it is the background's
spread. Foreground = pixels farther from the background colour than ``spread_factor`` spreads
(never closer than ``min_distance``, so a uniform image does not split its noise), cleaned with
a small opening and closing, holes filled; each connected component is one segment.

The threshold comes from the background alone, not from Otsu on the distance image: Otsu
splits the image's two largest modes, and when the foreground has several colours (pale
connector housings and a saturated cable on grey) it cut between two foreground colours and
lost whole objects on the synthetic ``splicing_connectors``.

Segments are objects, not parts: this is for scores that need only a foreground mask (the
``anomalydino`` preset), where a part segmenter is wasted work. It runs at ``work_size`` px (a
few ms; finer than any backbone's patch grid) and is upsampled back (nearest) to the input size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.color import rgb2lab
from skimage.filters import gaussian
from skimage.morphology import closing, disk, opening

from locoad.errors import ConfigError
from locoad.nested import is_number
from locoad.segmenters.base import Segmenter, check_work_size, to_size, to_work_size
from locoad.types import rgb_to_lab


class BorderColourSegmenter(Segmenter):
    def __init__(
        self,
        work_size: int | None = 128,
        border: float = 0.03,
        sigma: float = 0.0,
        min_distance: float = 10.0,
        spread_factor: float = 4.0,
        open_radius: int = 1,
        close_radius: int = 1,
        fill_holes: bool = True,
        min_area: float = 0.001,
        drop_background: bool = True,
        max_segments: int = 64,
    ):
        super().__init__(
            min_area=min_area, drop_background=drop_background, max_segments=max_segments
        )
        check_work_size(work_size)
        if not is_number(border) or not 0 <= border < 0.5:
            # 0.5 or more makes the ring the whole image: the background colour then is the objects' too
            # (0 is a one-pixel ring)
            raise ConfigError(f"segmenter.border must be a fraction of the shorter side in [0, 0.5), got {border!r}")
        self.work_size = work_size
        self.border = border
        self.sigma = sigma
        self.min_distance = min_distance
        self.spread_factor = spread_factor
        self.open_radius = open_radius
        self.close_radius = close_radius
        self.fill_holes = fill_holes

    def foreground(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W) bool foreground mask, at the image's own size."""
        if self.sigma > 0:
            lab = rgb2lab(gaussian(rgb.astype(np.float32) / 255.0, sigma=self.sigma, channel_axis=-1))
        else:
            lab = rgb_to_lab(rgb)
        h, w = lab.shape[:2]
        b = max(1, round(self.border * min(h, w)))
        ring = np.ones((h, w), bool)
        ring[b:-b, b:-b] = False
        dist = np.linalg.norm(lab - np.median(lab[ring], axis=0), axis=-1)
        threshold = max(self.min_distance, self.spread_factor * float(np.median(dist[ring])))
        fg = dist > threshold
        if self.open_radius > 0:
            fg = opening(fg, disk(self.open_radius))
        if self.close_radius > 0:
            fg = closing(fg, disk(self.close_radius))  # reflects at the edges: nothing eroded there
        if self.fill_holes:
            fg = ndimage.binary_fill_holes(fg)
        return fg

    def propose(self, rgb: np.ndarray) -> list[np.ndarray]:
        labels, n = ndimage.label(self.foreground(to_work_size(rgb, self.work_size)), structure=np.ones((3, 3)))
        labels = to_size(labels, rgb.shape[:2])
        # One mask per object: the background is never a segment, and drop_background=false
        # only stops dropping objects that touch two image edges.
        return [labels == i for i in range(1, n + 1)]
