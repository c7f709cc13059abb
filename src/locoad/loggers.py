"""Weights & Biases logging that never blocks a run: offline by default, bounded online start.

:class:`LocoadWandbLogger` is Lightning's ``WandbLogger`` with four changes:

* the mode is decided up front (``WANDB_MODE`` wins, else ``offline``; online needs a key),
  and is passed to ``wandb.init`` instead of mutating ``os.environ`` as Lightning does;
* an unreachable server in online mode falls back to an offline run (``wandb sync`` later);
* a run left open by an earlier job in the same process is finished, never reused;
* :meth:`log_test_results` logs the per-image table, anomaly-map overlays and an F1-max chart,
  and :meth:`finish` closes the run at the end of every job.
"""

from __future__ import annotations

import logging
import math
import netrc
import os
import socket
import warnings
from typing import Any
from urllib.parse import urlparse

import numpy as np
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

KNOWN_COLUMNS = ("path", "label", "anomaly_type")
DEFAULT_BASE_URL = "https://api.wandb.ai"


def _has_credentials(base_url: str) -> bool:
    """An API key in the environment or in ~/.netrc for the W&B host (no prompt, no network)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(base_url).hostname or ""
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _reachable(base_url: str, timeout: float) -> bool:
    """TCP connect to the W&B host. Skipped (True) behind a proxy, where only wandb can tell."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    url = urlparse(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(offline: bool, base_url: str | None = None) -> str:
    """``online`` | ``offline`` | ``disabled``: ``WANDB_MODE`` first, then ``offline``.

    Online also needs credentials: without them wandb would prompt (and hang a batch job).
    """
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env == "disabled":
        return "disabled"
    if env in ("offline", "dryrun"):
        return "offline"
    if env != "online" and offline:
        return "offline"
    base_url = base_url or os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
    if not _has_credentials(base_url):
        warnings.warn("W&B online mode requested but no API key found (WANDB_API_KEY or "
                      "`wandb login`); logging offline instead", stacklevel=2)
        return "offline"
    return "online"


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


