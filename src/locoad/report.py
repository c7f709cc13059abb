"""``locoad-report DIR``: one table and a few plots from every finished run under DIR.

Each job folder holding ``metrics.json`` and ``config.yaml`` (what :func:`locoad.run.run` writes)
becomes a row; Hydra's ``.hydra/hydra.yaml`` supplies the config group choices (aligner=nearest,
features=competition, ...) when present, else they are read off the resolved config. Rows that
differ only in ``data.seed`` are averaged (mean ± std). Writes into ``DIR/report`` (``--out``):
``runs.csv`` (one row per job), ``summary.csv`` / ``summary.md`` and ``plots/*.png``. Any other
config value that differs between runs of the same choices (an override such as
``features.composition.top_n=3``, Optuna's fusion weights, another ``data.root``) goes into a
``setting`` column and keeps those runs apart; only paths, loggers, caches and the like are
ignored. For an
``experiment=vand_fewshot`` sweep also ``vand.md`` (mean F1-max per k and category, normalised
AUFC, the published few-shot anchors), printed too.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from locoad.nested import flat, is_number

log = logging.getLogger(__name__)

GROUPS = ("model", "segmenter", "aligner", "backbone", "features", "fusion")
FACTORS = (*GROUPS, "category", "k_shot")
SEED = "seed"
SETTING = "setting"
# Config entries that never change a run's results (where it writes, how it logs and caches) or
# that are the replicate itself (the seeds): runs that differ only in these are averaged.
IGNORED = ("logger", "callbacks", "paths", "hydra", "run_name", "run_tags", "tags", "task_name",
           "optimized_metric", "export", "evaluation", "ckpt_path", "skip_if_done", "model.cache.root",
           "model.cache.enabled", "model.cache.scores", "model.cache.max_gb", "model.cache.min_free_gb",
           "data.num_workers", "trainer.default_root_dir", "trainer.enable_progress_bar",
           "trainer.enable_model_summary", "trainer.log_every_n_steps", "data.seed", "seed")
# Plots written when the factor takes at least two values across the runs.
PLOTS = ("aligner", "features", "k_shot", "category", "fusion", "backbone", "segmenter", "model")


def _choices(job: Path) -> dict[str, str]:
    """Hydra's config group choices for the job (``.hydra/hydra.yaml``), if it was kept."""
    hydra_yaml = job / ".hydra" / "hydra.yaml"
    if not hydra_yaml.is_file():
        return {}
    try:
        doc = yaml.safe_load(hydra_yaml.read_text()) or {}
    except yaml.YAMLError:
        return {}
    choices = doc.get("hydra", {}).get("runtime", {}).get("choices", {}) or {}
    return {k: str(v) for k, v in choices.items() if "@" not in k and v is not None}


def _short_target(node: Any) -> str | None:
    target = node.get("_target_") if isinstance(node, dict) else None
    return target.rsplit(".", 1)[-1] if target else None


def describe(job: Path, cfg: dict) -> dict[str, Any]:
    """Factor columns of one job: group choices, category, k shots, seed."""
    choices = _choices(job)
    model_cfg = cfg.get("model") or {}
    data = cfg.get("data") or {}
    row: dict[str, Any] = {}
    for group in GROUPS:
        value = choices.get(group)
        if value is None:
            node = cfg.get(group)
            value = "+".join(node) if group == "features" and isinstance(node, dict) else _short_target(node)
        row[group] = value
    if "aligner" not in model_cfg:
        # Not a segment-and-align model (e.g. ULSAD): those groups are composed but unused.
        for group in ("segmenter", "aligner", "features", "fusion"):
            row[group] = "n/a"
        bb = model_cfg.get("backbone", row["backbone"])
        if isinstance(bb, dict):  # a backbone config (ULSAD): the network it builds
            bb = bb.get("model_name") or bb.get("variant") or row["backbone"]
        row["backbone"] = str(bb)
    row["category"] = data.get("category")
    row["k_shot"] = data.get("k_shot") if data.get("k_shot") else "full"
    row[SEED] = data.get("seed")
    row["experiment"] = cfg.get("experiment_name") or choices.get("experiment")
    return row


def leaves(cfg: dict) -> dict[str, str]:
    """Every entry of a resolved config as ``dotted.key -> value`` (lists as JSON), the
    :data:`IGNORED` ones left out."""
    return {k: json.dumps(v, sort_keys=True, default=str) if isinstance(v, list) else str(v)
            for k, v in flat(cfg).items() if not any(k == i or k.startswith(i + ".") for i in IGNORED)}


