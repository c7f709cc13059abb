"""Weights & Biases logging that never blocks a run: offline by default, bounded online start.

:class:`LocoadWandbLogger` is Lightning's ``WandbLogger`` with four changes:

* the mode is decided up front (:func:`~locoad.loggers.wandb_mode.resolve_mode`) and passed to
  ``wandb.init`` instead of mutating ``os.environ`` as Lightning does;
* an unreachable server in online mode falls back to an offline run (``wandb sync`` later);
* a run left open by an earlier job in the same process is finished, never reused;
* :meth:`log_test_results` logs the per-image score table, an F1-max chart and the summary
  metrics (the panels come from :mod:`locoad.viz`), and :meth:`finish` closes the run at the
  end of every job.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from locoad.loggers import wandb_mode
from locoad.loggers.hydra_group import default_group
from locoad.nested import is_number

log = logging.getLogger(__name__)

KNOWN_COLUMNS = ("path", "label", "anomaly_type")

class LocoadWandbLogger(WandbLogger):
    """Lightning's W&B logger, offline-first and safe for sweeps (see the module docstring)."""

    def __init__(
        self,
        *,
        offline: bool = True,
        init_timeout: float = 30.0,
        extra_tags: list | None = None,
        **kwargs: Any,
    ) -> None:
        self.mode = wandb_mode.resolve_mode(offline)
        kwargs.setdefault("project", os.environ.get("WANDB_PROJECT") or "locoad")
        if not kwargs.get("group"):
            kwargs["group"] = default_group()
        tags = [*(kwargs.get("tags") or []), *(extra_tags or [])]
        kwargs["tags"] = list(dict.fromkeys(str(t) for t in tags if t is not None))
        kwargs.pop("log_model", None)  # checkpoints stay on disk; artefact uploads are opt-in elsewhere
        # offline=False for the parent: it would otherwise write WANDB_MODE into os.environ,
        # which leaks into later jobs of the same process. The mode goes to wandb.init instead.
        super().__init__(offline=False, mode=self.mode, **kwargs)
        self.init_timeout = float(init_timeout)

    @property
    def experiment(self) -> Any:
        """The wandb run, started on first use (offline fallback if online start fails)."""
        if self._experiment is None and rank_zero_only.rank == 0:
            self._start()
        return self._experiment

    def _start(self) -> None:
        import wandb

        if wandb.run is not None:
            # A run left open by an earlier job in this process (basic launcher, notebooks):
            # Lightning would silently log into it; close it so every job gets its own run.
            log.warning("finishing a W&B run left open by an earlier job (%s)", wandb.run.id)
            wandb.finish()
        # Lightning always passes anonymous=None, which wandb>=0.19 warns about on every run.
        init = {k: v for k, v in self._wandb_init.items() if not (k == "anonymous" and v is None)}
        mode = init.get("mode", "offline")
        base_url = wandb_mode.base_url()
        if mode == "online" and not wandb_mode.reachable(base_url, self.init_timeout):
            mode = self._fallback(f"{base_url} is unreachable")
        run = None
        if mode == "online":
            try:
                run = wandb.init(**{**init, "mode": "online"},
                                 settings=wandb.Settings(init_timeout=self.init_timeout))
            except Exception as e:  # CommError, UsageError, timeouts: never kill the job for W&B
                wandb.finish()
                mode = self._fallback(f"{type(e).__name__}: {e}")
        if run is None:
            run = wandb.init(**{**init, "mode": mode})
        self._experiment = run
        self._wandb_init["mode"] = mode
        if getattr(run, "define_metric", None):
            run.define_metric("trainer/global_step")
            run.define_metric("*", step_metric="trainer/global_step", step_sync=True)

    @staticmethod
    def _fallback(reason: str) -> str:
        warnings.warn(f"W&B online start failed ({reason}); logging offline instead — "
                      "upload later with `wandb sync <save_dir>/wandb/offline-run-*`", stacklevel=3)
        return "offline"

    @property
    def run_dir(self) -> str | None:
        """The local folder of the W&B run (``.../wandb/offline-run-...``), once started."""
        run = self._experiment
        return os.path.dirname(run.dir) if run is not None and getattr(run, "dir", None) else None

    @rank_zero_only
    def log_test_results(self, results: Any) -> None:
        """Per-image score table, F1-max bar chart and summary metrics."""
        import wandb

        from locoad.models.base import flatten_metrics

        run = self.experiment
        table = results.table.reset_index(drop=True)
        scores = [c for c in table.columns if c not in KNOWN_COLUMNS and not c.startswith("extra/")]
        extras = [c for c in table.columns if c.startswith("extra/")]
        wtable = wandb.Table(columns=["path", "label", "anomaly_type", *scores, *extras])
        for _, row in table.iterrows():
            wtable.add_data(str(row["path"]), int(row["label"]), str(row["anomaly_type"]),
                            *[_num(row[c]) for c in scores + extras])
        payload: dict[str, Any] = {"test/scores": wtable}
        metrics = results.metrics
        bars = [[name, float(m["f1_max"])] for name, m in metrics.items()
                if isinstance(m, dict) and _finite(m.get("f1_max"))]
        if bars:
            bar_table = wandb.Table(data=bars, columns=["score", "f1_max"])
            payload["test/f1_max_by_score"] = wandb.plot.bar(bar_table, "score", "f1_max",
                                                             title="F1-max per score")
        run.log(payload)
        for key, value in flatten_metrics(metrics).items():
            if _finite(value):
                run.summary[key] = value
        # AU-sPRO@0.05 (logical/structural mean) beside the fused F1-max and AUROC in the runs table
        spro = ((metrics.get("pixel") or {}).get("au_spro") or {}).get("mean") or {}
        if _finite(spro.get("0.05")):
            run.summary["test/fused/au_spro_0.05"] = spro["0.05"]

    @rank_zero_only
    def finish(self, exit_code: int = 0) -> None:
        """Close the W&B run (flush files) with the job's exit code (non-zero: W&B marks it
        failed); the next job starts a new one."""
        import wandb

        if self._experiment is not None:
            self._experiment.finish(exit_code=exit_code)
            self._experiment = None
        if wandb.run is not None:  # e.g. a run started through wandb.init elsewhere in the job
            wandb.finish(exit_code=exit_code)


def _finite(v: Any) -> bool:
    """A finite number (``is_number``: numpy's too, no bool)."""
    return is_number(v) and math.isfinite(v)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
