"""Backbone protocol: images in [0, 1] -> patch features on a fixed grid."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

from locoad.errors import CheckpointMismatchError, LocoadError, WeightsUnavailableError

T = TypeVar("T")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Subclasses set ``image_size``, ``patch_size``, ``embed_dim`` and implement ``extract``.

    ``forward`` takes (B, 3, H, W) float RGB in [0, 1] (any H, W, any device: moved to the
    backbone's), resizes to ``image_size`` and normalises as the model expects, and returns
    (B, D, image_size // patch_size, same) features on the backbone's device.
    Backbones are frozen feature extractors: no gradients, eval mode.
    """

    image_size: int = 518
    patch_size: int = 14
    embed_dim: int = 0
    normalize: bool = True  # apply ImageNet mean/std before ``extract``

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"backbone expects (B, 3, H, W) images, got {tuple(images.shape)}")
        # Lightning moves batches itself; plain torch callers (benchmarks, notebooks) may not.
        weight = next(self.parameters(), None)
        if weight is None:
            weight = next(self.buffers(), None)
        x = (images if weight is None else images.to(weight.device, non_blocking=True)).float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = nn.functional.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        if self.normalize:
            mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
            x = (x - mean) / std
        with float32_convolutions():
            feats = self.extract(x)
        g = self.grid_size
        if feats.shape[-2:] != (g, g):
            feats = nn.functional.interpolate(feats, size=(g, g), mode="bilinear", align_corners=False)
        return feats.float()


@contextlib.contextmanager
def float32_convolutions() -> Iterator[None]:
    """cuDNN convolutions at full float32 inside. PyTorch lets them run as TF32 by default on
    Ampere and later GPUs: about 1e-3 relative error in the features, enough for a GPU run to
    disagree with the CPU run of the same configuration at the third digit of the fused score.
    Reduced precision stays an explicit choice (``backbone.dtype``). Sets the flag through the
    API it is read with: torch >= 2.9 refuses reads after a mix of its legacy and new switches."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        old = conv.fp32_precision
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = old
    else:
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = old


# --- helpers shared by the timm-based backbones (dinov2.py, cnn.py) ---------------------------


def pretrained_source(model_name: str) -> str:
    """Where ``timm.create_model(model_name, pretrained=True)`` downloads from, and caches to."""
    from timm.models import get_pretrained_cfg
    from timm.models._hub import has_hf_hub

    cfg = get_pretrained_cfg(model_name)
    if cfg is not None and cfg.hf_hub_id and has_hf_hub():
        return f"the Hugging Face hub, https://huggingface.co/{cfg.hf_hub_id} (cached under ~/.cache/huggingface or $HF_HOME)"
    if cfg is not None and cfg.url:
        return f"{cfg.url} (cached under ~/.cache/torch/hub/checkpoints or $TORCH_HOME)"
    return "timm's default weight location"


def create_timm_model(model_name: str, pretrained: bool, offline_hint: str, **kwargs) -> nn.Module:
    """``timm.create_model``; with ``pretrained`` it downloads the weights once (when online) and
    turns a failed download into one actionable line: where it tried, and the offline fix."""
    import timm

    if not pretrained:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    try:
        return timm.create_model(model_name, pretrained=True, **kwargs)
    except Exception as err:  # hub/url/cache errors have no common base class across versions
        reason = " ".join(f"{type(err).__name__}: {err}".split())  # hub errors span many lines
        reason = reason if len(reason) <= 200 else reason[:197] + "..."
        raise WeightsUnavailableError(
            f"pretrained=true downloads the weights of {model_name!r} from {pretrained_source(model_name)}, "
            f"and that failed ({reason}). Offline: {offline_hint}"
        ) from err


def shape_mismatches(expected: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor]) -> list[str]:
    """``key: checkpoint (shape) vs model (shape)`` for every tensor a model's state dict
    (``expected``) and a checkpoint's both have, in another shape."""
    return sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    )


def read_checkpoint(path: object, load: Callable[[], T]) -> T:
    """``load()`` (which reads the weights file ``path``), a file that cannot be read as weights
    (a download cut short, another kind of file) raised as one line naming it, not torch's
    pickle or zip error wrapped in Hydra's."""
    try:
        return load()
    except LocoadError:
        raise
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointMismatchError(
            f"Checkpoint {path} cannot be read as weights ({type(err).__name__}: {reason}): a download "
            "cut short or another kind of file; download it again") from err


def check_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str, ignore_unexpected: tuple[str, ...] = ()
) -> None:
    """Raise a readable RuntimeError unless ``state_dict`` fits ``model`` exactly (keys and shapes).

    Unexpected keys starting with a prefix in ``ignore_unexpected`` are allowed (e.g. a classifier
    head or blocks a truncated feature extractor does not contain).
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(
        k for k in set(state_dict) - set(expected) if not k.startswith(ignore_unexpected)
    )
    mismatched = shape_mismatches(expected, state_dict)
    if not (missing or unexpected or mismatched):
        return

    def _fmt(items: list[str]) -> str:
        head = ", ".join(items[:8])
        return head + (f", ... ({len(items)} in all)" if len(items) > 8 else "")

    problems = []
    if missing:
        problems.append(f"missing keys: {_fmt(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_fmt(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_fmt(mismatched)}")
    raise CheckpointMismatchError(
        f"Checkpoint {source} does not match the model ({'; '.join(problems)}). "
        "Is it the checkpoint for this architecture/variant?"
    )
