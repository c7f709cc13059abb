"""A separable, normalised Gaussian blur of (B, H, W) maps (ULSAD's anomaly maps, the light field
of ``locoad.colour.divide_smooth_light``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_blur(maps: torch.Tensor, sigma: float, radius: int | None = None, padding: str = "reflect") -> torch.Tensor:
    """Blur (B, H, W) ``maps`` with a normalised Gaussian of ``sigma`` pixels, cut at ``radius``
    (default ``round(4 sigma)``). Borders are padded by ``padding`` (``reflect`` falls back to
    ``replicate`` where the radius reaches across the map)."""
    if sigma <= 0:
        return maps
    if radius is None:
        radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    out = maps[:, None]
    if padding == "reflect" and radius >= min(out.shape[-2:]):
        padding = "replicate"
    out = F.pad(out, (radius, radius, radius, radius), mode=padding)
    out = F.conv2d(out, k.view(1, 1, 1, -1))  # separable: rows then columns
    out = F.conv2d(out, k.view(1, 1, -1, 1))
    return out[:, 0]
