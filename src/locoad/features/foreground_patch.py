"""Foreground patch score: only patches on segmented parts (background excluded), as in
AnomalyDINO's masking; the ``anomalydino`` preset is this score with top 1 %.

``expected``: also score the patches that are foreground in at least that fraction of the shots
(eroded by ``expected_erode`` patches), wherever the test image has background there. Material
that is missing (a bite out of an outline, a cut cable, a part gone from where every shot has one)
is background in the test image, and a score that reads only the test image's foreground never
sees it.

``memory="all"`` (``features=robust`` sets it): the memory is every shot patch, not only the
shots' foreground (the queries stay the test image's foreground): a test patch at a part's edge
that the shots' foreground left out then still finds its match.

``lookalikes`` (needs ``memory="all"``; ``features=robust`` sets it for Lite0's score): also
score the test patches that look like a part, those whose nearest shot patch lies on a shot's
foreground, wherever the test image's segmentation put them. A part put down outside its place (a
nut beside the bag) often merges with the background region around it, and a score that reads only
the segmented foreground never sees it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from locoad.errors import ConfigError
from locoad.features.base import PatchScore
from locoad.types import ParsedImage


class ForegroundPatchScore(PatchScore):
    name = "foreground_patch"
    needs_classes = False
    reads_foreground = True

    def __init__(self, *args, expected: float | None = None, expected_erode: int = 1, memory: str = "foreground",
                 lookalikes: bool = False, **kwargs):
        if memory not in ("foreground", "all"):
            raise ConfigError(f"foreground_patch memory must be 'foreground' or 'all' (every shot patch), got {memory!r}")
        if lookalikes and memory != "all":
            raise ConfigError("foreground_patch lookalikes needs memory=all (a patch looks like a part when its nearest "
                              "shot patch, of all of them, is a foreground one); set memory=all or lookalikes=false")
        if expected is not None and not 0.0 < expected <= 1.0:
            raise ConfigError(f"foreground_patch expected must be in (0, 1] (the fraction of shots) or null, got {expected}")
        if expected_erode < 0:
            raise ConfigError(f"foreground_patch expected_erode must be >= 0 patches, got {expected_erode}")
        super().__init__(*args, **kwargs)
        self.expected = expected
        self.expected_erode = expected_erode
        self.memory = memory
        self.lookalikes = lookalikes

    def groups(self, parsed: ParsedImage) -> dict[int, torch.Tensor]:
        return {1: parsed.foreground_grid}

    def labels(self, parsed: ParsedImage) -> torch.Tensor:
        """The memory's rows: the shots' foreground patches, or (``memory="all"``) every patch, so
        a test patch at a part's edge that the shots' foreground left out still finds its match."""
        if self.memory == "all":
            return torch.ones(parsed.class_grid.numel(), dtype=torch.long, device=parsed.class_grid.device)
        return super().labels(parsed)  # 1 on the foreground (groups), -1 elsewhere

    def query_labels(self, parsed: ParsedImage, shot_foreground: torch.Tensor) -> torch.Tensor:
        if self.expected is None or not len(shot_foreground):
            return super().labels(parsed)
        fg = parsed.foreground_grid.to(parsed.class_grid.device)
        return torch.where((fg | self.expected_region(shot_foreground).to(fg.device)).flatten(), 1, -1).long()

    def expected_region(self, shot_foreground: torch.Tensor) -> torch.Tensor:
        """(h, w) bool: foreground in at least ``expected`` of the shots, eroded."""
        region = shot_foreground.float().mean(0) >= self.expected - 1e-6
        if self.expected_erode:
            r = self.expected_erode
            # erosion = not (dilation of the complement); outside the grid counts as foreground
            region = ~F.max_pool2d((~region).float()[None, None], 2 * r + 1, stride=1, padding=r)[0, 0].bool()
        return region
