"""The one helper through which every configured part is built."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig


def build(cfg: DictConfig | dict | None, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with plain containers for nested values; ``None`` passes through."""
    if cfg is None:
        return None
    return hydra.utils.instantiate(cfg, _convert_="all", **kwargs)
