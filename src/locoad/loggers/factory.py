"""Build the configured loggers for a job and close them at its end."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from locoad.utils import build

log = logging.getLogger(__name__)


def build_loggers(cfg: DictConfig) -> list:
    """One logger per entry of the ``logger`` group (none for ``logger=none``)."""
    if not cfg.get("logger"):
        return []
    return [build(c) for c in cfg.logger.values() if c is not None and "_target_" in c]


def finish_loggers(loggers: list, exit_code: int = 0) -> None:
    """Call ``finish(exit_code)`` on every logger that has one (non-zero: the job failed, so a
    dashboard shows it failed, not finished); a failure is logged, never raised."""
    for lg in loggers:
        if hasattr(lg, "finish"):
            try:
                lg.finish(exit_code)
            except Exception:  # a logger must never turn a finished job into a failed one
                log.exception("closing logger %s failed", type(lg).__name__)
