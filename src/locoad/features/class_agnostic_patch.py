"""Class-agnostic patch score: every patch against the bank of every shot patch."""

from __future__ import annotations

import torch

from locoad.features.base import PatchScore
from locoad.types import ParsedImage


class ClassAgnosticPatchScore(PatchScore):
    name = "class_agnostic_patch"
    needs_classes = False

    def groups(self, parsed: ParsedImage) -> dict[int, torch.Tensor]:
        return {0: torch.ones_like(parsed.class_grid, dtype=torch.bool)}

    def labels(self, parsed: ParsedImage) -> torch.Tensor:
        return torch.zeros(parsed.class_grid.numel(), dtype=torch.long, device=parsed.class_grid.device)
