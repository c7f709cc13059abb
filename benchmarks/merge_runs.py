"""Merge quality runs of one setting into one grid file: a grid made as several runs (one per k, or
per category, side by side on several machines) becomes the file one run would have written.

The runs must share every setting (variant, generator seed, size factor, defect size, test images,
overrides, nuisance, device) and no row (category, aligner, fusion, k, seed); the merged
``command`` names every run's command, so the file still says how each row was made.

    .venv/bin/python benchmarks/merge_runs.py OUT.json RUN.json RUN.json [...] [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from replace_grid_rows import row_key


def merge_runs(runs: list[dict], note: str = "") -> dict:
    """One grid: the runs' rows in order, their shared settings, ``note: cmd ; cmd ...`` as command."""
    if len(runs) < 2:
        raise ValueError(f"merging needs at least two runs, got {len(runs)}")
    settings = [{k: v for k, v in r.items() if k not in ("command", "results")} for r in runs]
    for i, s in enumerate(settings[1:], 1):
        differ = sorted(k for k in set(s) | set(settings[0]) if s.get(k) != settings[0].get(k))
        if differ:
            raise ValueError(f"run {i + 1} differs from run 1 in {', '.join(differ)}: merge only runs of one setting")
    seen: dict[tuple, int] = {}
    for i, r in enumerate(runs):
        for row in r["results"]:
            if row_key(row) in seen:
                raise ValueError(f"row {row_key(row)} is in run {seen[row_key(row)] + 1} and run {i + 1}: "
                                 "to replace rows use benchmarks/replace_grid_rows.py")
            seen[row_key(row)] = i
    command = " ; ".join(r["command"] for r in runs)
    return {**settings[0], "command": f"{note}: {command}" if note else command,
            "results": [row for r in runs for row in r["results"]]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--note", default="", help="said before the runs' commands in the merged command")
    args = ap.parse_args(argv)
    merged = merge_runs([json.loads(Path(p).read_text()) for p in args.runs], args.note)
    Path(args.out).write_text(json.dumps(merged, indent=1))
    print(f"{args.out}: {len(merged['results'])} rows from {len(args.runs)} runs")


if __name__ == "__main__":
    main()
