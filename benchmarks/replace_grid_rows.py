"""Replace rows of a quality grid by the rows of a re-run of some of its categories or shots.

A change that moves the scores of a few categories only (e.g. a feature that learns rules in two of
five) need not re-run the whole grid: ``benchmarks/quality_synthetic.py --categories ... --shots ...``
re-runs those, and this puts its rows in place of the grid's rows with the same category, aligner,
fusion, k and seed. The note and the re-run's command are appended to the grid's command, so the
file still says how every row was made. A re-run row the grid does not have is an error.

The runs' ``--dump`` files the same way (a dump holds one k, the re-run's dump may hold several):
a re-run category's runs replace the dump's runs of that category, with its labels, types and
defects, so every run of it the dump holds must be in the re-run.

    .venv/bin/python benchmarks/replace_grid_rows.py GRID.json RERUN.json [RERUN.json ...] --note TEXT
    .venv/bin/python benchmarks/replace_grid_rows.py DUMP.npz RERUN.npz [RERUN.npz ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def row_key(row: dict) -> tuple:
    """A grid row's run: (category, aligner, fusion, k, seed), as the dumps name it too."""
    return row["category"], row["aligner"], row["fusion"], row["k"], row["seed"]


def same_configuration(a: list[str], b: list[str]) -> bool:
    """Whether two lists of overrides compose the same configuration."""
    from omegaconf import OmegaConf
    from quality_synthetic import compose_config

    return OmegaConf.to_container(compose_config(a)) == OmegaConf.to_container(compose_config(b))


# Settings that result files written before they were recorded left out, at the values they ran with.
UNRECORDED = {"test_images": 12, "defect_scale": 1.0, "device": "cpu"}


def replace_rows(grid: dict, reruns: list[dict], note: str) -> dict:
    """``grid`` with each re-run row in place of its row (order kept) and ``note: commands`` appended.
    The re-runs must share the grid's settings (variant, sizes, overrides, ...); a re-run on another
    version of the generator is said in ``data`` (which rows are of which version)."""
    rows = {row_key(r): r for r in grid["results"]}
    versions: dict[str, set[str]] = {}  # another generator version -> the categories re-run on it
    for rerun in reruns:
        # Both files' settings, so that a setting only the re-run records (an older grid) is compared too.
        keys = (grid.keys() | rerun.keys()) - {"command", "results", "data"}
        differ = sorted(k for k in keys if grid.get(k, UNRECORDED.get(k)) != rerun.get(k, UNRECORDED.get(k)))
        if differ == ["overrides"] and same_configuration(grid["overrides"], rerun["overrides"]):
            differ = []  # e.g. a preset's overrides and the default they have become
        if differ:
            raise ValueError(f"the re-run differs from the grid in {', '.join(differ)}: re-run with the grid's settings")
        for row in rerun["results"]:
            if row_key(row) not in rows:
                raise KeyError(f"re-run row {row_key(row)} is not in the grid; re-run only rows the grid has")
            rows[row_key(row)] = row
        if rerun.get("data") and rerun["data"] != grid.get("data"):
            versions.setdefault(rerun["data"], set()).update(r["category"] for r in rerun["results"])
    command = f"{grid['command']} ; {note}: " + " ; ".join(r["command"] for r in reruns)
    out = {**grid, "command": command, "results": [rows[row_key(r)] for r in grid["results"]]}
    data = grid.get("data")
    for version, cats in versions.items():
        data = f"{data or 'earlier data'}; rows of {', '.join(sorted(cats))} re-run on {version}"
    return {**out, "data": data} if data is not None else out


def replace_dump_runs(dump: dict[str, np.ndarray], reruns: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``dump`` with each re-run category's runs (and its labels, types, defects) taken from the
    re-run; the re-run's runs the dump does not hold (other k) are left out."""
    def runs_of(d: dict, cat: str) -> set[str]:
        return {k.rsplit("/", 2)[0] for k in d if k.startswith(f"{cat}/") and k.count("/") == 6}

    out = dict(dump)
    for rerun in reruns:
        for cat in sorted({k.split("/")[0] for k in rerun}):
            have, new = runs_of(dump, cat), runs_of(rerun, cat)
            if not have:
                raise KeyError(f"the dump holds no run of {cat}; re-run only categories the dump has")
            if have - new:
                raise KeyError(f"the re-run lacks {sorted(have - new)} of {cat}: its images changed, so re-run "
                               f"every run of {cat} the dump holds")
            out = {k: v for k, v in out.items() if not k.startswith(f"{cat}/")}
            out.update({k: v for k, v in rerun.items()
                        if k.count("/") == 1 and k.startswith(f"{cat}/") or k.rsplit("/", 2)[0] in have})
    return out


def _load_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("reruns", nargs="+")
    ap.add_argument("--note", help="why these rows were re-run (kept in the grid's command; not for dumps)")
    args = ap.parse_args(argv)
    if args.grid.endswith(".npz"):
        reruns = [_load_npz(p) for p in args.reruns]
        np.savez_compressed(args.grid, **replace_dump_runs(_load_npz(args.grid), reruns))
        print(f"{args.grid}: runs of {', '.join(sorted({k.split('/')[0] for r in reruns for k in r}))} replaced")
        return
    if not args.note:
        ap.error("--note is required for a grid: why these rows were re-run")
    grid = json.loads(Path(args.grid).read_text())
    reruns = [json.loads(Path(p).read_text()) for p in args.reruns]
    Path(args.grid).write_text(json.dumps(replace_rows(grid, reruns, args.note), indent=1))
    print(f"{args.grid}: {sum(len(r['results']) for r in reruns)} rows replaced")


if __name__ == "__main__":
    main()
