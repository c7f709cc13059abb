"""Replace rows of a quality grid by the rows of a re-run of some of its categories or shots.

A change that moves the scores of a few categories only (e.g. a feature that learns rules in two of
five) need not re-run the whole grid: ``benchmarks/quality_synthetic.py --categories ... --shots ...``
re-runs those, and this puts its rows in place of the grid's rows with the same category, aligner,
fusion, k and seed. The note and the re-run's command are appended to the grid's command, so the
file still says how every row was made. A re-run row the grid does not have is an error.

    .venv/bin/python benchmarks/replace_grid_rows.py GRID.json RERUN.json [RERUN.json ...] --note TEXT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row_key(row: dict) -> tuple:
    """A grid row's run: (category, aligner, fusion, k, seed), as the dumps name it too."""
    return row["category"], row["aligner"], row["fusion"], row["k"], row["seed"]


def replace_rows(grid: dict, reruns: list[dict], note: str) -> dict:
    """``grid`` with each re-run row in place of its row (order kept) and ``note: commands`` appended."""
    rows = {row_key(r): r for r in grid["results"]}
    for rerun in reruns:
        for row in rerun["results"]:
            if row_key(row) not in rows:
                raise KeyError(f"re-run row {row_key(row)} is not in the grid; re-run only rows the grid has")
            rows[row_key(row)] = row
    command = f"{grid['command']} ; {note}: " + " ; ".join(r["command"] for r in reruns)
    return {**grid, "command": command, "results": [rows[row_key(r)] for r in grid["results"]]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("reruns", nargs="+")
    ap.add_argument("--note", required=True, help="why these rows were re-run (kept in the grid's command)")
    args = ap.parse_args(argv)
    grid = json.loads(Path(args.grid).read_text())
    reruns = [json.loads(Path(p).read_text()) for p in args.reruns]
    Path(args.grid).write_text(json.dumps(replace_rows(grid, reruns, args.note), indent=1))
    print(f"{args.grid}: {sum(len(r['results']) for r in reruns)} rows replaced")


if __name__ == "__main__":
    main()
