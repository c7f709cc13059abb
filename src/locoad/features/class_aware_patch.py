"""Class-aware patch score: a bank per aligned class; the worst class gives the score."""

from __future__ import annotations

import torch

from locoad.features.base import PatchScore
from locoad.types import BACKGROUND, ParsedImage


class ClassAwarePatchScore(PatchScore):
    name = "class_aware_patch"

    def groups(self, parsed: ParsedImage) -> dict[int, torch.Tensor]:
        ids = torch.unique(parsed.class_grid)
        return {int(c): parsed.class_grid == c for c in ids if int(c) != BACKGROUND}

    def labels(self, parsed: ParsedImage) -> torch.Tensor:
        # The groups above as one device op (no host sync over the classes present).
        grid = parsed.class_grid.flatten().long()
        return torch.where(grid != BACKGROUND, grid, -1)
