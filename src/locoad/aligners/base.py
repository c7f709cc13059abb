"""Aligner protocol: give every segment of an image the class id of a reference image's segment."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod

import numpy as np
import torch

from locoad.types import SegmentedImage


def compact_ids(segments: np.ndarray) -> np.ndarray:
    """``segments`` with its ids renumbered 1..S in their order (0 stays background). A label map
    with a gap (ids 1 and 3) otherwise has a segment 2 of no pixels: a reference class nothing
    shows, which a one-to-one matching hands to an extra part instead of calling it unmatched."""
    ids = np.unique(segments[segments > 0])
    if len(ids) == 0 or ids[-1] == len(ids):
        return segments  # no gap: the map itself
    lut = np.zeros(int(ids[-1]) + 1, dtype=segments.dtype)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[segments]


class Aligner(ABC):
    """Fit on the reference image, then map any image's segments to reference classes.

    Output class maps use 0 = background, 1..C = reference segments (C = reference's segment
    count) and C + 1 = unmatched.
    """

    def __init__(self):
        self.reference: SegmentedImage | None = None

    def fitted_reference(self) -> SegmentedImage:
        """The reference ``fit`` kept; a clear error before ``fit``."""
        if self.reference is None:
            raise RuntimeError(f"{type(self).__name__} used before fit(reference): call fit with the reference image first")
        return self.reference

    @property
    def num_reference_classes(self) -> int:
        return self.fitted_reference().num_segments

    @property
    def unmatched_id(self) -> int:
        return self.num_reference_classes + 1

    def fit(self, reference: SegmentedImage) -> Aligner:
        # Kept without its features (nor a backbone ensemble's per-member ones): aligning reads
        # what fit derived from them, and a kept tensor would stay on the device of the fit.
        # Ids without a gap: the classes are 1..C, C the segments the reference shows.
        self.reference = dataclasses.replace(reference, segments=compact_ids(reference.segments),
                                             features=None, parts=None)
        return self

    def follow(self, device: torch.device) -> None:
        """Place any network on ``device`` (the trainer's) when configured with device=auto."""
        return  # weight-free by default: nothing to place

    def reference_class_map(self) -> np.ndarray:
        """The reference's own class map (default: each segment is its own class)."""
        return self.fitted_reference().segments.astype(np.int64)

    @abstractmethod
    def align(self, image: SegmentedImage) -> np.ndarray:
        """Return the (H, W) int64 class map of ``image``."""

    @staticmethod
    def paint(segments: np.ndarray, assignment: dict[int, int]) -> np.ndarray:
        """Class map from a segment -> class assignment (segments missing from it stay 0)."""
        lut = np.zeros(int(segments.max()) + 1, dtype=np.int64)
        for seg, cls in assignment.items():
            lut[seg] = cls
        return lut[segments]
