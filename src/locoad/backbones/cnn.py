"""PatchCore-style CNN patch features from a timm ``features_only`` model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from locoad.backbones.base import Backbone, check_state_dict, create_timm_model, read_checkpoint
from locoad.errors import CheckpointNotFoundError, ConfigError


def _weights_description(model_name: str) -> str:
    """Where timm's default weights for ``model_name`` come from, for error messages."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None:
        return f"timm weights for {model_name!r}"
    where = [f"https://huggingface.co/{cfg.hf_hub_id} (model.safetensors)"] if cfg.hf_hub_id else []
    where += [cfg.url] if cfg.url else []
    tag = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    return f"timm weights {tag!r}" + (f" from {' or '.join(where)}" if where else "")


class TimmCNNBackbone(Backbone):
    """Frozen timm CNN: selected stages -> 3x3 local mean -> upsample -> concat -> grid.

    Each stage in ``layers`` (timm ``out_indices``; (2, 3) = layer2, layer3 of a ResNet, as in
    PatchCore) is locally averaged at its own resolution (``pool_size``; 1 disables it), bilinearly
    upsampled to the largest selected map, concatenated over channels and resized to the
    ``image_size // patch_size`` grid (37x37 by default, the DINOv2 grid, so backbones are
    interchangeable). Weights: ``checkpoint`` (local timm weights file) if given, else timm's hub
    weights if ``pretrained``, else random init (tests only).
    """

    def __init__(
        self,
        model_name: str = "wide_resnet50_2",
        layers: Sequence[int] = (2, 3),
        pretrained: bool = True,
        checkpoint: str | None = None,
        image_size: int = 518,
        patch_size: int = 14,
        pool_size: int = 3,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if pool_size < 1 or pool_size % 2 == 0:
            raise ConfigError(f"pool_size must be a positive odd integer, got {pool_size}")
        if image_size <= 0 or patch_size <= 0 or image_size < patch_size:
            raise ConfigError(f"need image_size >= patch_size > 0, got {image_size}, {patch_size}")
        self.model_name = model_name
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.pool_size = int(pool_size)
        # Normalise in ``extract`` with the model's own mean/std (not every timm CNN uses ImageNet's).
        self.normalize = False
        model_kwargs = dict(model_kwargs or {})
        # Kept as attributes: the stage cache keys features by them (two stage sets of equal width
        # and the same weights would otherwise share stored features).
        self.layers = [int(i) for i in layers]
        self.model_kwargs = model_kwargs
        feat_kwargs = {
            "features_only": True,
            "out_indices": tuple(int(i) for i in layers),
            **model_kwargs,
        }

        if checkpoint is not None:
            self.model = self._from_checkpoint(
                Path(checkpoint).expanduser(), model_kwargs, feat_kwargs
            )
        else:
            self.model = self._create_model(pretrained, feat_kwargs)
        self.embed_dim = int(sum(self.model.feature_info.channels()))
        cfg = self.model.pretrained_cfg
        self.register_buffer(
            "mean",
            torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1),
            persistent=False,
        )
        self.register_buffer(
            "std",
            torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1),
            persistent=False,
        )
        self.model.eval().requires_grad_(False)

    def _create_model(self, pretrained: bool, feat_kwargs: dict[str, Any]) -> torch.nn.Module:
        """The feature extractor when no ``checkpoint`` is given (subclasses bring their weights)."""
        return create_timm_model(
            self.model_name,
            pretrained=pretrained,
            offline_hint=(
                f"download the {_weights_description(self.model_name)} and set "
                "backbone.checkpoint=<path to the file> (it is then loaded, never downloaded), "
                "or backbone.pretrained=false for random weights (tests only)."
            ),
            **feat_kwargs,
        )

    def _from_checkpoint(
        self, path: Path, model_kwargs: dict[str, Any], feat_kwargs: dict[str, Any]
    ) -> torch.nn.Module:
        import timm
        from timm.models import load_state_dict

        if not path.is_file():
            raise CheckpointNotFoundError(
                f"CNN checkpoint not found: {path}. Download the {_weights_description(self.model_name)} "
                "and put it at that path, or set backbone.checkpoint=<path to the file>."
            )
        # Strict check against the full classifier-free network first (built on the meta device, so
        # it costs no memory): the features_only wrapper below is truncated and timm loads it
        # non-strictly, which would silently keep random weights for any missing key.
        with torch.device("meta"):
            reference = timm.create_model(
                self.model_name, pretrained=False, num_classes=0, **model_kwargs
            )
        classifier = reference.pretrained_cfg.get("classifier") or ()
        classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        check_state_dict(
            reference,
            read_checkpoint(path, lambda: load_state_dict(str(path))),
            source=str(path),
            ignore_unexpected=tuple(f"{c}." for c in classifier),
        )
        # timm's own loader then applies the model's checkpoint filter and feature wrapping.
        return timm.create_model(
            self.model_name,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(path)},
            **feat_kwargs,
        )

    def train(self, mode: bool = True) -> TimmCNNBackbone:
        # Frozen extractor: BatchNorm running stats must not drift when a parent calls .train().
        return super().train(False)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        feats = self.model(x)
        size = max((f.shape[-2:] for f in feats), key=lambda s: s[0] * s[1])
        out = []
        for f in feats:
            if self.pool_size > 1:
                # local neighbourhood aggregation as in PatchCore; zero padding like its unfold(pad=1)
                f = F.avg_pool2d(f, self.pool_size, stride=1, padding=self.pool_size // 2)
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            out.append(f)
        feats = torch.cat(out, dim=1)
        g = self.grid_size
        if feats.shape[-2:] != (g, g):
            # antialias: going from e.g. 65x65 (stride 8 at 518 px) down to 37x37
            feats = F.interpolate(
                feats, size=(g, g), mode="bilinear", align_corners=False, antialias=True
            )
        return feats
