"""Shot augmentation: rigid moves of a shot image (rotation about the centre, shift, mirror) and
of its label maps, so that the patch memory also holds what the same parts look like a few
degrees or a fraction of a patch away (captures vary by that much), or turned by a quarter or
half turn (loose parts -- screws, cables, connectors -- lie at any angle, and 4 shots show few).

The image is resampled bilinearly and its label maps by nearest neighbour through the same
sampling grid; outside the frame both are reflected (more of the same background rather than a
black wedge the test images never have). A rotation is one of the *capture*: the square the
backbone sees is the capture squeezed to a square, so turning that square as it is would also
swap the squeeze between the axes (on a 1600 x 800 capture a quarter turn would make every part
twice as wide and half as tall as any test image shows it). ``aspects`` (each capture's height
/ width) make the move a rotation in the capture's own frame, seen through the same squeeze.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from locoad.errors import ConfigError


@dataclass(frozen=True)
class RigidMove:
    """Rotation by ``angle`` degrees (counter-clockwise on screen) about the image centre, then a
    shift by (``dy``, ``dx``) image fractions, after a left-right mirror when ``flip``."""

    angle: float = 0.0
    dy: float = 0.0
    dx: float = 0.0
    flip: bool = False

    def theta(self, h: int, w: int) -> torch.Tensor:
        """(2, 3) ``affine_grid`` matrix: output pixel -> input pixel, in [-1, 1] coordinates of
        an (h, w) image (the aspect ratio keeps a rotation a rotation on non-square images)."""
        a = math.radians(self.angle)
        c, s = math.cos(a), math.sin(a)
        sx = -1.0 if self.flip else 1.0
        # The output samples the input at R^-1 (p - shift); y grows downwards, so a positive
        # angle turns the content counter-clockwise as seen on screen.
        return torch.tensor([[c * sx, -s * sx * h / w, -2 * (c * self.dx - s * self.dy * h / w) * sx],
                             [s * w / h, c, -2 * (s * self.dx * w / h + c * self.dy)]], dtype=torch.float32)


def plan_moves(spec: Mapping | None, grid_size: int) -> list[RigidMove]:
    """``model.shot_augment`` -> the moves, one copy of each shot per move.

    ``spec`` keys: ``rotations`` (degrees, one copy each), ``shifts`` ([dy, dx] pairs in patches
    of the backbone grid, one copy each: half a patch shows every part at another phase of the
    patch grid), ``flip`` (one left-right mirrored copy). None or an empty spec: no copies."""
    if not spec:
        return []
    unknown = set(spec) - {"rotations", "shifts", "flip"}
    if unknown:
        raise ConfigError(f"model.shot_augment: unknown keys {sorted(unknown)}; use rotations, shifts and flip")
    moves = []
    for angle in spec.get("rotations") or ():
        if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not -180 <= angle <= 180 or angle == 0:
            raise ConfigError(f"model.shot_augment.rotations: {angle!r} is not a non-zero angle in degrees within ±180")
        moves.append(RigidMove(angle=float(angle)))
    for shift in spec.get("shifts") or ():
        if not isinstance(shift, Sequence) or len(shift) != 2 or not all(isinstance(v, (int, float)) for v in shift):
            raise ConfigError(f"model.shot_augment.shifts: {shift!r} is not a [dy, dx] pair in patches, e.g. [0.5, 0.5]")
        moves.append(RigidMove(dy=float(shift[0]) / grid_size, dx=float(shift[1]) / grid_size))
    if spec.get("flip"):
        moves.append(RigidMove(flip=True))
    return moves


def _grid(move: RigidMove, n: int, h: int, w: int, device: torch.device,
          aspects: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """Sampling grid of ``n`` (h, w) images; ``aspects``: each capture's height / width (None:
    the images are the captures, h / w)."""
    aspects = [h / w] * n if aspects is None else [float(a) for a in aspects]
    if len(aspects) != n or not all(a > 0 and math.isfinite(a) for a in aspects):
        raise ValueError(f"aspects: need {n} positive capture height / width ratios, got {aspects}")
    theta = torch.stack([move.theta(a, 1.0) for a in aspects])
    return F.affine_grid(theta.to(device), [n, 1, h, w], align_corners=False)


def move_images(images: torch.Tensor, move: RigidMove,
                aspects: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) float images moved by ``move`` (bilinear, reflected outside the frame);
    ``aspects``: each image's capture height / width when the images are squeezed captures."""
    b, _, h, w = images.shape
    return F.grid_sample(images, _grid(move, b, h, w, images.device, aspects), mode="bilinear",
                         padding_mode="reflection", align_corners=False)


def move_labels(labels: torch.Tensor, move: RigidMove, aspect: float | None = None) -> torch.Tensor:
    """(H, W) integer label map moved by ``move`` (nearest, reflected outside the frame), as
    :func:`move_images` moves its image (``aspect``: the capture's height / width)."""
    h, w = labels.shape
    x = labels.to(torch.float64)[None, None]  # float64: every label id survives exactly
    grid = _grid(move, 1, h, w, labels.device, None if aspect is None else [aspect])
    out = F.grid_sample(x, grid.double(), mode="nearest",
                        padding_mode="reflection", align_corners=False)
    return out[0, 0].round().to(labels.dtype)
