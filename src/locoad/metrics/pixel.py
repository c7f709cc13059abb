"""Pixel-level AUROC over all test pixels (masks merged per image)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.metrics import roc_auc_score


def pixel_auroc(masks: np.ndarray | torch.Tensor, maps: np.ndarray | torch.Tensor, max_pixels: int = 2_000_000) -> float:
    """AUROC of anomaly maps against binary ground-truth masks, both (N, H, W).

    Maps are resized to the masks' size by the caller. Above ``max_pixels`` a fixed-stride
    subsample keeps memory bounded (deterministic, so runs stay comparable).
    """
    y = np.asarray(masks).reshape(-1) > 0
    s = np.asarray(maps, dtype=np.float32).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"masks {np.asarray(masks).shape} and maps {np.asarray(maps).shape} differ")
    if y.size > max_pixels:
        stride = int(np.ceil(y.size / max_pixels))
        y, s = y[::stride], s[::stride]
    if y.all() or not y.any():
        warnings.warn("pixel AUROC undefined: masks hold one class only; returning NaN", stacklevel=2)
        return float("nan")
    return float(roc_auc_score(y, s))
