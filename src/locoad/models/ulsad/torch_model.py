"""ULSAD network (Patra & Ben Taieb, 2024) in plain torch: features, two branches, anomaly maps.

* :class:`PatchFeatures`: a frozen locoad backbone (``backbones/``, e.g. ``wide_resnet50``:
  layer2 + layer3 of a ResNet, the deeper one upsampled to the stride-8 grid, concatenated),
  averaged down to ``feature_dim`` channels, then standardised per channel with training-set
  statistics. Weights are loaded by the backbone's own strict loader.
* :class:`LocalBranch`: a small convolutional autoencoder on the features (deep feature
  reconstruction). It has two heads: the reconstruction of the features (structural map) and a
  prediction of the global branch's output (global map).
* :class:`GlobalBranch`: an autoencoder-like network from the *image* through a 1x1 bottleneck
  to a feature-grid output, trained with the attention loss, so it can only encode the layout.
* :class:`ULSADModel`: training losses, raw maps, and their quantile normalisation and fusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from locoad.backbones.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, float32_convolutions
from locoad.components.blur import gaussian_blur
from locoad.errors import ConfigError
from locoad.models.ulsad import losses


def _init_conv(module: nn.Module) -> None:
    # Xavier with the ReLU-family gain, as in the reference implementation.
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("leaky_relu"))


class PatchFeatures(nn.Module):
    """Frozen backbone features (B, feature_dim, h, w), standardised per channel.

    ``backbone`` is any locoad :class:`~locoad.backbones.base.Backbone` (built from
    ``conf/backbone/`` or :func:`~locoad.backbones.registry.create_backbone`); the ULSAD preset
    configures ``wide_resnet50`` at the data's image size with a stride-8 grid and no pooling.
    """

    def __init__(self, backbone: Backbone, feature_dim: int = 384) -> None:
        super().__init__()
        if not isinstance(backbone, Backbone):
            raise TypeError(
                f"ULSAD needs a locoad Backbone (e.g. backbone=wide_resnet50), got {type(backbone).__name__}"
            )
        if int(feature_dim) > backbone.embed_dim:
            raise ConfigError(
                f"model.feature_dim={feature_dim} exceeds the backbone's {backbone.embed_dim} channels; "
                f"set model.feature_dim<={backbone.embed_dim} (about a quarter of them, as 384 of 1536)"
            )
        self.backbone = backbone.eval().requires_grad_(False)
        self.feature_dim = int(feature_dim)
        # The global branch sees the pixels normalised as the backbone's own weights expect.
        mean, std = getattr(backbone, "mean", None), getattr(backbone, "std", None)
        if not (isinstance(mean, torch.Tensor) and mean.numel() == 3):
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("pixel_mean", mean.detach().float().reshape(1, 3, 1, 1).clone(), persistent=False)
        self.register_buffer("pixel_std", std.detach().float().reshape(1, 3, 1, 1).clone(), persistent=False)
        # Standardisation statistics, fitted on the training images before training starts.
        self.register_buffer("mean", torch.zeros(1, self.feature_dim, 1, 1))
        self.register_buffer("std", torch.ones(1, self.feature_dim, 1, 1))
        self.register_buffer("fitted", torch.tensor(False))

    def train(self, mode: bool = True) -> PatchFeatures:
        # Frozen: BatchNorm running statistics must not drift when the parent calls .train().
        return super().train(False)

    def normalise_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.pixel_mean) / self.pixel_std

    @torch.no_grad()
    def raw(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features averaged down to ``feature_dim`` channels, before standardisation."""
        x = self.backbone(images)  # normalises the pixels as the backbone expects
        b, c, h, w = x.shape
        # Average neighbouring channels down to feature_dim: cheap and parameter-free (as DFR).
        x = F.adaptive_avg_pool1d(x.flatten(2).transpose(1, 2), self.feature_dim)
        return x.transpose(1, 2).reshape(b, self.feature_dim, h, w)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.raw(images) - self.mean) / self.std

    @torch.no_grad()
    def fit(self, batches: Sequence[torch.Tensor] | object) -> None:
        """Per-channel mean/std of the raw features over an iterable of image batches."""
        n, s1, s2 = 0, 0.0, 0.0
        for images in batches:
            f = self.raw(images).double()
            n += f.shape[0] * f.shape[2] * f.shape[3]
            s1 = s1 + f.sum(dim=(0, 2, 3))
            s2 = s2 + f.pow(2).sum(dim=(0, 2, 3))
        if n == 0:
            raise ConfigError("no images to fit the feature statistics on")
        mean = s1 / n
        # clamp: channels that are constant on the training images (dead ReLUs) must not divide by 0
        std = (s2 / n - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-6)
        self.mean.copy_(mean.float().view_as(self.mean))
        self.std.copy_(std.float().view_as(self.std))
        self.fitted.fill_(True)


