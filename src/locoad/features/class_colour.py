"""Class colour: CIELAB chroma per class, lightness dropped.

``mode="ratio"`` is the seed's a/b per pixel averaged per class (a gain in brightness scales a
and b alike, so the ratio ignores it; unstable where b ~ 0, so b is clamped away from zero by
``eps``); ``mode="ab"`` (default) is the mean (a, b) vector per class, the numerically stable
variant, which a change of brightness does move (chroma shrinks with it).
"""

from __future__ import annotations

import numpy as np

from locoad.errors import ConfigError
from locoad.features.base import VectorScore
from locoad.types import ParsedImage


class ClassColourScore(VectorScore):
    name = "class_colour"

    def __init__(self, mode: str = "ab", eps: float = 1.0, scale: float = 20.0, reduce: str = "mean"):
        if mode not in ("ab", "ratio"):
            raise ConfigError(f"class_colour mode must be 'ab' or 'ratio', got {mode!r}")
        if not eps > 0:
            raise ConfigError(f"class_colour eps must be > 0 (it keeps b away from zero), got {eps}")
        super().__init__(scale=scale, reduce=reduce)
        self.mode = mode
        self.eps = eps

    def describe(self, parsed: ParsedImage) -> tuple[np.ndarray, np.ndarray]:
        a, b = parsed.lab[..., 1].ravel(), parsed.lab[..., 2].ravel()
        if self.mode == "ratio":
            safe_b = np.where(np.abs(b) < self.eps, np.copysign(self.eps, b), b)
            values = (a / safe_b)[:, None]
        else:
            values = np.stack([a, b], axis=1)
        ids = parsed.class_map.ravel()
        c = parsed.num_classes
        counts = parsed.class_pixel_counts
        sums = np.stack([np.bincount(ids, weights=values[:, j], minlength=c)[:c] for j in range(values.shape[1])], 1)
        present = counts > 0
        return sums / np.maximum(counts, 1)[:, None], present