def settings(runs: pd.DataFrame, configs: list[dict[str, str]]) -> list[str]:
    """Per run, the config entries that differ among runs of the same experiment and choices
    (``key=value, ...``; empty where they all agree), over every category and k: compared within
    a (category, k) cell, a run's label depended on which other runs shared its cell, so one
    setting got two labels and split the few-shot table."""
    keys = [c for c in ("experiment", *GROUPS) if c in runs.columns]
    out = [""] * len(runs)
    if runs.empty:
        return out
    for _, idx in runs.reset_index(drop=True)[keys].fillna("–").groupby(keys, sort=False, dropna=False).groups.items():
        rows = [configs[i] for i in idx]
        names = sorted({n for r in rows for n in r} - {"data.category", "data.k_shot"})  # columns of their own
        varying = [n for n in names if len({r.get(n) for r in rows}) > 1]
        for i in idx:
            out[i] = ", ".join(f"{n}={configs[i].get(n, '–')}" for n in varying)
    return out


def _score_name(metrics: dict, preferred: str = "fused") -> str | None:
    scores = [k for k, v in metrics.items() if isinstance(v, dict) and "f1_max" in v]
    return preferred if preferred in scores else (scores[0] if scores else None)


def _f(v: Any) -> float:
    return float(v) if is_number(v) else math.nan


def unfinished(root: Path) -> list[str]:
    """Job folders under ``root`` that a run started (its config.yaml) and did not finish (no
    metrics.json): failed, killed or still running. A table over seeds without them is over fewer."""
    out = []
    for cfg_file in sorted(root.rglob("config.yaml")):
        job = cfg_file.parent
        parts = job.relative_to(root).parts
        if any(p.startswith(".") for p in parts) or "report" in parts or (job / "metrics.json").is_file():
            continue  # Hydra's own .hydra/config.yaml; this report's folder; a finished job
        out.append(str(job.relative_to(root)) or ".")
    return out


def collect(root: Path) -> pd.DataFrame:
    """One row per finished job under ``root`` (factor columns + metric columns)."""
    rows, configs = [], []
    for metrics_file in sorted(root.rglob("metrics.json")):
        job = metrics_file.parent
        cfg_file = job / "config.yaml"
        if not cfg_file.is_file() or "report" in job.relative_to(root).parts:
            continue
        try:
            metrics = json.loads(metrics_file.read_text())
            cfg = yaml.safe_load(cfg_file.read_text()) or {}
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            log.warning("skipping %s: %s", job, e)
            continue
        row = {"run": str(job.relative_to(root)) or ".", **describe(job, cfg)}
        configs.append(leaves(cfg))
        main = _score_name(metrics)
        row["score"] = main
        m = metrics.get(main, {}) if main else {}
        row["f1_max"], row["auroc"] = _f(m.get("f1_max")), _f(m.get("auroc"))
        for kind in ("logical", "structural"):
            row[f"{kind}_f1_max"] = _f((m.get(kind) or {}).get("f1_max"))
            row[f"{kind}_auroc"] = _f((m.get(kind) or {}).get("auroc"))
        row["pixel_auroc"] = _f(m.get("pixel_auroc"))
        spro = ((metrics.get("pixel") or {}).get("au_spro") or {}).get("mean") or {}
        row["au_spro_0.05"] = _f(spro.get("0.05"))  # the main map's AU-sPRO@0.05, logical/structural mean
        row["alignment_accuracy"] = _f((metrics.get("alignment") or {}).get("accuracy"))
        for name, entry in metrics.items():  # every single score's F1-max, for per-feature views
            if isinstance(entry, dict) and "f1_max" in entry and name != main:
                row[f"f1_max/{name}"] = _f(entry.get("f1_max"))
        rows.append(row)
    runs = pd.DataFrame(rows)
    if not runs.empty:
        runs[SETTING] = settings(runs, configs)
    return runs


METRICS = ("f1_max", "auroc", "au_spro_0.05", "logical_f1_max", "structural_f1_max", "pixel_auroc",
           "alignment_accuracy")
