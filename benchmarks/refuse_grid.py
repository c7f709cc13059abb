"""Re-fuse a quality grid from its dumped per-feature scores with the configured fusion.

A change to the fusion alone (weights, ``log_features``, ``full_weight_shots``) leaves every
feature score as it was, so the grid files of ``benchmarks/quality_synthetic.py`` need not be
re-scored: this fits the fusion that the config composes now on each run's dumped leave-one-out
scores, fuses its dumped test scores and rewrites the fused metrics (per type and per defect).
The per-feature metrics, F1 floors and alignment accuracies are kept. A feature added to the
default, or one whose code or settings changed, can be scored alone on the same grid
(``quality_synthetic.py --only <name> [--overrides features.<name>.<key>=...] --dump new.npz``)
and its dump passed after the grid's own: its scores join (or replace) each run's, and its
metrics are computed afresh. ``--shots``: re-fuse only the rows of
these k (a change that moves no score at the other k, whose runs need no dumps); the rest are kept.
``--dump-out``: also write the joined dump (every array of the dumps, a later one's replacing an
earlier one's), the raw scores of the rows re-fused, as a new default's dump; each re-fused run's
``fused`` array is the new fusion's (a dump's own was made by the fusion of the run that wrote it).

    .venv/bin/python benchmarks/refuse_grid.py GRID.json DUMP.npz [DUMP.npz ...] [--out NEW.json]
        [--overrides fusion=loo ...] [--shots 4] [--dump-out JOINED.npz]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from locoad.metrics import image_metrics
from locoad.metrics.loco import per_defect_auroc
from locoad.utils import build

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_synthetic import compose_config, read_dumps  # noqa: E402
from replace_grid_rows import row_key  # noqa: E402


def _metrics(score, cat: dict, per_defect: bool) -> dict:
    metrics = image_metrics(score, cat["labels"], cat["types"])
    if per_defect:
        defects = [d.split("+") if d else [] for d in cat["defects"].tolist()]
        metrics["per_defect"] = per_defect_auroc(score, cat["labels"], defects)
    return metrics


def dumped_run(row: dict, runs: dict, data: dict) -> tuple[dict, dict]:
    """(the dumped scores of a grid row's run, its category's labels, types and defects)."""
    key = row_key(row)
    if key not in runs:
        raise KeyError(f"no dumped scores for {key}; pass the --dump file of the run that made this row")
    return runs[key], data[row["category"]]


def refuse(grid: dict, runs: dict, data: dict, fusion_cfg, rescored: frozenset[str] = frozenset(),
           shots: frozenset[int] | None = None) -> tuple[dict, dict[tuple, np.ndarray]]:
    """The grid with every row's fused metrics recomputed by a fresh ``fusion_cfg`` rule. A score
    dumped by another run (a feature run alone, e.g. ``--overrides features=<new>``, whose dump is
    passed after the grid's own) is fused in; its metrics are computed when the row has none or
    when its name is in ``rescored`` (a re-run replaced the grid's own scores). ``shots``: only
    the rows of these k are re-fused (None: every row). Also returned: each re-fused run's fused
    test scores, by its dump key (category, aligner, fusion, k, seed)."""
    rows, fused_runs = [], {}
    for row in grid["results"]:
        if shots is not None and row["k"] not in shots:
            rows.append(row)
            continue
        run, cat = dumped_run(row, runs, data)
        per_defect = "per_defect" in row["metrics"]["fused"]
        fused = fused_runs[row_key(row)] = build(fusion_cfg).fit(run["loo"], shots=row["k"]).fuse(run["score"])
        added = {n: _metrics(s, cat, per_defect) for n, s in run["score"].items()
                 if n not in row["metrics"] or n in rescored}
        rows.append({**row, "metrics": {**row["metrics"], **added, "fused": _metrics(fused, cat, per_defect)}})
    return {**grid, "results": rows}, fused_runs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("dumps", nargs="+")
    ap.add_argument("--out", default=None, help="default: overwrite GRID")
    ap.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides that pick the fusion")
    ap.add_argument("--shots", nargs="*", type=int, default=None, help="re-fuse only the rows of these k (default: all)")
    ap.add_argument("--dump-out", default=None, help="also write the joined dump (later dumps' arrays replacing earlier ones')")
    args = ap.parse_args(argv)
    grid = json.loads(Path(args.grid).read_text())
    runs, data = read_dumps(args.dumps)
    rescored = frozenset(n for r in read_dumps(args.dumps[1:])[0].values() for n in r["score"])  # the later dumps'
    shots = None if args.shots is None else frozenset(args.shots)
    out, fused = refuse(grid, runs, data, compose_config(args.overrides).model.fusion, rescored, shots)
    out["command"] = f"{grid['command']} ; benchmarks/refuse_grid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(args.out or args.grid).write_text(json.dumps(out, indent=1))
    print(f"{args.out or args.grid}: {len(fused)} of {len(out['results'])} rows re-fused")
    if args.dump_out:
        joined: dict[str, np.ndarray] = {}
        for path in args.dumps:
            with np.load(path) as npz:
                joined.update({key: npz[key] for key in npz.files})
        joined.update({"/".join(map(str, key)) + "/score/fused": score for key, score in fused.items()})
        np.savez_compressed(args.dump_out, **joined)
        print(f"{args.dump_out}: the joined scores")


if __name__ == "__main__":
    main()