def overlay(image: np.ndarray, amap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured, min-max normalised anomaly map over an (H, W, 3) uint8 image."""
    from matplotlib import colormaps
    from PIL import Image

    h, w = image.shape[:2]
    a = amap.astype(np.float32)
    a = (a - a.min()) / (np.ptp(a) + 1e-8)
    a = np.asarray(Image.fromarray((a * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR))
    heat = (colormaps["jet"](a)[..., :3] * 255).astype(np.float32)
    return ((1 - alpha) * image.astype(np.float32) + alpha * heat).astype(np.uint8)


def label_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Colour each label (0 = background, left as is) over ``image``; same size as ``labels``."""
    from PIL import Image
    from skimage.color import label2rgb

    if image.shape[:2] != labels.shape:
        image = np.asarray(Image.fromarray(image).resize(labels.shape[::-1], Image.BILINEAR))
    return (label2rgb(labels, image, bg_label=0, alpha=alpha) * 255).round().astype(np.uint8)


def _load_rgb(path: str, size: int | None = None) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size:
                im.thumbnail((size, size))
            return np.asarray(im)
    except OSError:
        return None


def pick_examples(table: Any, n_per_type: int) -> list[int]:
    """Row indices of the first ``n_per_type`` images of every anomaly type (good first)."""
    rows: list[int] = []
    for _, group in table.groupby("anomaly_type", sort=True):
        rows += list(group.index[:n_per_type])
    return rows


class LocoadWandbLogger(WandbLogger):
    """Lightning's W&B logger, offline-first and safe for sweeps (see the module docstring)."""

    def __init__(
        self,
        *,
        offline: bool = True,
        init_timeout: float = 30.0,
        max_table_images: int = 500,
        thumbnail_size: int = 96,
        overlays_per_type: int = 2,
        **kwargs: Any,
    ) -> None:
        self.mode = resolve_mode(offline)
        kwargs.setdefault("project", os.environ.get("WANDB_PROJECT") or "locoad")
        if not kwargs.get("group"):
            kwargs["group"] = default_group()
        kwargs["tags"] = [str(t) for t in (kwargs.get("tags") or []) if t is not None]
        kwargs.pop("log_model", None)  # checkpoints stay on disk; artefact uploads are opt-in elsewhere
        # offline=False for the parent: it would otherwise write WANDB_MODE into os.environ,
        # which leaks into later jobs of the same process. The mode goes to wandb.init instead.
        super().__init__(offline=False, mode=self.mode, **kwargs)
        self.init_timeout = float(init_timeout)
        self.max_table_images = max_table_images
        self.thumbnail_size = thumbnail_size
        self.overlays_per_type = overlays_per_type

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
        base_url = os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
        if mode == "online" and not _reachable(base_url, self.init_timeout):
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
        """Per-image table, anomaly-map overlays, F1-max bar chart and summary metrics."""
        import wandb

        from locoad.models.base import flatten_metrics

        run = self.experiment
        table = results.table.reset_index(drop=True)
        scores = [c for c in table.columns if c not in KNOWN_COLUMNS and not c.startswith("extra/")]
        extras = [c for c in table.columns if c.startswith("extra/")]
        columns = ["thumbnail", "path", "label", "anomaly_type", *scores, *extras]
        wtable = wandb.Table(columns=columns)
        for i, row in table.iterrows():
            thumb = None
            if i < self.max_table_images:
                rgb = _load_rgb(str(row["path"]), self.thumbnail_size)
                thumb = wandb.Image(rgb) if rgb is not None else None
            wtable.add_data(thumb, str(row["path"]), int(row["label"]), str(row["anomaly_type"]),
                            *[_num(row[c]) for c in scores + extras])
        payload: dict[str, Any] = {"test/images": wtable}

        metrics = results.metrics
        bars = [[name, float(m["f1_max"])] for name, m in metrics.items()
                if isinstance(m, dict) and _finite(m.get("f1_max"))]
        if bars:
            bar_table = wandb.Table(data=bars, columns=["score", "f1_max"])
            payload["test/f1_max_by_score"] = wandb.plot.bar(bar_table, "score", "f1_max",
                                                             title="F1-max per score")

        if results.anomaly_maps is not None and len(results.anomaly_maps) == len(table):
            images = []
            for i in pick_examples(table, self.overlays_per_type):
                rgb = _load_rgb(str(table.at[i, "path"]), 256)
                if rgb is None:
                    continue
                caption = (f"{table.at[i, 'anomaly_type']} fused="
                           f"{_num(table.at[i, 'fused']) if 'fused' in table else ''}")
                images.append(wandb.Image(overlay(rgb, np.asarray(results.anomaly_maps[i])),
                                          caption=caption))
            if images:
                payload["test/anomaly_maps"] = images
        # Segmentation and alignment of the same examples: the seed names alignment as the
        # method's main weakness, so make it visible next to the scores.
        for name, maps in getattr(results, "label_maps", {}).items():
            if len(maps) != len(table):
                continue
            images = []
            for i in pick_examples(table, self.overlays_per_type):
                rgb = _load_rgb(str(table.at[i, "path"]), maps.shape[-1])
                if rgb is not None:
                    images.append(wandb.Image(label_overlay(rgb, maps[i]), caption=str(table.at[i, "anomaly_type"])))
            if images:
                payload[f"test/{name}"] = images
        run.log(payload)
        for key, value in flatten_metrics(metrics).items():
            if _finite(value):
                run.summary[key] = value
        # AU-sPRO@0.05 (logical/structural mean) beside the fused F1-max and AUROC in the runs table
        spro = ((metrics.get("pixel") or {}).get("au_spro") or {}).get("mean") or {}
        if _finite(spro.get("0.05")):
            run.summary["test/fused/au_spro_0.05"] = spro["0.05"]

    @rank_zero_only
    def finish(self) -> None:
        """Close the W&B run (flush files); the next job starts a new one."""
        import wandb

        if self._experiment is not None:
            self._experiment.finish()
            self._experiment = None
        if wandb.run is not None:  # e.g. a run started through wandb.init elsewhere in the job
            wandb.finish()


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def finish_loggers(loggers: list) -> None:
    """Call ``finish()`` on every logger that has one; a failure is logged, never raised."""
    for lg in loggers:
        if hasattr(lg, "finish"):
            try:
                lg.finish()
            except Exception:  # a logger must never turn a finished job into a failed one
                log.exception("closing logger %s failed", type(lg).__name__)
