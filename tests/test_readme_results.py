"""The result tables of README.md and docs/results.md say what the result files under
benchmarks/results/ hold: a grid re-run without the documents (or a document edited without a
re-run) fails here;
``benchmarks/readme_tables.py`` re-renders them."""

from __future__ import annotations

import json

import pytest
import readme_tables
from quality_synthetic import compose_config

from conftest import REPO


@pytest.mark.parametrize("name", list(readme_tables.tables()))
def test_every_result_table_is_rendered_from_its_files(name):
    doc = readme_tables.tables()[name][0]
    text = doc.read_text()
    assert readme_tables.render(text, doc, only=name) == text, (
        f"the {doc.name} {name} table is not what its result files hold: run benchmarks/readme_tables.py")


def test_a_row_without_a_result_file_is_refused():
    """A row added to a table without a file in readme_tables.py would go unchecked."""
    table = [readme_tables.GRID_HEADER + " lowest |", "|---|---|---|---|---|---|",
             "| clean (generator seed 0, development) | 0 | 0 | 0 | 0 | x |", "| a new set | 0 | 0 | 0 | 0 | x |"]
    with pytest.raises(ValueError, match="'a new set' matches 0 result files"):
        readme_tables.with_cells(table, readme_tables.GRID_ROWS, readme_tables.grid_cells)


def test_a_file_without_a_column_of_the_table_is_named(tmp_path, monkeypatch):
    (tmp_path / "k4.json").write_text(json.dumps({"results": [{"k": 4, "metrics": {"fused": {"auroc": 0.9}}}]}))
    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    readme_tables.results.cache_clear()
    with pytest.raises(ValueError, match="k4.json has no k = 8 rows"):
        readme_tables.mean_auroc("k4.json", 8)
    readme_tables.results.cache_clear()


def test_a_stale_cell_is_found():
    texts = {doc: doc.read_text() for doc in (readme_tables.README, readme_tables.DETAILS)}
    text = texts[readme_tables.README]
    row = next(line for line in text.splitlines() if line.startswith("| clean (generator seed 0"))
    cells = row.split(" | ")
    cells[1] = "0.000"
    texts[readme_tables.README] = text.replace(row, " | ".join(cells))
    assert readme_tables.stale(texts) == ["quality"]


def test_the_readmes_default_tables_are_runs_of_the_default():
    """Every file the default's tables read holds runs of the default's scores: a switch of the
    default's backbone or features without re-run tables fails here."""
    want = set(compose_config([]).features) | {"fused"}
    t = readme_tables
    files = {*t.GRID_ROWS.values(), *t.PER_CATEGORY.values(), *t.PER_DEFECT.values(),
             *(f for pair in (*t.SIZE_ROWS.values(), *t.DEFECT_ROWS.values()) for f in pair)}
    for name in sorted(files):
        results = json.loads((REPO / "benchmarks" / "results" / name).read_text())["results"]
        scored = {frozenset(r["metrics"]) for r in results}
        assert scored == {frozenset(want)}, f"{name} holds runs of {sorted(set().union(*scored) - {'fused'})}, not the default's features"