VAND = "vand_fewshot"
# Published few-shot anchors (VAND 2023 challenge, MVTec LOCO AD few-shot track): printed beside
# the measured figures, never computed here.
VAND_PUBLISHED = (("all-anomalous", 0.773), ("organisers' WinCLIP sample", 0.780), ("best entry", 0.894))


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over ``data.seed`` for every combination of the other factors and
    settings. ``n_seeds`` counts distinct seeds; a group that holds one seed twice (a rerun)
    is averaged over its runs and said once in the log."""
    keys = [c for c in ("experiment", *FACTORS, SETTING, "score") if c in runs.columns]
    metrics = [c for c in METRICS if c in runs.columns and runs[c].notna().any()]
    grouped = runs.fillna({k: "–" for k in keys}).groupby(keys, sort=True, dropna=False)
    mean, std = grouped[metrics].mean(), grouped[metrics].std(ddof=0)
    out = mean.add_suffix("_mean").join(std.add_suffix("_std"))
    out["n_seeds"] = grouped[SEED].nunique(dropna=False) if SEED in runs.columns else grouped.size()
    reruns = int((grouped.size() > out["n_seeds"]).sum())
    if reruns:
        log.warning("report: %d row(s) of the summary average runs with the same data.seed and settings "
                    "(reruns?); runs.csv lists them", reruns)
    return out.reset_index()


def to_markdown(summary: pd.DataFrame) -> str:
    """Markdown table, metrics as ``mean ± std`` (std omitted for single runs)."""
    metric_names = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    keys = [c for c in summary.columns if not c.endswith(("_mean", "_std")) and c != "n_seeds"]
    # Columns that never vary add nothing to the table: drop them (all runs share the value).
    keys = [k for k in keys if summary[k].nunique(dropna=False) > 1] or keys[:1]
    head = [*keys, *metric_names, "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [str(r[k]) for k in keys]
        for m in metric_names:
            mean, std = r[f"{m}_mean"], r[f"{m}_std"]
            if pd.isna(mean):
                cells.append("–")
            elif r["n_seeds"] > 1 and not pd.isna(std):
                cells.append(f"{mean:.3f} ± {std:.3f}")
            else:
                cells.append(f"{mean:.3f}")
        cells.append(str(int(r["n_seeds"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def aufc(ks: Sequence[float], f1: Sequence[float]) -> float:
    """Normalised area under the F1-max-vs-k curve: sklearn ``auc`` over k rescaled to [0, 1]."""
    from sklearn.metrics import auc

    k, y = np.asarray(ks, dtype=float), np.asarray(f1, dtype=float)
    if len(k) < 2 or np.isnan(y).any():
        return math.nan
    order = np.argsort(k)
    k, y = k[order], y[order]
    return float(auc((k - k[0]) / (k[-1] - k[0]), y))


def vand_table(runs: pd.DataFrame) -> str | None:
    """Markdown: mean F1-max (over seeds) per k and category, normalised AUFC, published anchors.

    None unless the runs hold ``experiment=vand_fewshot`` jobs.
    """
    if "experiment" not in runs or not (runs["experiment"] == VAND).any():
        return None
    v = runs[(runs["experiment"] == VAND) & (runs["k_shot"] != "full")].copy()
    v["k_shot"] = v["k_shot"].astype(int)
    # Runs of another model, backbone or override are another table, never averaged with these.
    by = [c for c in (*GROUPS, SETTING) if c in v.columns and v[c].astype(str).nunique() > 1]
    if by:
        parts = []
        for values, sub in v.groupby(by, sort=True, dropna=False):
            values = values if isinstance(values, tuple) else (values,)
            title = ", ".join(f"{c}: {x}" for c, x in zip(by, values) if str(x))
            parts.append(f"**{title or 'defaults'}**\n\n" + _vand_markdown(sub))
        return "\n\n".join(parts)
    return _vand_markdown(v)


def _vand_markdown(v: pd.DataFrame) -> str:
    """The VAND table of one setting's runs (``k_shot`` as integers)."""
    mean = v.groupby(["category", "k_shot"])["f1_max"].mean().unstack("k_shot").sort_index(axis=1)
    seeds = v.groupby(["category", "k_shot"])["seed"].nunique().unstack("k_shot")
    ks = list(mean.columns)
    mean["AUFC"] = [aufc(ks, mean.loc[c, ks].to_numpy()) for c in mean.index]
    # A sweep still running (or with failed jobs) lacks some (category, k) cells: the mean row is
    # over the categories that have every k, so that its columns average the same categories.
    complete = mean[ks].notna().all(axis=1)
    mean.loc["mean"] = mean[complete].mean(axis=0)
    head = ["category", *[f"k={k}" for k in ks], "AUFC (normalised)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cat, r in mean.iterrows():
        cells = ["–" if pd.isna(x) else f"{x:.3f}" for x in r.to_numpy()]
        lines.append(f"| {'**mean**' if cat == 'mean' else cat} | " + " | ".join(cells) + " |")
    n = sorted({int(x) for x in seeds.to_numpy().ravel() if pd.notna(x)})  # NaN: a cell without runs
    plural = "s" if max(n) > 1 else ""
    if not complete.all():
        lacking = "; ".join(f"{c} lacks k={', '.join(str(k) for k in ks if pd.isna(mean.loc[c, k]))}"
                            for c in complete.index[~complete])
        lines += ["", f"No finished run yet for some cells ({lacking}): **mean** is over the "
                  f"{int(complete.sum())} categories with every k."]
    lines += ["", f"Image-level F1-max, mean over {'/'.join(str(x) for x in n)} shot-draw seed{plural} "
              f"(seeds {', '.join(str(s) for s in sorted(v['seed'].unique()))}); AUFC = sklearn auc over k "
              "rescaled to [0, 1].",
              "", "Published few-shot anchors (VAND 2023, MVTec LOCO AD; published figures, not measured "
              "here, comparable only to runs on the real data): "
              + ", ".join(f"{name} {value:.3f}" for name, value in VAND_PUBLISHED) + "."]
    return "\n".join(lines)


def _sort_key(values: pd.Index) -> pd.Index:
    return pd.Index([(0, int(v), "") if str(v).isdigit() else (1, 0, str(v)) for v in values])


def plot(runs: pd.DataFrame, out_dir: Path, metric: str = "f1_max") -> list[Path]:
    """``<metric>_by_<factor>.png`` for every factor with at least two values."""
    import matplotlib

    matplotlib.use("Agg")  # headless: clusters, CI, notebooks run by nbclient
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for factor in PLOTS:
        if factor not in runs.columns or runs[factor].astype(str).nunique() < 2:
            continue
        data = runs.assign(**{factor: runs[factor].astype(str)})
        fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * data[factor].nunique() + 2), 3.2))
        if factor == "k_shot" and "category" in data and data["category"].nunique() > 1:
            # The few-shot curve: one line per category, mean ± std over everything else.
            # One numeric axis in k's order: on a text axis each category's line added its k in the
            # order it met them, so a category with fewer k put them out of order.
            ks = pd.Index(data[factor].unique())
            ks = ks[_sort_key(ks).argsort()]
            for cat, sub in data.groupby("category"):
                g = sub.groupby(factor)[metric].agg(["mean", "std"])
                x = ks.get_indexer(g.index)
                o = np.argsort(x)
                ax.errorbar(x[o], g["mean"].to_numpy()[o], yerr=g["std"].fillna(0).to_numpy()[o], marker="o",
                            capsize=3, label=cat)
            ax.set_xticks(range(len(ks)), list(ks))
            ax.legend(fontsize=7)
        else:
            g = data.groupby(factor)[metric].agg(["mean", "std"])
            g = g.iloc[_sort_key(g.index).argsort()] if factor == "k_shot" else g.sort_values("mean")
            ax.bar(g.index, g["mean"], yerr=g["std"].fillna(0), capsize=3, color="tab:blue")
            ax.tick_params(axis="x", rotation=30)
        ax.set_xlabel(factor)
        ax.set_ylabel(metric.replace("_", "-"))
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{metric} by {factor} (mean ± std over runs)", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{metric}_by_{factor}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def report(root: Path, out: Path | None = None) -> dict[str, Path]:
    """Write runs.csv, summary.csv, summary.md and plots for ``root``; return their paths."""
    from locoad.io import atomic_write_csv, atomic_write_text

    root = Path(root)
    out = Path(out) if out else root / "report"
    runs = collect(root)
    if runs.empty:
        raise SystemExit(f"no finished runs (metrics.json + config.yaml) under {root}")
    summary = summarise(runs)
    table = to_markdown(summary)
    missing = unfinished(root)
    if missing:
        said = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        note = f"{len(missing)} job(s) without metrics.json (failed, killed or still running), not in the table: {said}"
        log.warning("%s", note)
        table += "\n\n" + note
    paths = {
        "runs": atomic_write_csv(out / "runs.csv", runs),
        "summary_csv": atomic_write_csv(out / "summary.csv", summary),
        "summary_md": atomic_write_text(out / "summary.md", table + "\n"),
    }
    vand = vand_table(runs)
    if vand is not None:
        paths["vand_md"] = atomic_write_text(out / "vand.md", vand + "\n")
    for p in plot(runs, out / "plots"):
        paths[p.stem] = p
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="locoad-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="a multirun folder, or outputs/ (searched recursively)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR/report)")
    args = parser.parse_args(argv)
    paths = report(args.dir, args.out)
    print(paths["summary_md"].read_text())
    if "vand_md" in paths:
        print("VAND few-shot protocol\n\n" + paths["vand_md"].read_text())
    for name, p in paths.items():
        print(f"{name}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
