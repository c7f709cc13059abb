"""Foreground patch score: only patches on segmented parts (background excluded), as in
AnomalyDINO's masking; the ``anomalydino`` preset is this score with top 1 %."""

from __future__ import annotations

import torch

from locoad.features.base import PatchScore
from locoad.types import ParsedImage


class ForegroundPatchScore(PatchScore):
    name = "foreground_patch"
    needs_classes = False
    reads_foreground = True

    def groups(self, parsed: ParsedImage) -> dict[int, torch.Tensor]:
        return {1: parsed.foreground_grid}

    def labels(self, parsed: ParsedImage) -> torch.Tensor:
        fg = parsed.foreground_grid.flatten().to(parsed.class_grid.device)
        return torch.where(fg, 1, -1).long()
