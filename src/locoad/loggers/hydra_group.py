"""The group a logged run belongs to when the config names none: its Hydra sweep."""

from __future__ import annotations

import os


def default_group() -> str | None:
    """In a Hydra multirun, the sweep folder's name (shared by all its jobs); else ``None``."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):  # not inside a Hydra job
        return None
    if hc.mode == RunMode.MULTIRUN and hc.sweep.dir:
        return os.path.basename(os.path.normpath(str(hc.sweep.dir)))
    return None
