"""Fit and test one configuration; write the run's outputs. Called by the Hydra entry point."""

from __future__ import annotations

import json
import logging
import math
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from locoad import CONFIG_DIR
from locoad.device import check_accelerator, check_precision
from locoad.errors import ConfigError
from locoad.io import atomic_write_csv, atomic_write_json, atomic_write_text
from locoad.loggers import build_loggers, finish_loggers
from locoad.models.base import TestResults, check_single_device
from locoad.utils import build

log = logging.getLogger(__name__)


def _no_promotion(record: logging.LogRecord) -> bool:
    """Lightning logs an advertisement ("💡 Tip: ... litlogger") at every Trainer it builds."""
    return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_no_promotion)

# Lightning warnings that say nothing about a locoad run: the seven-feature model trains nothing (no
# optimizer, no validation step) and keeps its frozen networks in eval mode on purpose; the pytree
# one is Lightning's own call of a torch API that torch 2.14 deprecates.
for _message in (r"You passed in a `val_dataloader` but have no `validation_step`",
                 r"`LightningModule.configure_optimizers` returned `None`",
                 r"Found \d+ module\(s\) in eval mode at the start of training",
                 r"`isinstance\(treespec, LeafSpec\)` is deprecated"):
    warnings.filterwarnings("ignore", message=_message)


def one_line_per_lightning_record() -> None:
    """The ``lightning`` package prints its loggers' records with a console handler of its own
    ("INFO: ..."), and they propagate to the root logger's handlers too: under Hydra (the root
    has handlers: the console and run.log) every Lightning line came twice. There its own handler
    goes; without root handlers (a notebook) it stays, or the lines would not be printed at all."""
    if not logging.getLogger().handlers:
        return
    own = logging.getLogger("lightning")
    for handler in list(own.handlers):
        if type(handler) is logging.StreamHandler:
            own.removeHandler(handler)

# Keys that may differ between a finished job and its re-run without invalidating the result.
RESUME_IGNORED_KEYS = ("skip_if_done", "logger")


def finished_metrics(out_dir: Path, cfg: DictConfig) -> dict | None:
    """metrics.json of a finished job in ``out_dir`` run with the same resolved config, else None."""
    metrics, saved = out_dir / "metrics.json", out_dir / "config.yaml"
    if not (metrics.is_file() and saved.is_file()):
        return None
    now = OmegaConf.to_container(cfg, resolve=True)
    before = OmegaConf.to_container(OmegaConf.load(saved))
    for key in RESUME_IGNORED_KEYS:
        now.pop(key, None)
        before.pop(key, None)
    if now != before:
        return None
    try:
        return json.loads(metrics.read_text())
    except json.JSONDecodeError:  # cannot happen with atomic writes; rerun rather than fail
        return None


def per_score_spro(cfg: DictConfig) -> bool:
    """evaluation.per_score_spro: AU-sPRO of every single score's map too (default), or the fused map's only."""
    value = (cfg.get("evaluation") or {}).get("per_score_spro", True)
    if not isinstance(value, bool):
        raise ConfigError(f"evaluation.per_score_spro={value!r} must be true or false "
                          "(false: AU-sPRO of the fused map only)")
    return value


def known_feature_names() -> set[str]:
    """Every name a features config gives a feature: ``conf/feature_defaults/<name>.yaml`` and
    the names ``conf/features/*.yaml`` place (``/feature_defaults@<name>``, top-level keys)."""
    import yaml

    names = {p.stem for p in (Path(CONFIG_DIR) / "feature_defaults").glob("*.yaml")}
    for path in (Path(CONFIG_DIR) / "features").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text()) or {}
        names |= {k for k in doc if k != "defaults"}
        names |= {k.split("@", 1)[1] for d in doc.get("defaults") or [] if isinstance(d, dict) for k in d if "@" in k}
    return names


