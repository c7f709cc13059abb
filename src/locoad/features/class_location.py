"""Class location: where each class sits, in coordinates normalised to [0, 1].

``mode="radial"`` is the seed's distance of the class's mean position to (0, 0) (divided by
the image diagonal); ``mode="centroid"`` (default) keeps the 2-D centroid, which also sees a
part moved along a circle around the corner.

``frame="image"`` (the seed's) measures positions in image coordinates; ``frame="foreground"``
relative to the centroid of the whole foreground, so a camera or fixture shift that moves every
part together is not a location anomaly, while a part moved relative to the others still is
(``radial`` then measures the distance to that centroid).
"""

from __future__ import annotations

import numpy as np

from locoad.errors import ConfigError
from locoad.features.base import VectorScore
from locoad.types import BACKGROUND, ParsedImage


class ClassLocationScore(VectorScore):
    name = "class_location"

    def __init__(self, mode: str = "centroid", scale: float = 0.1, reduce: str = "mean", frame: str = "image"):
        if mode not in ("centroid", "radial"):
            raise ConfigError(f"class_location mode must be 'centroid' or 'radial', got {mode!r}")
        if frame not in ("image", "foreground"):
            raise ConfigError(f"class_location frame must be 'image' or 'foreground', got {frame!r}")
        super().__init__(scale=scale, reduce=reduce)
        self.mode = mode
        self.frame = frame

    def describe(self, parsed: ParsedImage) -> tuple[np.ndarray, np.ndarray]:
        h, w = parsed.class_map.shape
        yy, xx = np.mgrid[0:h, 0:w]
        ids = parsed.class_map.ravel()
        c = parsed.num_classes
        counts = parsed.class_pixel_counts
        n = np.maximum(counts, 1)
        cy = np.bincount(ids, weights=(yy.ravel() + 0.5) / h, minlength=c)[:c] / n
        cx = np.bincount(ids, weights=(xx.ravel() + 0.5) / w, minlength=c)[:c] / n
        present = counts > 0
        if self.frame == "foreground":
            fg = ids != BACKGROUND
            if fg.any():  # no foreground: nothing to be relative to (every class is absent anyway)
                cy = cy - (yy.ravel()[fg] + 0.5).mean() / h
                cx = cx - (xx.ravel()[fg] + 0.5).mean() / w
        if self.mode == "radial":
            return (np.hypot(cy, cx) / np.sqrt(2.0))[:, None], present
        return np.stack([cy, cx], axis=1), present
