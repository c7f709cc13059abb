"""sRGB -> CIELAB (D65, 2° observer), the colour space of the aligner costs, the class colour
score, the handcrafted backbone and border_colour's unblurred path. (Felzenszwalb and
border_colour with ``sigma > 0`` still call scikit-image's ``rgb2lab`` on their blurred float
images; switching them would move their segment boundaries by rounding, so it waits for a
re-measured quality run.)

The constants are scikit-image's (``skimage.color.rgb2lab``); results agree with it to 1e-4.
It is reimplemented in torch because it runs on every image at test time: scikit-image's float32
path takes ~14 ms for a 256 px image on one CPU thread (its NumPy power and cube root), the
largest non-kNN cost of a test image; a 256-entry table for the sRGB curve of uint8 input and
torch's vectorised cube root take ~4 ms.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from locoad.components.blur import gaussian_blur

# skimage.color.colorconv.xyz_from_rgb and the D65 / 2° white point.
XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
WHITE_D65 = (0.95047, 1.0, 1.08883)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer curve, inverted: values in [0, 1] -> linear light."""
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def linear_to_lab(lin: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) linear RGB -> CIELAB, L in [0, 100]."""
    m = lin.new_tensor(XYZ_FROM_RGB)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    xyz = xyz / xyz.new_tensor(WHITE_D65).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> CIELAB (D65), L in [0, 100]."""
    return linear_to_lab(srgb_to_linear(rgb))


@functools.cache
def _uint8_to_linear() -> torch.Tensor:
    v = torch.arange(256, dtype=torch.float64) / 255.0
    return srgb_to_linear(v).float()


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W, 3) float32 CIELAB. uint8 input takes the sRGB curve from a table;
    any other dtype must hold values in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb))
    lin = _uint8_to_linear()[x.long()] if x.dtype == torch.uint8 else srgb_to_linear(x.float())
    return linear_to_lab(lin.permute(2, 0, 1)[None])[0].permute(1, 2, 0).contiguous().numpy()


# The grey every image's median colour is mapped to by :func:`gray_world` (the colour kinds'
# ``white_balance=gray_world``, and the backbone's ``model.photometric=gray_world`` input):
# mid-bright, so parts brighter than the (mostly background) median keep some headroom before
# clipping.
GREY = 0.6