def warn_unknown_fusion_names(cfg: DictConfig) -> None:
    """Fusion settings keyed by a feature name that no features config knows: a misspelt
    ``+fusion.weights.<name>=`` is otherwise ignored without a word, and an ablation "changes
    nothing". (Presets may weight features a run leaves out: those names are known.)"""
    fusion = cfg.get("fusion")
    if not isinstance(fusion, DictConfig) or not Path(CONFIG_DIR).is_dir():
        return
    named = {*(fusion.get("weights") or {}), *(fusion.get("full_weight_shots") or {}), *(fusion.get("log_features") or [])}
    unknown = sorted(named - set(cfg.get("features") or {}) - known_feature_names())
    if unknown:
        log.warning("fusion settings name %s, which no features config has (this run's features: %s): they are "
                    "ignored; check the spelling", ", ".join(unknown), ", ".join(cfg.get("features") or {}))


def build_callbacks(cfg: DictConfig) -> list:
    """The configured callbacks; without ``train`` no checkpoint callback (nothing to save)."""
    if not cfg.get("callbacks"):
        return []
    callbacks = [build(c) for c in cfg.callbacks.values() if c is not None and "_target_" in c]
    if not cfg.get("train", True):
        callbacks = [c for c in callbacks if not isinstance(c, L.pytorch.callbacks.Checkpoint)]
    return callbacks


