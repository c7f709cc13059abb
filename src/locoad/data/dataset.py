"""Torch dataset over LOCO-layout samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from locoad.data.image_io import read_mask, read_rgb
from locoad.data.layout import Sample


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    if rgb.shape[:2] == (size, size):
        return rgb
    return np.array(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))


def resize_labels(a: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize for masks and label maps (keeps ids exact)."""
    if a.shape[:2] == (size, size):
        return a
    mode = "L" if a.max(initial=0) < 256 else "I"
    im = Image.fromarray(a.astype(np.uint8 if mode == "L" else np.int32), mode=mode)
    return np.asarray(im.resize((size, size), Image.NEAREST))


class LocoDataset(Dataset):
    """Items are dicts:

    image (3, S, S) float in [0, 1]; label int (1 = anomalous); anomaly_type str; path str;
    mask (S, S) float, the union of the ground-truth region masks (zeros for good images; any
    value > 0 marks a defect: LOCO's masks use a value per defect kind, below 255 too);
    num_regions int; parts (S, S) int64 true part ids, -1 where the data set has none;
    aspect float, the capture's height / width (the image is squeezed to S x S).
    """

    def __init__(self, samples: Sequence[Sample], image_size: int = 518, bit_depth: int | None = None):
        self.samples = list(samples)
        self.image_size = image_size
        self.bit_depth = bit_depth  # of 16-bit files' values (data.bit_depth; None: the full range)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        size = self.image_size
        capture = read_rgb(s.path, self.bit_depth)
        # writable: an image already at `size` is the reader's read-only array (torch warns on it)
        rgb = np.require(resize_rgb(capture, size), requirements=["C_CONTIGUOUS", "WRITEABLE"])
        mask = np.zeros((size, size), dtype=bool)
        for m in s.masks:
            mask |= resize_labels(read_mask(m).astype(np.uint8), size) > 0
        parts = (
            resize_labels(np.asarray(Image.open(s.part_labels)), size).astype(np.int64)
            if s.part_labels is not None
            else np.full((size, size), -1, dtype=np.int64)
        )
        return {
            "image": torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0),
            "label": s.label,
            "anomaly_type": s.anomaly_type,
            "path": str(s.path),
            "mask": torch.from_numpy(mask).float(),
            "num_regions": len(s.masks),
            "parts": torch.from_numpy(parts),
            "aspect": capture.shape[0] / capture.shape[1],
        }
