"""The result tables of README.md and docs/results.md, rendered from the files under benchmarks/results/.

After a re-run, ``python benchmarks/readme_tables.py`` rewrites every table below in its document
from its files (row labels and the text around the tables stay as written); ``--check`` only names
the tables that are stale and exits 1 (``tests/test_readme_results.py`` runs the same check).

    .venv/bin/python benchmarks/readme_tables.py [--check]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from quality_synthetic import markdown_fused

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"
DETAILS = REPO / "docs" / "results.md"  # the tables beyond the quality tables

# The default's quality table: row label (its start) -> its grid file. Cells: fused AUROC at
# k = 1 / 2 / 4 / 8, then the lowest logical / structural part at k = 4.
GRID_HEADER = "| data | k = 1 | k = 2 | k = 4 | k = 8 |"
GRID_ROWS = {
    "clean (generator seed 0": "quality_default_clean_grid.json",
    "varied captures (photo-like": "quality_default_varied_grid.json",
    "held-out scene family, photo-like": "quality_default_heldout_grid.json",
    "held-out scene family, clean": "quality_default_heldout_clean_grid.json",
    "generator seed 101": "quality_default_gen101_grid.json",
    "workbench family, photo-like": "quality_default_workbench_grid.json",
    "workbench family, clean": "quality_default_workbench_clean_grid.json",
}
# The capture-size table: row label -> (the × 0.5 grid, the × 1.0 file). Cells: × 0.5 and × 1.0
# at k = 4, the same at k = 8, then the lowest part at × 1.0, k = 4 (over the seeds / seed 0).
SIZE_HEADER = "| data | × 0.5, k = 4 | × 1.0, k = 4 | × 0.5, k = 8 | × 1.0, k = 8 |"
SIZE_ROWS = {
    "varied captures (development)": ("quality_default_varied_grid.json", "quality_default_varied_x1.0.json"),
    "held-out family, photo-like": ("quality_default_heldout_grid.json", "quality_default_heldout_x1.0.json"),
    "held-out family, clean": ("quality_default_heldout_clean_grid.json", "quality_default_heldout_clean_x1.0.json"),
}
# The defect-size table: row label -> (the grid, the file with defects × 0.4). Cells: k = 4 at
# × 1 and × 0.4, then the lowest structural part at × 0.4.
DEFECT_HEADER = "| data | defects × 1, k = 4 | defects × 0.4, k = 4 |"
DEFECT_ROWS = {
    "clean (development)": ("quality_default_clean_grid.json", "quality_default_clean_d0.4.json"),
    "varied captures (development)": ("quality_default_varied_grid.json", "quality_default_varied_d0.4.json"),
}
# Whole tables rendered by quality_synthetic.markdown_fused: the README text just before each -> its grid.
PER_CATEGORY = {
    "Per category, clean data": "quality_default_clean_grid.json",
    "<summary>Per category: varied captures": "quality_default_varied_grid.json",
    "<summary>Per category: held-out scene family, photo-like": "quality_default_heldout_grid.json",
    "<summary>Per category: held-out scene family, clean": "quality_default_heldout_clean_grid.json",
    "<summary>Per category: generator seed 101": "quality_default_gen101_grid.json",
    "<summary>Per category: workbench family, photo-like": "quality_default_workbench_grid.json",
    "<summary>Per category: workbench family, clean": "quality_default_workbench_clean_grid.json",
}
# The held-out family's fused AUROC per defect: photo-like captures' columns, then clean ones'.
PER_DEFECT_MARKER = "Per defect on the held-out family"
PER_DEFECT = {"photo-like": "quality_default_heldout_grid.json", "clean": "quality_default_heldout_clean_grid.json"}


@cache
def results(name: str) -> tuple[dict, ...]:
    """The rows of a result file (read once): one configuration's, or the tables would average
    over aligners or fusions as if they were seeds."""
    rows = tuple(json.loads((RESULTS / name).read_text())["results"])
    configs = sorted({(r.get("aligner"), r.get("fusion")) for r in rows}, key=str)
    if len(configs) > 1:
        raise ValueError(f"{name} holds rows of several aligners / fusions {configs}: a README table shows one "
                         "configuration; keep one per file (quality_synthetic.py --aligners A --fusions F)")
    return rows


def mean_auroc(name: str, k: int) -> float:
    values = [r["metrics"]["fused"]["auroc"] for r in results(name) if r["k"] == k]
    if not values:
        raise ValueError(f"{name} has no k = {k} rows, which the README's table shows: run them and merge "
                         "them in (benchmarks/merge_runs.py)")
    return statistics.mean(values)


def part_aurocs(name: str, k: int = 4, seed: int | None = None) -> dict[tuple[str, str], float]:
    """(category, part) -> fused logical / structural AUROC at ``k``: the mean over seeds, or one ``seed``'s."""
    rows = [r for r in results(name) if r["k"] == k and seed in (None, r["seed"])]
    return {(c, part): statistics.mean(r["metrics"]["fused"][part]["auroc"] for r in rows if r["category"] == c)
            for c in sorted({r["category"] for r in rows}) for part in ("logical", "structural")}


def lowest_part(name: str, part: str, k: int = 4) -> str:
    """"AUROC category" of the category whose ``part`` AUROC at ``k`` (mean over seeds) is lowest."""
    (category, _), value = min(((key, v) for key, v in part_aurocs(name, k).items() if key[1] == part),
                               key=lambda item: item[1])
    return f"{value:.2f} {category}"


