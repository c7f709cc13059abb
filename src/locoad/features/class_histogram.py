"""Class histogram: the area of each aligned class (fraction of the image), L1 distance.

Absent classes have area 0, so a missing part moves the histogram by its whole area and an
extra part (unmatched, or assigned to an existing class) adds its area.
"""

from __future__ import annotations

import numpy as np

from locoad.features.base import VectorScore
from locoad.types import BACKGROUND, ParsedImage


class ClassHistogramScore(VectorScore):
    name = "class_histogram"

    def describe(self, parsed: ParsedImage) -> tuple[np.ndarray, np.ndarray]:
        hist = parsed.class_pixel_counts / parsed.class_map.size
        present = np.ones(parsed.num_classes, dtype=bool)  # area 0 is a value, not a gap
        return hist[:, None], present

    def distance(self, x: tuple[np.ndarray, np.ndarray], y: tuple[np.ndarray, np.ndarray]) -> float:
        a, b = x[0][:, 0], y[0][:, 0]
        n = max(len(a), len(b))
        a, b = np.pad(a, (0, n - len(a))), np.pad(b, (0, n - len(b)))
        keep = np.arange(n) != BACKGROUND
        return float(np.abs(a - b)[keep].sum())
