"""The one entry point: ``locoad`` and ``python -m locoad`` (Hydra; any key overridable, ``-m`` multiruns)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from locoad.errors import unwrap_user_error

log = logging.getLogger("locoad")
# An absolute path works for `python -m locoad` and the `locoad` console script alike.
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def metric_value(metrics: dict, path: str | None) -> float | None:
    """``"fused.f1_max"`` -> metrics["fused"]["f1_max"], the value an Optuna sweeper optimises."""
    if not path or not metrics:
        return None
    value: object = metrics
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


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
        log.error("%s", user_error)  # Hydra's handlers put it on the console and in run.log
        sys.exit(2)
    return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
