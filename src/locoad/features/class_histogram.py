"""Class histogram: how much of each aligned class an image holds, L1 distance.

``mode="area"`` (default, the seed's): the pixel area of each class (fraction of the image).
Absent classes have area 0, so a missing part moves the histogram by its whole area and an
extra part (unmatched, or assigned to an existing class) adds its area.

``mode="count"``: the number of instances of each class, an instance being a connected
region of one class in the class map. A missing or extra part changes the histogram by
exactly 1 whatever its size, while the normal jitter of part sizes and of segment borders,
which the area histogram adds up over every class, does not change it at all. Small
countable parts (a pin among fifteen, one lever of a connector) are invisible by area but
not by count.

``mode="both"``: the sum of the two distances, the count distance weighted by
``count_weight`` (the area fraction one instance is worth).

Calibration: counts are integers, and a few shots often agree exactly, so their leave-one-out
scores are all 0 and the fusion would divide by ~0, letting any single count difference
outweigh every other score. A count cannot differ by less than one instance, so the
leave-one-out scores are floored at one instance (``loo_floor``; ``null`` = one instance in
count and both modes, none in area mode): one extra or missing part then weighs as much as
the largest deviation the shots show among themselves.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as connected_regions

from locoad.errors import ConfigError
from locoad.features.base import VectorScore, _pad
from locoad.types import BACKGROUND, ParsedImage

MODES = ("area", "count", "both")


def class_instance_counts(class_map: np.ndarray, num_classes: int, min_pixels: int = 1) -> np.ndarray:
    """(num_classes,) number of 8-connected regions (the segmenters' connectivity) of each class id in ``class_map``
    (regions under ``min_pixels`` pixels ignored)."""
    regions, n = connected_regions(class_map, background=-1, connectivity=2, return_num=True)
    regions = regions.ravel()
    sizes = np.bincount(regions, minlength=n + 1)
    # The class of every region: any of its pixels (all share one class).
    cls = np.zeros(n + 1, dtype=np.int64)
    cls[regions] = class_map.ravel()
    keep = sizes >= min_pixels
    keep[0] = False  # label 0 is unused (background=-1 never occurs)
    return np.bincount(cls[keep], minlength=num_classes)[:num_classes].astype(np.float64)


class ClassHistogramScore(VectorScore):
    name = "class_histogram"

    def __init__(self, mode: str = "area", count_weight: float = 0.01, min_pixels: int = 1,
                 loo_floor: float | None = None):
        if mode not in MODES:
            raise ConfigError(f"class_histogram mode must be one of {MODES}, got {mode!r}")
        super().__init__()  # its own distance (an L1 over classes): no per-class scale or reduce
        self.mode = mode
        self.count_weight = count_weight
        self.min_pixels = min_pixels
        if loo_floor is None:
            loo_floor = {"area": 0.0, "count": 1.0, "both": count_weight}[mode]
        self.loo_floor = float(loo_floor)

    def describe(self, parsed: ParsedImage) -> tuple[np.ndarray, np.ndarray]:
        cols = []
        if self.mode in ("area", "both"):
            cols.append(parsed.class_pixel_counts / parsed.class_map.size)
        if self.mode in ("count", "both"):
            counts = class_instance_counts(parsed.class_map, parsed.num_classes, self.min_pixels)
            cols.append(counts * (self.count_weight if self.mode == "both" else 1.0))
        present = np.ones(parsed.num_classes, dtype=bool)  # area/count 0 is a value, not a gap
        return np.stack(cols, axis=1), present

    def distance(self, x: tuple[np.ndarray, np.ndarray], y: tuple[np.ndarray, np.ndarray]) -> float:
        a, b = x[0], y[0]
        n = max(len(a), len(b))
        a, b = _pad(a, n), _pad(b, n)
        keep = np.arange(n) != BACKGROUND
        return float(np.abs(a - b)[keep].sum())

    def loo_floored(self, scores: np.ndarray) -> np.ndarray:
        return np.maximum(scores, self.loo_floor) if self.loo_floor > 0 else scores
