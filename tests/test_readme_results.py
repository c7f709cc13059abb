"""The README's quality table says what the result files under benchmarks/results/ hold: a grid
re-run without the README (or the README edited without a re-run) fails here."""

from __future__ import annotations

import json
import statistics

import pytest
from quality_synthetic import compose_config, markdown_fused

from conftest import REPO

# README row label (its start) -> the grid file it summarises
ROWS = {
    "clean (generator seed 0": "quality_default_clean_grid.json",
    "varied captures (photo-like": "quality_default_varied_grid.json",
    "held-out scene family, photo-like": "quality_default_heldout_grid.json",
    "held-out scene family, clean": "quality_default_heldout_clean_grid.json",
    "generator seed 101": "quality_default_gen101_grid.json",
    "workbench family, photo-like": "quality_default_workbench_grid.json",
    "workbench family, clean": "quality_default_workbench_clean_grid.json",
}
HEADER = "| data | k = 1 | k = 2 | k = 4 | k = 8 |"


def table_after(marker: str, header: str) -> list[str]:
    """The lines of the README's first table after ``marker`` (held once) whose first line starts
    with ``header``."""
    text = (REPO / "README.md").read_text()
    assert text.count(marker) == 1, f"README should hold {marker!r} once"
    lines = text[text.index(marker):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def readme_rows(header: str = HEADER) -> dict[str, list[str]]:
    """Label -> the value cells of the README table that starts with ``header``."""
    cells = ([c.strip() for c in line.strip("|").split("|")] for line in table_after(header, header)[2:])
    return {row[0]: row[1:] for row in cells}


def readme_row(header: str, label: str) -> list[str]:
    """The value cells of the one row of that table whose label starts with ``label``."""
    matches = [cells for name, cells in readme_rows(header).items() if name.startswith(label)]
    assert len(matches) == 1, f"README's table {header!r} has no single row starting {label!r}"
    return matches[0]


def grid_means(path) -> dict[int, float]:
    results = json.loads(path.read_text())["results"]
    ks = sorted({r["k"] for r in results})
    return {k: statistics.mean(r["metrics"]["fused"]["auroc"] for r in results if r["k"] == k) for k in ks}


def part_aurocs(path, k: int = 4, seed: int | None = None) -> dict[tuple[str, str], float]:
    """(category, part) -> fused logical / structural AUROC at ``k``: the mean over seeds, or one
    ``seed``'s."""
    rows = [r for r in json.loads(path.read_text())["results"] if r["k"] == k and seed in (None, r["seed"])]
    return {(c, part): statistics.mean(r["metrics"]["fused"][part]["auroc"] for r in rows if r["category"] == c)
            for c in {r["category"] for r in rows} for part in ("logical", "structural")}


def lowest_part(path, part: str, k: int = 4) -> str:
    """"AUROC category" of the category whose fused ``part`` (logical / structural) AUROC at ``k``,
    mean over seeds, is lowest, as the README writes it."""
    (category, _), value = min(((key, v) for key, v in part_aurocs(path, k).items() if key[1] == part),
                               key=lambda item: item[1])
    return f"{value:.2f} {category}"


@pytest.mark.parametrize("label", list(ROWS))
def test_readme_quality_table_matches_the_result_files(label):
    cells = readme_row(HEADER, label)[:4]
    means = grid_means(REPO / "benchmarks" / "results" / ROWS[label])
    assert cells == [f"{means[k]:.3f}" for k in (1, 2, 4, 8)], (
        f"README row {label!r} says {cells}; {ROWS[label]} holds "
        f"{[round(means[k], 3) for k in (1, 2, 4, 8)]}: re-render the table from the file")


@pytest.mark.parametrize("label", list(ROWS))
def test_readme_lowest_parts_match_the_result_files(label):
    """The table's last column: the lowest logical and structural part at k = 4."""
    path = REPO / "benchmarks" / "results" / ROWS[label]
    want = f"{lowest_part(path, 'logical')} / {lowest_part(path, 'structural')}"
    assert readme_row(HEADER, label)[4] == want, f"README row {label!r}'s lowest parts are not {want!r}"


def test_the_table_names_every_row_it_has():
    """A row added to the README's table without a file here would go unchecked."""
    assert all(any(name.startswith(label) for label in ROWS) for name in readme_rows()), \
        f"README rows without a result file in this test: {sorted(readme_rows())}"


# The capture-size table: row label -> (the × 0.5 grid, the × 1.0 file); columns × 0.5 k = 4,
# × 1.0 k = 4, × 0.5 k = 8, × 1.0 k = 8.
SIZE_HEADER = "| data | × 0.5, k = 4 | × 1.0, k = 4 | × 0.5, k = 8 | × 1.0, k = 8 |"
SIZE_ROWS = {
    "varied captures (development)": ("quality_default_varied_grid.json", "quality_default_varied_x1.0.json"),
    "held-out family, photo-like": ("quality_default_heldout_grid.json", "quality_default_heldout_x1.0.json"),
    "held-out family, clean": ("quality_default_heldout_clean_grid.json", "quality_default_heldout_clean_x1.0.json"),
}


@pytest.mark.parametrize("label", list(SIZE_ROWS))
def test_readme_capture_size_table_matches_the_result_files(label):
    cells = readme_row(SIZE_HEADER, label)[:4]
    half, full = (grid_means(REPO / "benchmarks" / "results" / f) for f in SIZE_ROWS[label])
    want = [f"{half[4]:.3f}", f"{full[4]:.3f}", f"{half[8]:.3f}", f"{full[8]:.3f}"]
    assert cells == want, f"README row {label!r} says {cells}; the files hold {want}"


def lowest_cell(path, k: int = 4, seed: int | None = None) -> str:
    """"AUROC category part" of the lowest fused logical or structural AUROC at ``k``: the mean
    over seeds, or one ``seed``'s."""
    (category, part), value = min(part_aurocs(path, k, seed).items(), key=lambda item: item[1])
    return f"{value:.2f} {category} {part}"


@pytest.mark.parametrize("label", list(SIZE_ROWS))
def test_readme_capture_size_lowest_parts_match_the_result_files(label):
    """The table's last column: the lowest part at × 1.0, k = 4, over the seeds and at seed 0."""
    full = REPO / "benchmarks" / "results" / SIZE_ROWS[label][1]
    want = f"{lowest_cell(full)} / {lowest_cell(full, seed=0)}"
    assert readme_row(SIZE_HEADER, label)[4] == want, f"README row {label!r}'s lowest parts are not {want!r}"


# The per-category tables: the README text just before each -> its grid file.
PER_CATEGORY = {
    "Per category, clean data": "quality_default_clean_grid.json",
    "<summary>Per category: varied captures": "quality_default_varied_grid.json",
    "<summary>Per category: held-out scene family, photo-like": "quality_default_heldout_grid.json",
    "<summary>Per category: held-out scene family, clean": "quality_default_heldout_clean_grid.json",
    "<summary>Per category: generator seed 101": "quality_default_gen101_grid.json",
    "<summary>Per category: workbench family, photo-like": "quality_default_workbench_grid.json",
    "<summary>Per category: workbench family, clean": "quality_default_workbench_clean_grid.json",
}


@pytest.mark.parametrize("marker", list(PER_CATEGORY))
def test_readme_per_category_tables_are_rendered_from_the_result_files(marker):
    results = json.loads((REPO / "benchmarks" / "results" / PER_CATEGORY[marker]).read_text())["results"]
    assert table_after(marker, "| category |") == markdown_fused(results).splitlines(), \
        f"the table after {marker!r} is not {PER_CATEGORY[marker]} rendered by quality_synthetic.markdown_fused"


# The defect-size table: row label -> (the grid at the default defect size, the × 0.4 file);
# columns k = 4 at × 1 and × 0.4, then the lowest structural part at × 0.4.
DEFECT_HEADER = "| data | defects × 1, k = 4 | defects × 0.4, k = 4 |"
DEFECT_ROWS = {
    "clean (development)": ("quality_default_clean_grid.json", "quality_default_clean_d0.4.json"),
    "varied captures (development)": ("quality_default_varied_grid.json", "quality_default_varied_d0.4.json"),
}


@pytest.mark.parametrize("label", list(DEFECT_ROWS))
def test_readme_defect_size_table_matches_the_result_files(label):
    cells = readme_row(DEFECT_HEADER, label)
    default, small = (REPO / "benchmarks" / "results" / f for f in DEFECT_ROWS[label])
    want = [f"{grid_means(default)[4]:.3f}", f"{grid_means(small)[4]:.3f}", lowest_part(small, "structural")]
    assert cells[:3] == want, f"README row {label!r} says {cells[:3]}; the files hold {want}"


def test_the_readmes_default_tables_are_runs_of_the_default():
    """Every file the default's tables read holds runs of the default's scores: a switch of the
    default's backbone or features without re-run tables fails here."""
    want = set(compose_config([]).features) | {"fused"}
    files = {*ROWS.values(), *PER_CATEGORY.values(), *(f for pair in (*SIZE_ROWS.values(), *DEFECT_ROWS.values()) for f in pair)}
    for name in sorted(files):
        results = json.loads((REPO / "benchmarks" / "results" / name).read_text())["results"]
        scored = {frozenset(r["metrics"]) for r in results}
        assert scored == {frozenset(want)}, f"{name} holds runs of {sorted(set().union(*scored) - {'fused'})}, not the default's features"
