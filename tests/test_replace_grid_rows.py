"""benchmarks/replace_grid_rows.py: a re-run of some categories replaces their rows, nothing else."""

from __future__ import annotations

import json

import pytest
import replace_grid_rows


def _row(category: str, k: int, auroc: float) -> dict:
    return {"category": category, "aligner": "hungarian", "fusion": "loo", "k": k, "seed": 0,
            "metrics": {"fused": {"auroc": auroc}}}


def test_rerun_rows_replace_theirs_in_place(tmp_path):
    grid = {"command": "quality_synthetic.py --shots 1 4", "results": [_row("a", 1, 0.6), _row("a", 4, 0.7), _row("b", 4, 0.8)]}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    (tmp_path / "re.json").write_text(json.dumps({"command": "quality_synthetic.py --categories a --shots 4",
                                                  "results": [_row("a", 4, 0.9)]}))
    replace_grid_rows.main([str(tmp_path / "grid.json"), str(tmp_path / "re.json"), "--note", "a re-run"])
    out = json.loads((tmp_path / "grid.json").read_text())
    assert [r["metrics"]["fused"]["auroc"] for r in out["results"]] == [0.6, 0.9, 0.8]
    assert out["command"] == "quality_synthetic.py --shots 1 4 ; a re-run: quality_synthetic.py --categories a --shots 4"


def test_a_row_the_grid_lacks_is_an_error():
    grid = {"command": "x", "results": [_row("a", 4, 0.7)]}
    with pytest.raises(KeyError, match="not in the grid"):
        replace_grid_rows.replace_rows(grid, [{"command": "y", "results": [_row("a", 8, 0.9)]}], "note")
