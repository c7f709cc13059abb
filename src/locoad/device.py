"""Which torch device a model with a ``device`` option runs on."""

from __future__ import annotations

import torch


def resolve_device(device: str, followed: torch.device | None = None) -> torch.device:
    """``"auto"`` -> the trainer's device when one was followed (a Lightning run), else cuda when
    available, else cpu; anything else is passed to torch unchanged."""
    if device == "auto":
        if followed is not None:
            return followed
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
