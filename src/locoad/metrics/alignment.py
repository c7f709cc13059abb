"""Alignment diagnostics against true part labels: how well segments were matched to the
reference's classes, and how well the segmenter found the foreground."""

from __future__ import annotations

import numpy as np

from locoad.types import BACKGROUND


def reference_part_lut(ref_classes: np.ndarray, ref_parts: np.ndarray, unmatched_id: int) -> np.ndarray:
    """reference class id -> the true part id most of its pixels have (0 for background and
    unmatched, which never count as correct)."""
    lut = np.zeros(unmatched_id + 1, dtype=np.int64)
    for c in range(1, unmatched_id):
        vals = ref_parts[ref_classes == c]
        if vals.size:
            lut[c] = np.bincount(vals).argmax()
    return lut


def alignment_accuracy(class_map: np.ndarray, parts: np.ndarray, lut: np.ndarray) -> float:
    """Fraction of true-foreground pixels whose aligned class maps to their true part."""
    fg = parts > 0
    if not fg.any():
        return float("nan")
    pred = lut[np.clip(class_map, 0, len(lut) - 1)]
    return float((pred[fg] == parts[fg]).mean())


def foreground_iou(class_map: np.ndarray, parts: np.ndarray) -> float:
    """IoU of predicted foreground (any class) with the true foreground: segmentation quality."""
    pred, true = class_map != BACKGROUND, parts > 0
    union = (pred | true).sum()
    return float((pred & true).sum() / union) if union else float("nan")
