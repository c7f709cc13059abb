"""The data objects passed between stages: segment -> align -> extract -> score."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from locoad.colour import rgb_to_lab

# Class ids in a class map: 0 is background, 1..C are the reference image's segments and
# C + 1 is "unmatched" (a segment that no reference class claims). Every feature treats the
# unmatched id as one more class, so an extra part shows up rather than vanishing.
BACKGROUND = 0


@dataclass
class SegmentedImage:
    """One image after segmentation; the input of an aligner.

    rgb: (H, W, 3) uint8. segments: (H, W) int32, 0 = background, 1..S segment ids.
    features: optional (D, h, w) float patch features on the backbone grid.
    lab: CIELAB of ``rgb``, computed once and shared by the aligner and the class features.
    foreground: optional (H, W) bool product foreground judged apart from the segments (the
        foreground patch score reads it); None: ``segments > 0``.
    parts: with a backbone ensemble, each member's (D_i, h, w) features by member name
        (``features`` is then the primary member's); None: one backbone.
    aspect: the capture's height / width (``rgb`` is the capture squeezed to a square).
    """

    rgb: np.ndarray
    segments: np.ndarray
    features: torch.Tensor | None = None
    lab_image: np.ndarray | None = None  # (H, W, 3) CIELAB of ``rgb`` when already computed
    foreground: np.ndarray | None = None
    parts: dict[str, torch.Tensor] | None = None
    aspect: float = 1.0

    @property
    def lab(self) -> np.ndarray:
        if self.lab_image is None:
            self.lab_image = rgb_to_lab(self.rgb)
        return self.lab_image

    @property
    def num_segments(self) -> int:
        return int(self.segments.max()) if self.segments.size else 0


@dataclass
class ParsedImage:
    """Everything the seven scores read about one image. A score never runs a model itself.

    rgb: (H, W, 3) uint8 image at the data resolution.
    lab: (H, W, 3) float32 CIELAB image.
    class_map: (H, W) int64 aligned class ids (0 background, 1..C, C+1 unmatched).
    features: (D, h, w) float32 patch features (backbone grid).
    class_grid: (h, w) int64 class map resampled to the patch grid (majority class per patch).
    num_classes: C + 2 (background and unmatched included) so vectors have a fixed length.
    foreground: optional (h, w) bool, patches that are mostly foreground. Given, it does not
        depend on how the foreground was split into classes (so a foreground score is the same
        with or without alignment); else ``class_grid != 0``.
    parts: with a backbone ensemble, each member's (D_i, h, w) patch features by member name
        (``features`` is the primary member's); the patch scores with a ``backbone_part`` read
        theirs. None: one backbone.
    aspect: the capture's height / width (``rgb`` is the capture squeezed to a square).
    """

    rgb: np.ndarray
    lab: np.ndarray
    class_map: np.ndarray
    features: torch.Tensor
    class_grid: torch.Tensor
    num_classes: int
    foreground: torch.Tensor | None = None
    parts: dict[str, torch.Tensor] | None = None
    aspect: float = 1.0

    def apply(self, fn) -> None:
        """Pass every tensor through ``fn`` in place (the model's ``.to()``)."""
        self.class_grid = fn(self.class_grid)
        if self.foreground is not None:
            self.foreground = fn(self.foreground)
        if self.parts is None:
            self.features = fn(self.features)
            return
        # ``features`` is the primary member's entry of ``parts``: moved once, it stays that entry
        primary = next((n for n, t in self.parts.items() if t is self.features), None)
        self.parts = {n: fn(t) for n, t in self.parts.items()}
        self.features = self.parts[primary] if primary is not None else fn(self.features)

    @property
    def foreground_grid(self) -> torch.Tensor:
        return self.foreground if self.foreground is not None else self.class_grid != BACKGROUND

    @functools.cached_property
    def class_pixel_counts(self) -> np.ndarray:
        """(num_classes,) pixels per class in ``class_map``, shared by the class features."""
        return np.bincount(self.class_map.ravel(), minlength=self.num_classes)[: self.num_classes]
