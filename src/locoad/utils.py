"""The one helper through which every configured part is built."""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from locoad.errors import unwrap_user_error


def build(cfg: DictConfig | dict | None, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with plain containers for nested values; ``None`` passes through."""
    if cfg is None:
        return None
    try:
        return hydra.utils.instantiate(cfg, _convert_="all", **kwargs)
    except InstantiationException as err:
        # Hydra wraps a constructor's error ("Error in call to target ... FileNotFoundError(...)");
        # a user error (bad data, missing checkpoint) is raised as itself, as one clean line.
        user_error = unwrap_user_error(err)
        if user_error is None:
            raise
        raise user_error from None
