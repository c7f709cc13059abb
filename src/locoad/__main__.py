"""The one entry point: ``locoad`` and ``python -m locoad`` (Hydra; any key overridable, ``-m`` multiruns)."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from locoad import CONFIG_DIR
from locoad.errors import unwrap_user_error, user_message

log = logging.getLogger("locoad")


def metric_value(metrics: dict, path: str | None) -> float | None:
    """The value an Optuna sweeper optimises: ``"fused.f1_max"`` -> metrics["fused"]["f1_max"].

    Keys may contain dots (AU-sPRO's limits are ``"0.05"``), so a path is either "/"-separated
    (``pixel/au_spro/mean/0.05``) or dotted and matched greedily, the longest key first at each
    level (``pixel.au_spro.mean.0.05``). None (with a warning) when the run has no such value.
    """
    if not path or not metrics:
        return None
    sep = "/" if "/" in path else "."
    parts, value = path.split(sep), metrics
    while parts and isinstance(value, dict):
        n = next((n for n in range(len(parts), 0, -1) if sep.join(parts[:n]) in value), 0)
        if n == 0:
            break
        value, parts = value[sep.join(parts[:n])], parts[n:]
    if parts or not isinstance(value, (int, float)) or isinstance(value, bool):
        log.warning("optimized_metric=%s is not a number in this run's metrics.json (keys are e.g. "
                    "fused.f1_max, pixel.au_spro.mean.0.05): the sweeper gets None", path)
        return None
    return float(value)


class SweepJobError(CompactHydraException):
    """A user error in one job of a ``-m`` sweep: Hydra prints its message, no traceback."""


def in_multirun() -> bool:
    """Whether this job is one of a ``-m`` sweep's."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def optuna_sweep() -> bool:
    """Whether this job is a trial of Hydra's Optuna sweeper (which optimises the returned metric)."""
    from hydra.core.hydra_config import HydraConfig

    return in_multirun() and "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from locoad.run import run  # heavy imports after Hydra has parsed the command line

    try:
        metrics = run(cfg)
    except Exception as e:
        # A user error (possibly wrapped by Hydra's instantiate): say what is wrong and how to
        # fix it in one line, without a traceback. Anything else is a bug: full traceback.
        user_error = unwrap_user_error(e)
        if user_error is None or os.environ.get("LOCOAD_TRACEBACK") == "1":
            raise
        log.error("%s", user_message(user_error))  # Hydra's handlers: the console and run.log
        if in_multirun():
            # Hydra marks this job failed and goes on with the others (SystemExit would end the
            # sweep); at the end it re-raises the first failure, and a compact one as its line only.
            raise SweepJobError(user_message(user_error)) from None
        sys.exit(2)
    value = metric_value(metrics, cfg.get("optimized_metric"))
    if value is None and metrics and cfg.get("optimized_metric") and optuna_sweep():
        # The sweeper needs a number: it would fail on None with a traceback, after each trial.
        raise SweepJobError(f"optimized_metric={cfg.optimized_metric} is not a number in this run's metrics.json: "
                            "name one, e.g. optimized_metric=fused.f1_max or pixel.au_spro.mean.0.05")
    return value


if __name__ == "__main__":
    main()
