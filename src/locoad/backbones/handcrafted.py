"""A weight-free backbone: colour and texture statistics on the same patch grid as DINOv2.

Per pixel: CIELAB, Sobel gradient magnitude and a fixed Gabor bank (4 orientations x 2
wavelengths, magnitude of the complex response). Per patch: the mean and standard deviation
of each, plus the same statistics over the 3x3 neighbourhood of patches for context.
Nothing is learned or downloaded, so the offline default detects anomalies for real. The
channels have very different ranges: the model standardises them with the shots' statistics
(``preferred_feature_norm``) before any cosine distance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from locoad.backbones.base import Backbone
from locoad.colour import srgb_to_lab


def gabor_bank(wavelengths: tuple[float, ...] = (4.0, 8.0), orientations: int = 4) -> torch.Tensor:
    """(2 * len(wavelengths) * orientations, 1, k, k) even/odd Gabor kernels, zero-mean."""
    kernels = []
    for lam in wavelengths:
        sigma = 0.56 * lam
        half = int(math.ceil(2.5 * sigma))
        y, x = torch.meshgrid(torch.arange(-half, half + 1.0), torch.arange(-half, half + 1.0), indexing="ij")
        for i in range(orientations):
            t = math.pi * i / orientations
            xr = x * math.cos(t) + y * math.sin(t)
            yr = -x * math.sin(t) + y * math.cos(t)
            env = torch.exp(-(xr**2 + yr**2) / (2 * sigma**2))
            for phase in (0.0, math.pi / 2):
                k = env * torch.cos(2 * math.pi * xr / lam + phase)
                k = k - k.mean()
                kernels.append(k / k.abs().sum())
    size = max(k.shape[-1] for k in kernels)
    padded = [F.pad(k, [(size - k.shape[-1]) // 2] * 4) for k in kernels]
    return torch.stack(padded)[:, None]


class HandcraftedBackbone(Backbone):
    normalize = False  # works on raw RGB in [0, 1]
    preferred_feature_norm = "standardize"

    def __init__(self, image_size: int = 518, patch_size: int = 14, context: bool = True, colour_constancy: bool = False):
        super().__init__()
        self.image_size = image_size
        self.patch_size = patch_size
        self.context = context
        self.colour_constancy = colour_constancy
        self.register_buffer("gabor", gabor_bank(), persistent=False)
        sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 8
        self.register_buffer("sobel", torch.stack([sobel, sobel.T])[:, None], persistent=False)
        n_pix = 3 + 1 + self.gabor.shape[0] // 2
        self.embed_dim = 2 * n_pix * (2 if context else 1)
        self.eval()

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        if self.colour_constancy:
            # Grey-world on the median: the median pixel is mostly background in inspection
            # images, so dividing by it cancels global brightness and white-balance changes.
            med = x.flatten(2).median(dim=2).values.clamp_min(1e-3)[..., None, None]
            x = x * (0.5 / med)
        lab = srgb_to_lab(x.clamp_min(0))  # values above 1 after colour constancy stay ordered
        lum = lab[:, :1] / 100.0
        grad = F.conv2d(F.pad(lum, [1] * 4, mode="replicate"), self.sobel).norm(dim=1, keepdim=True)
        pad = self.gabor.shape[-1] // 2
        resp = F.conv2d(F.pad(lum, [pad] * 4, mode="replicate"), self.gabor)
        energy = (resp[:, 0::2] ** 2 + resp[:, 1::2] ** 2).sqrt()  # |even + i odd|
        pixels = torch.cat([lab / 50.0, grad, energy], dim=1)
        p = self.patch_size
        mean = F.avg_pool2d(pixels, p)
        std = (F.avg_pool2d(pixels**2, p) - mean**2).clamp_min(0).sqrt()
        feats = torch.cat([mean, std], dim=1)
        if self.context:
            feats = torch.cat([feats, F.avg_pool2d(feats, 3, stride=1, padding=1, count_include_pad=False)], dim=1)
        return feats
