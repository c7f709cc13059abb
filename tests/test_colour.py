"""locoad.colour agrees with scikit-image's rgb2lab (the reference it replaces for speed)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2lab

from locoad.colour import rgb_to_lab, srgb_to_lab


def _rgb(shape=(33, 47, 3), seed=0) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    rgb[0, 0], rgb[0, 1], rgb[0, 2] = 0, 255, (10, 10, 10)  # black, white, below the sRGB knee
    return rgb


def test_uint8_and_float_inputs_match_skimage():
    rgb = _rgb()
    ref = rgb2lab(rgb)  # float64
    lab = rgb_to_lab(rgb)
    assert lab.dtype == np.float32 and lab.shape == rgb.shape and lab.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(lab, ref, atol=2e-4)
    np.testing.assert_allclose(rgb_to_lab(rgb.astype(np.float64) / 255.0), ref, atol=2e-4)
    np.testing.assert_allclose(lab[0, 0], [0, 0, 0], atol=1e-4)
    np.testing.assert_allclose(lab[0, 1], [100, 0, 0], atol=1e-2)  # the sRGB matrix rows sum to ~white


def test_batched_tensor_path_matches_skimage():
    rgb = np.stack([_rgb(seed=s) for s in range(3)])
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    lab = srgb_to_lab(x).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(lab, rgb2lab(rgb), atol=2e-4)
