"""Which torch device a model with a ``device`` option runs on."""

from __future__ import annotations

import torch

from locoad.errors import ConfigError


def resolve_device(device: str, followed: torch.device | None = None) -> torch.device:
    """``"auto"`` -> the trainer's device when one was followed (a Lightning run), else cuda when
    available, else cpu; anything else is passed to torch unchanged."""
    if device == "auto":
        if followed is not None:
            return followed
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are one: ``cuda`` (no index) is the current CUDA device, which a
    module's parameters name as ``cuda:0``; a plain ``!=`` calls them different."""
    def index(d: torch.device) -> int | None:
        if d.index is None and d.type == "cuda":
            return torch.cuda.current_device() if torch.cuda.is_available() else 0
        return d.index
    return a.type == b.type and index(a) == index(b)


def check_precision(precision: object) -> None:
    """Refuse Lightning's "true" half (and double) precision: it casts every network's weights,
    and the backbones, which take float32 images, fail on their first batch with a dtype error."""
    if str(precision).lower() in ("16-true", "bf16-true", "64-true", "64"):
        raise ConfigError(
            f"trainer.precision={precision} casts every network's weights to that type, which the pretrained "
            "backbones do not run at: use ++trainer.precision=bf16-mixed or 16-mixed (autocast, float32 weights) "
            "or 32-true (`++`: only trainer=gpu has the key, `+` adds it to the others)"
        )


def check_accelerator(accelerator: object) -> None:
    """Raise, before any work, when the trainer asks for a GPU that torch cannot see (Lightning's
    own error arrives wrapped in Hydra's instantiation error, naming no fix)."""
    if str(accelerator).lower() in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} (trainer=gpu) but torch {torch.__version__} sees no CUDA device "
            f"(built for CUDA {torch.version.cuda or 'none: a CPU-only wheel'}): use trainer=default, which takes "
            "the GPU when there is one, or trainer=cpu"
        )
