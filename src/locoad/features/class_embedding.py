"""Class embedding: the mean backbone feature of each class, compared by cosine distance."""

from __future__ import annotations

import numpy as np
import torch

from locoad.features.base import VectorScore
from locoad.types import ParsedImage


class ClassEmbeddingScore(VectorScore):
    name = "class_embedding"

    def __init__(self, scale: float = 0.5, reduce: str = "mean"):
        super().__init__(scale=scale, reduce=reduce)

    def describe(self, parsed: ParsedImage) -> tuple[np.ndarray, np.ndarray]:
        feats = parsed.features.flatten(1).T.float()  # (h*w, D), on the features' device
        grid = parsed.class_grid.flatten().to(feats.device)
        c, d = parsed.num_classes, feats.shape[1]
        # float32 sums of at most h*w values: ample precision for a mean. Summed where the
        # features are; only the (C, D) sums travel to the host. Class ids are < num_classes.
        sums = torch.zeros(c, d, device=feats.device).index_add_(0, grid, feats).double().cpu().numpy()
        counts = torch.zeros(c, dtype=torch.long, device=feats.device).scatter_add_(0, grid, torch.ones_like(grid)).cpu().numpy()
        present = counts > 0
        means = np.where(present[:, None], sums / np.maximum(counts, 1)[:, None], 0.0)
        return means, present

    def class_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        na = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
        nb = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
        return 1.0 - (na * nb).sum(-1)