def _channels_last(rgb: torch.Tensor, channel_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(``rgb`` with channels last, its pixels as (..., N, 3))."""
    x = rgb.movedim(channel_dim, -1)
    return x, x.reshape(*x.shape[:-3], -1, x.shape[-1])


def _scaled(x: torch.Tensor, scale: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Channels-last ``x`` times a per-image (..., C) ``scale``, clipped to [0, 1], channels back."""
    out = x * (scale[..., None, None, :] if x.ndim > 3 else scale)
    return out.clamp(0.0, 1.0).movedim(-1, channel_dim)


def _median(flat: torch.Tensor) -> torch.Tensor:
    """(..., C) per-channel median of (..., N, C) pixels, numpy's (the mean of the two middle
    values for an even count)."""
    n = flat.shape[-2]
    return (flat.kthvalue((n - 1) // 2 + 1, dim=-2).values + flat.kthvalue(n // 2 + 1, dim=-2).values) / 2


def gray_world(rgb: torch.Tensor, grey: float = GREY, channel_dim: int = -3) -> torch.Tensor:
    """Per-image white balance: every channel scaled so that its median is ``grey`` (clipped to
    [0, 1]).

    ``rgb`` holds values in [0, 1] with channels along ``channel_dim`` ((B, 3, H, W) by default;
    ``channel_dim=-1`` for (H, W, 3)). The median (of a mostly-background image: the background)
    takes out exposure and colour casts, so the same part looks the same under another light.
    On a dark background it is a gain of 2-3 that saturates light parts (see :func:`cast_and_level`)."""
    x, flat = _channels_last(rgb, channel_dim)
    med = _median(flat)
    # grey as a tensor of the image's dtype: float32 arithmetic throughout, like numpy's
    return _scaled(x, med.new_tensor(grey) / med.clamp_min(1e-3), channel_dim)


def cast_and_level(rgb: torch.Tensor, white: float = 0.9, quantile: float = 0.99, channel_dim: int = -3) -> torch.Tensor:
    """Per-image white balance that keeps a dark background dark: the colour cast from the
    channel medians (each channel divided by its median), the exposure from the bright end
    (:func:`white_patch` with one gain: the brightest channel's ``quantile`` at ``white``).
    :func:`gray_world` takes both from the median, which on a dark background saturates a light
    bag and the grey bolts on it into one white."""
    x, flat = _channels_last(rgb, channel_dim)
    balanced = x / _median(flat).clamp_min(1e-3)[..., None, None, :]
    return white_patch(balanced, white, quantile, channel_dim=-1, per_channel=False).movedim(-1, channel_dim)


def flat_cast_and_level(rgb: torch.Tensor, channel_dim: int = -3) -> torch.Tensor:
    """:func:`cast_and_level` after a lighting gradient is divided out (:func:`flatten_light`):
    light falling off across the scene would otherwise move one colour's far side into a darker
    kind."""
    return cast_and_level(flatten_light(rgb, channel_dim=channel_dim), channel_dim=channel_dim)


def white_patch(rgb: torch.Tensor, white: float = 0.9, quantile: float = 0.99, channel_dim: int = -3,
                per_channel: bool = True) -> torch.Tensor:
    """Per-image normalisation on the bright end: every channel scaled so that its ``quantile``
    is ``white`` (clipped to [0, 1]); with ``per_channel=False`` one gain for all channels, from
    the ``quantile`` of each pixel's brightest channel (exposure only, colours kept). Unlike
    :func:`gray_world` it keeps a dark background dark (a median of 0.05 mapped to mid-grey
    amplifies the noise and saturates every part)."""
    x, flat = _channels_last(rgb, channel_dim)
    if not per_channel:
        flat = flat.amax(-1, keepdim=True)
    top = flat.kthvalue(int(round(quantile * (flat.shape[-2] - 1))) + 1, dim=-2).values
    return _scaled(x, top.new_tensor(white) / top.clamp_min(1e-3), channel_dim)


def divide_smooth_light(rgb: torch.Tensor, channel_dim: int = -3, sigma: float = 0.3) -> torch.Tensor:
    """Divide out the light as a smooth field: the log brightness (each pixel's brightest
    channel) blurred with a Gaussian of ``sigma`` times the image's short side, its mean kept.
    Removes what a plane cannot: a light spot, vignetting, a gradient that bends. The blur also
    carries some of the parts' own layout (a light part brightens its surroundings' estimate),
    the same in every capture of one scene, so shots and tests stay comparable. Worked on a map
    64 px on its short side: the field is smooth, and the cost stays small at any input size."""
    x = rgb.movedim(channel_dim, -3)
    h, w = x.shape[-2:]
    lead = x.shape[:-3]
    log_lum = torch.log(x.amax(-3, keepdim=True).clamp_min(1e-3)).reshape(-1, 1, h, w)
    small = F.interpolate(log_lum, scale_factor=64 / min(h, w), mode="area")
    s = sigma * 64
    field = gaussian_blur(small[:, 0], s, radius=int(3 * s), padding="replicate")[:, None]
    field = field - field.mean((-2, -1), keepdim=True)
    gain = torch.exp(-F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False))
    return (x * gain.reshape(*lead, 1, h, w)).clamp(0, 1).movedim(-3, channel_dim)


def flatten_light(rgb: torch.Tensor, channel_dim: int = -3, border: float = 0.12, iterations: int = 3) -> torch.Tensor:
    """Divide out a lighting gradient: a plane fitted to the log brightness of the image's
    border ring (``border``: its width, a fraction of each side), robustly (Cauchy weights, so a
    part reaching into the ring counts little), and removed with the brightness at the centre
    kept: a capture lit from one side looks as if lit evenly. Only the ring, because the parts in
    the middle would make their own layout look like a gradient; only a plane, because anything
    finer would follow the parts. A capture lit evenly is left (almost) as it is."""
    x = rgb.movedim(channel_dim, -1)
    h, w = x.shape[-3:-1]
    gy, gx = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device),
                            indexing="ij")
    s = max(1, min(h, w) // 64)  # a 64-px grid is plenty for a plane
    yy, xx = gy[::s, ::s].flatten(), gx[::s, ::s].flatten()
    lum = torch.log(x.amax(-1)[..., ::s, ::s].clamp_min(1e-3)).flatten(-2)  # (..., N)
    a = torch.stack([torch.ones_like(yy), yy, xx], -1).to(lum.dtype)  # (N, 3): 1, y, x
    ring = ((yy.abs() > 1 - 2 * border) | (xx.abs() > 1 - 2 * border)).to(lum.dtype)
    wgt = ring.expand_as(lum)
    eye = 1e-6 * torch.eye(3, dtype=a.dtype, device=a.device)
    for _ in range(iterations):
        aw = a * wgt[..., None]  # weighted least squares: (A^T W A) c = A^T W y
        coef = torch.linalg.solve(aw.transpose(-1, -2) @ a + eye, (aw * lum[..., None]).sum(-2))
        r = lum - (a * coef[..., None, :]).sum(-1)
        spread = 0.8 * (r.abs() * ring).sum(-1, keepdim=True) / ring.sum() + 1e-3
        wgt = ring / (1.0 + (r / (2.0 * spread)) ** 2)
    gain = torch.exp(-(coef[..., 1, None, None] * gy + coef[..., 2, None, None] * gx)).to(x.dtype)
    return (x * gain[..., None]).clamp(0, 1).movedim(-1, channel_dim)