def format_table(metrics: dict) -> str:
    """Markdown table: one row per score, F1-max / AUROC overall, AU-sPRO@0.05 (logical/structural
    mean, where the run has it and the score a map), logical, structural."""

    def fmt(d: dict | None, key: str) -> str:
        v = (d or {}).get(key)
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    def spro(m: dict) -> dict:  # AU-sPRO of a score's map (the fused map's sits in metrics["pixel"])
        pixel = metrics.get("pixel") if m is metrics.get("fused") else m.get("pixel")
        return ((pixel or {}).get("au_spro") or {}).get("mean") or {}

    scores = {n: m for n, m in metrics.items() if isinstance(m, dict) and "f1_max" in m}
    with_spro = any(spro(m) for m in scores.values())
    head = "| score | F1-max | AUROC |" + (" AU-sPRO@0.05 |" if with_spro else "") + \
        " logical F1 | logical AUROC | structural F1 | structural AUROC |"
    lines = [head, "|" + "---|" * (7 + with_spro)]
    for name, m in scores.items():
        cells = [fmt(m, "f1_max"), fmt(m, "auroc")] + ([fmt(spro(m), "0.05")] if with_spro else [])
        for t in ("logical", "structural"):
            cells += [fmt(m.get(t), "f1_max"), fmt(m.get(t), "auroc")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# What a finished run leaves; metrics.json, written last, marks it finished (skip_if_done).
RESULT_FILES = ("scores.csv", "metrics.md", "metrics.json")
RESULT_DIRS = ("anomaly_maps", "gallery")  # written by the test stage (export.anomaly_maps, the visualiser)


def write_outputs(out_dir: Path, results: TestResults, export_maps: Callable[[], None] | None = None) -> None:
    """scores.csv and metrics.md, then the exported anomaly maps (``export_maps``), and metrics.json
    last: a run stopped anywhere before it leaves no metrics.json to pass for finished."""
    atomic_write_csv(out_dir / "scores.csv", results.table)
    atomic_write_text(out_dir / "metrics.md", format_table(results.metrics) + "\n")
    if export_maps is not None:
        export_maps()
    atomic_write_json(out_dir / "metrics.json", results.metrics)


def check_run_mode(cfg: DictConfig) -> None:
    """``train=false`` tests the checkpoint at ``ckpt_path``: there must be one, and it must exist."""
    ckpt = cfg.get("ckpt_path")
    if cfg.get("train", True) or not cfg.get("test", True):
        return
    if ckpt is None:
        raise ConfigError("train=false tests a fitted model: set ckpt_path=<a checkpoint a run saved "
                          "(<run dir>/checkpoints/last.ckpt)>, or train=true")
    if not Path(str(ckpt)).expanduser().is_file():
        raise ConfigError(f"ckpt_path={ckpt} is not a file: give a checkpoint a run saved "
                          "(<run dir>/checkpoints/last.ckpt)")


def run(cfg: DictConfig) -> dict:
    """Fit on the k shots and test; returns the metrics dict (also written to ``paths.output_dir``)."""
    out_dir = Path(cfg.paths.output_dir)
    if cfg.get("skip_if_done") and (done := finished_metrics(out_dir, cfg)) is not None:
        log.info("skipping %s: finished with the same config (skip_if_done=true)", out_dir)
        return done
    check_run_mode(cfg)
    one_line_per_lightning_record()
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = [out_dir / f for f in RESULT_FILES if (out_dir / f).is_file()]
    stale_dirs = [out_dir / d for d in RESULT_DIRS if (out_dir / d).is_dir()]
    if stale or stale_dirs:
        # Results of an earlier run in this folder: left beside the new config.yaml, a run stopped
        # midway would pass them off as its own (and skip_if_done would take them as finished),
        # and a run without export or gallery would leave the earlier run's maps and panels.
        log.info("%s holds an earlier run's results; replacing them", out_dir)
        for f in stale:
            f.unlink()
        for d in stale_dirs:
            shutil.rmtree(d)
    atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    spro_per_score = per_score_spro(cfg)  # a bad value fails before any work
    warn_unknown_fusion_names(cfg)
    datamodule = build(cfg.data)
    datamodule.setup("fit")  # fail fast on a bad data layout, before any model is built
    check_accelerator(cfg.trainer.get("accelerator"))
    check_precision(cfg.trainer.get("precision"))
    loggers = build_loggers(cfg)
    # A run that only tests saves no checkpoint (Lightning's own, restored from another run's
    # folder, would warn that the folder moved).
    no_checkpoint = {} if cfg.get("train", True) else {"enable_checkpointing": False}
    trainer: L.Trainer = build(cfg.trainer, logger=loggers or False, callbacks=build_callbacks(cfg), **no_checkpoint)
    check_single_device(trainer)  # and on a bad device count, before any weights are loaded
    model = build(cfg.model)
    model.per_score_spro = spro_per_score
    try:
        for lg in loggers:  # the first call starts a W&B run: from here on a failure closes it as failed
            if hasattr(lg, "log_hyperparams"):
                lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        results = fit_and_test(cfg, trainer, model, datamodule)
    except BaseException:
        finish_loggers(loggers, exit_code=1)  # one W&B run per job, marked failed: Lightning would reuse it
        raise
    finish_loggers(loggers)
    if results is None:
        return {}
    export_maps = None
    if (cfg.get("export") or {}).get("anomaly_maps"):
        from locoad.export import export_anomaly_maps

        def export_maps() -> None:
            export_anomaly_maps(out_dir, results, str(cfg.data.category), str(cfg.data.get("eval_split", "test")))
    write_outputs(out_dir, results, export_maps)
    cache = getattr(model, "cache", None)
    if cache is not None:
        cache.log_summary()
        cache.prune()  # no-op unless model.cache.max_gb is set
    print(format_table(results.metrics))
    print(f"\nrun directory: {out_dir}")
    return results.metrics


def fit_and_test(cfg: DictConfig, trainer: L.Trainer, model: L.LightningModule, datamodule) -> TestResults | None:
    """``train``: fit (resuming from ``ckpt_path`` if given); ``test``: test the model just fitted,
    or the checkpoint at ``ckpt_path``. Returns the test results (None without testing)."""
    ckpt_path = cfg.get("ckpt_path")
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        ckpt_path = None  # test the model just fitted
    if not cfg.get("test", True):
        return None
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    results: TestResults = model.test_results
    for lg in trainer.loggers:
        if hasattr(lg, "log_test_results"):
            lg.log_test_results(results)
    return results