def lowest_cell(name: str, k: int = 4, seed: int | None = None) -> str:
    """"AUROC category part" of the lowest logical or structural AUROC at ``k``."""
    (category, part), value = min(part_aurocs(name, k, seed).items(), key=lambda item: item[1])
    return f"{value:.2f} {category} {part}"


def grid_cells(name: str) -> list[str]:
    return [*(f"{mean_auroc(name, k):.3f}" for k in (1, 2, 4, 8)),
            f"{lowest_part(name, 'logical')} / {lowest_part(name, 'structural')}"]


def size_cells(files: tuple[str, str]) -> list[str]:
    half, full = files
    return [f"{mean_auroc(f, k):.3f}" for k in (4, 8) for f in (half, full)] + \
        [f"{lowest_cell(full)} / {lowest_cell(full, seed=0)}"]


def defect_cells(files: tuple[str, str]) -> list[str]:
    grid, small = files
    return [f"{mean_auroc(grid, 4):.3f}", f"{mean_auroc(small, 4):.3f}", lowest_part(small, "structural")]


def per_defect_table() -> list[str]:
    """category | defect | images | each capture kind's fused AUROC per k (mean over seeds)."""
    by_kind = {}
    for kind, name in PER_DEFECT.items():
        cells: dict[tuple[str, str], dict[int, list[float]]] = {}
        counts: dict[tuple[str, str], int] = {}
        for r in results(name):
            for defect, m in r["metrics"]["fused"].get("per_defect", {}).items():
                cells.setdefault((r["category"], defect), {}).setdefault(r["k"], []).append(m["auroc"])
                counts[(r["category"], defect)] = m["n"]
        by_kind[kind] = (cells, counts)
    ks = sorted({r["k"] for name in PER_DEFECT.values() for r in results(name)})
    columns = [(kind, k) for kind in PER_DEFECT for k in ks]
    lines = ["| category | defect | images | " + " | ".join(f"{kind} k={k}" for kind, k in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    first = next(iter(by_kind.values()))
    for key in sorted(first[0]):
        vals = " | ".join(f"{np.mean(by_kind[kind][0][key][k]):.2f}" for kind, k in columns)
        lines.append(f"| {key[0]} | {key[1]} | {first[1][key]} | {vals} |")
    return lines


def table_span(lines: list[str], marker: str, header: str) -> tuple[int, int]:
    """[start, end) of the first table starting with ``header`` after the one line holding ``marker``."""
    at = [i for i, line in enumerate(lines) if marker in line]
    if len(at) != 1:
        raise ValueError(f"the document should hold {marker!r} on one line, found {len(at)}")
    start = next((i for i in range(at[0], len(lines)) if lines[i].startswith(header)), None)
    if start is None:
        raise ValueError(f"no table starting {header!r} after {marker!r} in the document")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return start, end


def with_cells(table: list[str], rows: dict, cells: Callable) -> list[str]:
    """``table`` with the leading value cells of each row whose label starts with a key of ``rows``
    rendered by ``cells(rows[key])``; a row no key names is an error (it would go unchecked)."""
    out = table[:2]
    for line in table[2:]:
        label, *old = (c.strip() for c in line.strip().strip("|").split("|"))
        keys = [key for key in rows if label.startswith(key)]
        if len(keys) != 1:
            raise ValueError(f"README row {label!r} matches {len(keys)} result files in readme_tables.py; name it once")
        new = cells(rows[keys[0]])
        out.append("| " + " | ".join([label, *new, *old[len(new):]]) + " |")
    return out


def tables() -> dict[str, tuple[Path, str, str, Callable[[list[str]], list[str]]]]:
    """Table name -> (its document, marker, header, table lines -> rendered lines)."""
    spec = {
        "quality": (README, GRID_HEADER, GRID_HEADER, lambda t: with_cells(t, GRID_ROWS, grid_cells)),
        "capture size": (DETAILS, SIZE_HEADER, SIZE_HEADER, lambda t: with_cells(t, SIZE_ROWS, size_cells)),
        "defect size": (DETAILS, DEFECT_HEADER, DEFECT_HEADER, lambda t: with_cells(t, DEFECT_ROWS, defect_cells)),
        "per defect, held-out family": (DETAILS, PER_DEFECT_MARKER, "| category | defect |",
                                        lambda t: per_defect_table()),
    }
    for marker, name in PER_CATEGORY.items():
        spec[f"per category: {name}"] = (README, marker, "| category | k |",
                                         lambda t, name=name: markdown_fused(list(results(name))).splitlines())
    return spec


def render(text: str, doc: Path = README, only: str | None = None) -> str:
    """``text`` (the document ``doc``) with every table of it (or the one named ``only``) rendered from its files."""
    lines = text.splitlines()
    for name, (where, marker, header, fill) in tables().items():
        if where == doc and only in (None, name):
            start, end = table_span(lines, marker, header)
            lines[start:end] = fill(lines[start:end])
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def stale(texts: dict[Path, str]) -> list[str]:
    """The names of the tables whose text (``texts``: document -> its text) is not what their files render."""
    return [name for name, (doc, *_) in tables().items() if render(texts[doc], doc, only=name) != texts[doc]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only name the stale tables (exit 1 if any)")
    args = ap.parse_args(argv)
    texts = {doc: doc.read_text() for doc in (README, DETAILS)}
    names = stale(texts)
    if args.check:
        print("\n".join(f"stale: {n}" for n in names) or "every result table matches its files")
        sys.exit(1 if names else 0)
    for doc, text in texts.items():
        doc.write_text(render(text, doc))
    print(f"{len(names)} tables re-rendered" + (f" ({', '.join(names)})" if names else ""))


if __name__ == "__main__":
    main()
