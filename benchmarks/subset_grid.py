"""A configuration whose scores are a subset of a dumped run's, made from that run without a re-run.

``features=robust_lite2_foreground`` scores what ``features=robust_lite0_lite2`` scores but two of
the Lite2 copies, with the same code, so its rows at a dumped k follow from that run's dump: the
scores the configuration lacks leave every row and the dump, the fusion it composes is fitted
again on the remaining leave-one-out scores, the fused metrics (per type and per defect) are
recomputed, rows and dump take that fusion's name and the file its overrides and both commands.

    .venv/bin/python benchmarks/subset_grid.py GRID.json DUMP.npz --overrides backbone=... features=... \\
        --out NEW.json --dump-out NEW.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from locoad.utils import build

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_synthetic import compose_config, read_dumps  # noqa: E402
from refuse_grid import _metrics, dumped_run  # noqa: E402
from replace_grid_rows import row_key  # noqa: E402


def subset(grid: dict, dump_path: str, overrides: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """(grid, dump) of the configuration ``overrides`` compose, from a run that scored more."""
    cfg = compose_config(overrides, hydra=True)
    fusion_name, want = cfg.hydra.runtime.choices.fusion, set(cfg.features)
    runs, data = read_dumps([dump_path])
    dumped = {n for run in runs.values() for n in run["score"]}
    if not want <= dumped:
        raise ValueError(f"the configuration scores {sorted(want - dumped)}, which the dump lacks: run it instead")
    drop = dumped - want
    fused = {}
    rows = []
    for row in grid["results"]:
        key = row_key(row)
        run, cat = dumped_run(row, runs, data)
        score = {n: s for n, s in run["score"].items() if n in want}
        fused[key] = build(cfg.model.fusion).fit({n: s for n, s in run["loo"].items() if n in want},
                                                 shots=row["k"]).fuse(score)
        per_defect = "per_defect" in row["metrics"]["fused"]
        metrics = {n: m for n, m in row["metrics"].items() if n not in drop}
        rows.append({**row, "fusion": fusion_name, "metrics": {**metrics, "fused": _metrics(fused[key], cat, per_defect)}})
    out = {}
    with np.load(dump_path) as npz:
        dump = {k: npz[k] for k in npz.files}
    for name, value in dump.items():
        parts = name.split("/")
        if len(parts) == 7:
            cat, aligner, fusion, k, seed, kind, score = parts
            if score in drop:
                continue
            if score == "fused":
                value = np.asarray(fused[(cat, aligner, fusion, int(k), int(seed))])
            name = "/".join([cat, aligner, fusion_name, k, seed, kind, score])
        out[name] = value
    return {**grid, "overrides": list(overrides), "results": rows}, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("dump")
    ap.add_argument("--overrides", nargs="+", required=True, help="the configuration, as quality_synthetic.py takes it")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dump-out", required=True)
    args = ap.parse_args(argv)
    grid = json.loads(Path(args.grid).read_text())
    new, dump = subset(grid, args.dump, args.overrides)
    new["command"] = f"{grid['command']} ; benchmarks/subset_grid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(args.out).write_text(json.dumps(new, indent=1))
    np.savez_compressed(args.dump_out, **dump)
    print(f"{args.out}: {len(new['results'])} rows of {' '.join(args.overrides)}; {args.dump_out}")


if __name__ == "__main__":
    main()
