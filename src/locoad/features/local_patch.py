"""Local patch score: each patch against the shots' patches near the same place.

The class-agnostic score searches every shot patch, so a patch that is normal *somewhere* is
normal: a part missing from its place (the background there matches background elsewhere), a
part moved to a wrong place or two parts swapped go unseen. Here a patch at grid cell (y, x) is
compared only with the shots' patches within ``radius`` cells of (y, x), which the capture's
shift and rotation between images stay within; the mean of the ``top_percent`` most distant
patches is the score (after the image's median distance, as the other patch scores).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from locoad.errors import ConfigError, is_whole_number
from locoad.features.base import Feature, FeatureScore, aggregate_patch_distances, check_baseline
from locoad.types import ParsedImage


def local_nn_distance(query: torch.Tensor, bank: torch.Tensor, radius: int) -> torch.Tensor:
    """(h, w) cosine distance of each patch of ``query`` (D, h, w) to its nearest patch of
    ``bank`` (K, D, h, w) within ``radius`` cells (a square window, clipped at the border)."""
    q = F.normalize(query.float(), dim=0)
    b = F.pad(F.normalize(bank.float(), dim=1), (radius,) * 4)
    h, w = q.shape[-2:]
    # Cells outside the grid are no neighbours (a padded zero vector would be one at similarity 0,
    # capping a border patch's distance at 1 where the others reach 2).
    inside = F.pad(torch.ones((h, w), dtype=torch.bool, device=q.device), (radius,) * 4)
    best = torch.full((h, w), float("-inf"), device=q.device)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            sim = torch.einsum("dhw,kdhw->khw", q, b[:, :, dy:dy + h, dx:dx + w]).amax(0)
            best = torch.maximum(best, sim.masked_fill(~inside[dy:dy + h, dx:dx + w], float("-inf")))
    return (1.0 - best).clamp_min(0.0)


class LocalPatchScore(Feature):
    name = "local_patch"
    needs_classes = False

    def __init__(self, radius: int = 3, top_percent: float = 1.0, baseline: str = "median"):
        if not is_whole_number(radius, 0):
            raise ConfigError(f"local_patch radius must be a whole number >= 0 (grid cells), got {radius!r}")
        if not 0.0 < top_percent <= 100.0:
            raise ConfigError(f"local_patch top_percent must be in (0, 100], got {top_percent}")
        check_baseline(self.name, baseline)
        self.radius, self.top_percent, self.baseline = radius, top_percent, baseline

    def fit(self, shots: list[ParsedImage]) -> torch.Tensor:
        return torch.stack([p.features for p in shots])

    def score(self, parsed: ParsedImage, state: torch.Tensor) -> FeatureScore:
        dist = local_nn_distance(parsed.features, state.to(parsed.features.device), self.radius)
        flat = dist.flatten()[None]
        one_group = torch.zeros_like(flat, dtype=torch.long)  # every patch, as the class-agnostic score
        value, amap = aggregate_patch_distances(flat, one_group, 1, self.top_percent, self.baseline)
        return FeatureScore(float(value[0]), amap.view_as(dist))
