"""DINOv2 ViT patch features via timm (hub weights or the official facebookresearch checkpoints)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from locoad.backbones.base import Backbone, check_state_dict, create_timm_model, read_checkpoint
from locoad.errors import CheckpointMismatchError, ConfigError, checkpoint_missing

# variant -> (timm model name, official checkpoint file name)
VARIANTS: dict[str, tuple[str, str]] = {
    "vits14": ("vit_small_patch14_dinov2.lvd142m", "dinov2_vits14_pretrain.pth"),
    "vitb14": ("vit_base_patch14_dinov2.lvd142m", "dinov2_vitb14_pretrain.pth"),
    "vitl14": ("vit_large_patch14_dinov2.lvd142m", "dinov2_vitl14_pretrain.pth"),
    "vitg14": ("vit_giant_patch14_dinov2.lvd142m", "dinov2_vitg14_pretrain.pth"),
    # "Vision Transformers Need Registers" checkpoints; timm's filter converts their layout too.
    "vits14_reg4": ("vit_small_patch14_reg4_dinov2.lvd142m", "dinov2_vits14_reg4_pretrain.pth"),
    "vitb14_reg4": ("vit_base_patch14_reg4_dinov2.lvd142m", "dinov2_vitb14_reg4_pretrain.pth"),
    "vitl14_reg4": ("vit_large_patch14_reg4_dinov2.lvd142m", "dinov2_vitl14_reg4_pretrain.pth"),
    "vitg14_reg4": ("vit_giant_patch14_reg4_dinov2.lvd142m", "dinov2_vitg14_reg4_pretrain.pth"),
}

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def official_checkpoint_url(variant: str) -> str:
    """Download URL of the official facebookresearch checkpoint for ``variant``."""
    file_name = VARIANTS[variant][1]
    arch = variant.split("_")[0]  # the reg4 files live in the same folder as the plain ones
    return f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{arch}/{file_name}"


class DinoV2Backbone(Backbone):
    """Frozen DINOv2 ViT: (B, 3, H, W) images -> (B, D, image_size // 14, same) patch tokens.

    Weights: ``checkpoint`` (a local official ``dinov2_*_pretrain.pth``) if given, else timm's hub
    weights if ``pretrained``, else random init (tests only). ``model_kwargs`` go to
    ``timm.create_model`` (e.g. ``depth=2, embed_dim=32, num_heads=2`` for a tiny test ViT).

    CLS and register tokens are dropped. By default the last block's tokens after the final
    LayerNorm are returned; ``layers`` selects intermediate blocks (each normed with the final
    LayerNorm, as DINOv2's ``get_intermediate_layers(norm=True)``), then averaged or concatenated.
    """

    def __init__(
        self,
        variant: str = "vits14",
        pretrained: bool = True,
        checkpoint: str | None = None,
        image_size: int = 518,
        layers: Sequence[int] | None = None,
        layer_agg: str = "mean",
        model_kwargs: dict[str, Any] | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(
                f"unknown DINOv2 variant {variant!r}; choose one of {sorted(VARIANTS)}"
            )
        if layer_agg not in ("mean", "concat"):
            raise ConfigError(f"layer_agg must be 'mean' or 'concat', got {layer_agg!r}")
        dtype = _DTYPE_ALIASES.get(dtype, dtype)
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if image_size <= 0 or image_size % self.patch_size:
            raise ConfigError(
                f"image_size must be a positive multiple of {self.patch_size}, got {image_size}"
            )

        self.variant = variant
        self.image_size = int(image_size)
        self.layer_agg = layer_agg
        self.compute_dtype = _DTYPES[dtype]
        timm_name, file_name = VARIANTS[variant]
        url = official_checkpoint_url(variant)
        self.model_kwargs = dict(model_kwargs or {})  # kept: the stage cache keys features by it
        kwargs = {"img_size": self.image_size, "num_classes": 0, **self.model_kwargs}

        path = Path(checkpoint).expanduser() if checkpoint is not None else None
        if path is not None and not path.is_file():  # fail before building a possibly huge model
            raise checkpoint_missing("DINOv2", str(path), file_name, url, "backbone.checkpoint",
                                     [f for _, f in VARIANTS.values()])
        # A local checkpoint replaces the hub download, so the model is built without weights first.
        self.model = create_timm_model(
            timm_name,
            pretrained=pretrained and checkpoint is None,
            offline_hint=(
                f"download the official checkpoint {file_name} from {url} and set "
                f"backbone.checkpoint=<path to {file_name}> (it is then loaded, never downloaded), "
                "or backbone.pretrained=false for random weights (tests only)."
            ),
            **kwargs,
        )
        if path is not None:
            self._load_official_checkpoint(path)

        if self.model.patch_embed.patch_size[0] != self.patch_size:
            raise ConfigError(
                f"expected patch size {self.patch_size}, model has {self.model.patch_embed.patch_size}"
            )
        depth = len(self.model.blocks)
        self.layers: list[int] | None = None
        if layers is not None:
            wanted = [int(i) for i in layers]
            if not wanted or any(not -depth <= i < depth for i in wanted):
                raise ConfigError(
                    f"layers must be non-empty block indices in [-{depth}, {depth}), got {wanted}"
                )
            self.layers = sorted({i % depth for i in wanted})  # timm returns them in block order
        n_out = len(self.layers) if self.layers is not None and layer_agg == "concat" else 1
        self.embed_dim = int(self.model.embed_dim) * n_out

        self.model.eval().requires_grad_(False)

    def _load_official_checkpoint(self, path: Path) -> None:
        """Load an official DINOv2 ``*_pretrain.pth`` (or a timm-layout file) strictly."""
        from timm.models import load_state_dict
        from timm.models.vision_transformer import checkpoint_filter_fn

        state_dict = read_checkpoint(path, lambda: load_state_dict(str(path)))  # unwraps 'model'/'state_dict' and DDP prefixes
        # Before timm's filter, which would resample another patch size's kernel to this one and
        # load a ViT/16 (DINO v1, DINOv3) as if it were this model.
        raw, want = state_dict.get("patch_embed.proj.weight"), self.model.patch_embed.proj.weight
        if raw is not None and tuple(raw.shape[-2:]) != tuple(want.shape[-2:]):
            raise CheckpointMismatchError(
                f"Checkpoint {path} has {raw.shape[-2]} x {raw.shape[-1]} px patches, DINOv2 {self.variant} "
                f"{want.shape[-2]} x {want.shape[-1]}: another ViT; is it {VARIANTS[self.variant][1]}?")
        # timm's own converter: detects the official layout via `mask_token` (dropped), renames the
        # giant's SwiGLU w12/w3 -> fc1/fc2, splits register tokens, and bicubically resamples the
        # 37x37 (518 px) pos_embed to this model's grid when image_size != 518.
        state_dict = checkpoint_filter_fn(state_dict, self.model)
        check_state_dict(self.model, state_dict, source=str(path))
        self.model.load_state_dict(state_dict, strict=True)

    def train(self, mode: bool = True) -> DinoV2Backbone:
        # Frozen extractor: stay in eval mode even when a parent module calls .train().
        return super().train(False)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        # Reduced precision only on CUDA; CPU runs stay float32 (CPU half matmuls are slow/lossy).
        use_autocast = x.is_cuda and self.compute_dtype != torch.float32
        with torch.autocast("cuda", dtype=self.compute_dtype, enabled=use_autocast):
            if self.layers is None:
                tokens = self.model.forward_features(x)[:, self.model.num_prefix_tokens :]
                h, w = (s // self.patch_size for s in x.shape[-2:])
                return tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w).float()
            feats = self.model.forward_intermediates(
                x,
                indices=self.layers,
                norm=True,
                stop_early=True,
                output_fmt="NCHW",
                intermediates_only=True,
            )
        feats = [f.float() for f in feats]
        return torch.cat(feats, dim=1) if self.layer_agg == "concat" else torch.stack(feats).mean(0)
