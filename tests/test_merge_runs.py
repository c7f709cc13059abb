"""benchmarks/merge_runs.py: runs of one setting become one grid; anything else is refused."""

from __future__ import annotations

import json

import merge_runs
import pytest


def _run(command: str, ks: list[int], **settings) -> dict:
    rows = [{"category": "a", "aligner": "hungarian", "fusion": "loo", "k": k, "seed": 0,
             "metrics": {"fused": {"auroc": k / 10}}} for k in ks]
    return {"command": command, "variant": "clean", "overrides": [], **settings, "results": rows}


def test_runs_per_k_merge_into_one_grid(tmp_path):
    for name, run in {"k1": _run("q.py --shots 1", [1]), "k48": _run("q.py --shots 4 8", [4, 8])}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(run))
    merge_runs.main([str(tmp_path / "grid.json"), str(tmp_path / "k1.json"), str(tmp_path / "k48.json"),
                     "--note", "one run per k"])
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert [r["k"] for r in grid["results"]] == [1, 4, 8]
    assert grid["command"] == "one run per k: q.py --shots 1 ; q.py --shots 4 8"
    assert (grid["variant"], grid["overrides"]) == ("clean", [])


def test_runs_of_other_settings_are_refused():
    with pytest.raises(ValueError, match="run 2 differs from run 1 in overrides, size_factor"):
        merge_runs.merge_runs([_run("x", [1], size_factor=0.5), _run("y", [4], size_factor=1.0, overrides=["a=b"])])


def test_a_row_in_two_runs_is_refused():
    with pytest.raises(ValueError, match=r"row \('a', 'hungarian', 'loo', 4, 0\) is in run 1 and run 2"):
        merge_runs.merge_runs([_run("x", [4]), _run("y", [4, 8])])
