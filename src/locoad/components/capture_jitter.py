"""Capture jitter: one image as another capture of the same scene might show it -- turned a few
degrees, a little out of focus, lit by a gradient, with another colour cast and sensor noise.

Used to learn how far a score's descriptor moves under capture changes alone, which a few shots
taken under one setup do not show. The ranges are generic (a few degrees, blur up to a quarter of
a percent of the short side, ±15 % light across the frame, ±6 % per channel; a tone-curve change,
off by default), not fitted to any data set. A range of 0 leaves that change out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from locoad.components.augment import RigidMove, move_images
from locoad.components.blur import gaussian_blur


def light_ramp(h: int, w: int, angle: torch.Tensor) -> torch.Tensor:
    """A linear light gradient across an (h, w) frame: -1 at one edge, +1 at the opposite one,
    rising in the direction ``angle`` (radians, any shape S) -> (*S, h, w)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.cos(angle)[..., None, None] * xx + torch.sin(angle)[..., None, None] * yy


@dataclass(frozen=True)
class CaptureJitter:
    """Ranges of the random capture changes (each drawn uniformly in ±range, blur in [0, range])."""

    rotation: float = 4.0  # degrees
    blur: float = 0.0025  # Gaussian sigma as a fraction of the short side
    gradient: float = 0.15  # light's relative change from the frame's centre to its edge
    gain: float = 0.06  # per-channel gain (a colour cast)
    noise: float = 0.01  # Gaussian sensor noise, image in [0, 1]
    gamma: float = 0.0  # tone curve: pixels raised to an exponent in 1 ± gamma (per-channel gains cannot undo it)

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator, aspect: float | None = None) -> np.ndarray:
        """(H, W, 3) uint8 -> a jittered (H, W, 3) uint8 copy. ``aspect``: the capture's height /
        width where ``rgb`` is a capture squeezed to a square (the turn is then the capture's, not a
        shear of it); None: ``rgb`` is the capture."""
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        if self.rotation:
            turn = RigidMove(angle=float(rng.uniform(-self.rotation, self.rotation)))
            x = move_images(x, turn, None if aspect is None else [aspect])
        if self.blur:
            x = gaussian_blur(x[0], float(rng.uniform(0.0, self.blur)) * min(h, w))[None]
        ramp = light_ramp(h, w, torch.tensor(rng.uniform(0.0, 2 * np.pi), dtype=torch.float32))
        light = 1.0 + float(rng.uniform(-self.gradient, self.gradient)) * ramp
        gain = torch.from_numpy(rng.uniform(1 - self.gain, 1 + self.gain, 3)).float().view(1, 3, 1, 1)
        x = x * light * gain
        if self.gamma:
            x = x.clamp(0, 1) ** float(rng.uniform(1 - self.gamma, 1 + self.gamma))
        x = x + self.noise * torch.from_numpy(rng.standard_normal(x.shape)).float()
        return (x[0].permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