class LocalBranch(nn.Module):
    """Deep feature reconstruction: features -> (reconstruction, prediction of the global output).

    Two stride-2 convolutions and a bottleneck of ``hidden_dim`` channels, then transposed
    convolutions back to the feature grid with ``2 * feature_dim`` output channels.
    """

    def __init__(self, feature_dim: int = 384, hidden_dim: int = 1536) -> None:
        super().__init__()
        h = hidden_dim

        def block(conv: nn.Module, ch: int, relu: bool = True) -> nn.Sequential:
            return nn.Sequential(conv, nn.BatchNorm2d(ch), *([nn.ReLU()] if relu else []))

        self.encoder = nn.Sequential(
            block(nn.Conv2d(feature_dim, h // 2, 3, stride=2, padding=1), h // 2),
            block(nn.Conv2d(h // 2, h, 3, stride=2, padding=1), h),
            block(nn.Conv2d(h, h, 3, padding=1), h, relu=False),
        )
        # The last layer keeps BatchNorm + ReLU like the reference implementation.
        self.decoder = nn.Sequential(
            block(nn.ConvTranspose2d(h, h // 2, 4, stride=2, padding=1), h // 2),
            block(nn.ConvTranspose2d(h // 2, h // 4, 4, stride=2, padding=1), h // 4),
            block(nn.ConvTranspose2d(h // 4, 2 * feature_dim, 5, padding=2), 2 * feature_dim),
        )
        self.feature_dim = feature_dim
        _init_conv(self)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.decoder(self.encoder(features))
        if out.shape[-2:] != features.shape[-2:]:  # grids that are not a multiple of 4
            out = F.interpolate(out, size=features.shape[-2:], mode="bilinear", align_corners=False)
        return out[:, : self.feature_dim], out[:, self.feature_dim :]


class GlobalBranch(nn.Module):
    """Image -> 1x1 code -> feature grid: an autoencoder-like net that sees the whole image.

    Encoder: five stride-2 4x4 convolutions (S -> S/32) and one convolution over the remaining
    S/32 x S/32 map, giving a single code per image. Decoder: bilinear upsampling + 4x4
    convolution through the grids S/64 ... S/4, then resizing to the feature grid.
    """

    def __init__(self, image_size: int = 256, out_dim: int = 384, width: int = 64) -> None:
        super().__init__()
        if image_size < 32:
            raise ConfigError(f"ULSAD's global branch needs image_size >= 32, got {image_size}")

        def bn(ch: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(ch, eps=1e-4, affine=False)

        half, w = width // 2, width
        chans = [3, half, half, w, w, w]
        enc: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            enc += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), bn(cout), nn.ReLU()]
        bottom = image_size // 32  # 4x4/stride-2/pad-1 halves (floor) each time
        enc += [nn.Conv2d(w, w, bottom), bn(w), nn.ReLU()]
        self.encoder = nn.Sequential(*enc)
        # Each stage: upsample to size-1, then a 4x4 conv with padding 2 grows it to size.
        self.sizes = [max(image_size // d, 2) for d in (64, 32, 16, 8, 4)]
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w, w, 4, padding=2), bn(w), nn.ReLU()) for _ in self.sizes
        )
        self.head = nn.Sequential(
            nn.Conv2d(w, w, 3, padding=1), bn(w), nn.ReLU(), nn.Conv2d(w, out_dim, 3, padding=1)
        )

    def forward(self, images: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        x = self.encoder(images)
        for size, stage in zip(self.sizes, self.up):
            x = stage(F.interpolate(x, size=(size - 1, size - 1), mode="bilinear", align_corners=False))
        x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
        return self.head(x)


def map_quantiles(maps: torch.Tensor, q_low: float, q_high: float) -> torch.Tensor:
    """(q_low, q_high) quantiles of all values of ``maps`` (a strided subset above 2^24 values)."""
    flat = maps.flatten().float()
    limit = 2**24  # torch.quantile's maximum input size
    if flat.numel() > limit:
        flat = flat[:: -(-flat.numel() // limit)]
    return torch.quantile(flat, torch.tensor([q_low, q_high], dtype=flat.dtype, device=flat.device))


def normalise_map(amap: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Map the validation quantiles (qa, qb) of a branch to (0, 0.1), making branches comparable."""
    qa, qb = quantiles[0], quantiles[1]
    return 0.1 * (amap - qa) / (qb - qa).clamp_min(1e-12)


def fuse_maps(local: torch.Tensor, global_: torch.Tensor, local_weight: float = 0.5) -> torch.Tensor:
    """Convex combination of the two (normalised) branch maps."""
    return local_weight * local + (1.0 - local_weight) * global_


def image_score(amap: torch.Tensor) -> torch.Tensor:
    """Image anomaly score = the maximum of its (B, H, W) map."""
    return amap.flatten(1).amax(dim=1)


class ULSADModel(nn.Module):
    """Features + both branches; ``loss`` for training, ``maps`` for testing."""

    def __init__(
        self,
        backbone: Backbone,
        image_size: int = 256,
        feature_dim: int = 384,
        hidden_dim: int = 1536,
        global_width: int = 64,
        lambda_local: float = 0.5,
        lambda_attn: float = 0.5,
        lambda_global: float = 0.5,
        weight_local: float = 1.0,
        weight_attn: float = 1.0,
        weight_global: float = 1.0,
        blur_sigma: float = 4.0,
        local_map_weight: float = 0.5,
    ) -> None:
        super().__init__()
        self.features = PatchFeatures(backbone, feature_dim)
        self.local_branch = LocalBranch(feature_dim, hidden_dim)
        self.global_branch = GlobalBranch(image_size, feature_dim, global_width)
        self.lambdas = {"local": lambda_local, "attn": lambda_attn, "global": lambda_global}
        self.weights = {"local": weight_local, "attn": weight_attn, "global": weight_global}
        self.blur_sigma = blur_sigma
        self.local_map_weight = local_map_weight
        # Per-branch (qa, qb) map quantiles on validation images; zeros = not fitted yet.
        self.register_buffer("q_local", torch.zeros(2))
        self.register_buffer("q_global", torch.zeros(2))
        self.register_buffer("maps_fitted", torch.tensor(False))

    def _branches(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.features(images)
        recon, local_pred = self.local_branch(feats)
        global_out = self.global_branch(self.features.normalise_pixels(images), feats.shape[-2:])
        return feats, recon, local_pred, global_out

    def loss(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted ULSAD objective and its three terms."""
        feats, recon, local_pred, global_out = self._branches(images)
        lam, w = self.lambdas, self.weights
        terms = {
            "local": losses.local_loss(feats, recon, lam["local"]),
            "attn": losses.attention_loss(feats, global_out, lam["attn"]),
            "global": losses.global_local_loss(global_out, local_pred, lam["global"]),
        }
        terms["loss"] = sum(w[k] * terms[k] for k in ("local", "attn", "global"))
        return terms

    @torch.no_grad()
    @float32_convolutions()  # also on a GPU (the blur included): TF32 moved a checkpoint's scores by up to 2e-3 from the CPU's
    def raw_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised (local, global) maps at image resolution, blurred: (B, S, S) each,
        float32 whatever precision the networks ran at, every convolution at full float32."""
        branches = self._branches(images)
        # trainer.precision=bf16-mixed: the networks' outputs are bfloat16, and maps computed
        # from them in bfloat16 (autocast's blur convolution, a bfloat16 map minus a float32
        # quantile) tie images whose scores differ; the maps are computed at float32.
        with torch.autocast(images.device.type, enabled=False):
            feats, recon, local_pred, global_out = (t.float() for t in branches)
            local = losses.feature_distance(feats, recon, self.lambdas["local"])
            global_ = losses.feature_distance(global_out, local_pred, self.lambdas["global"])
            size = images.shape[-2:]
            out = []
            for m in (local, global_):
                m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
                # Blurring before the affine normalisation equals blurring after it (linear kernel).
                out.append(gaussian_blur(m, self.blur_sigma))
        return out[0], out[1]

    @torch.no_grad()
    def fit_map_quantiles(self, maps_local: torch.Tensor, maps_global: torch.Tensor, q_low: float, q_high: float) -> None:
        self.q_local.copy_(map_quantiles(maps_local, q_low, q_high))
        self.q_global.copy_(map_quantiles(maps_global, q_low, q_high))
        self.maps_fitted.fill_(True)

    @torch.no_grad()
    def maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised local and global maps and their fusion (B, S, S)."""
        local, global_ = self.raw_maps(images)
        if bool(self.maps_fitted):
            local, global_ = normalise_map(local, self.q_local), normalise_map(global_, self.q_global)
        return {"local": local, "global": global_, "fused": fuse_maps(local, global_, self.local_map_weight)}
