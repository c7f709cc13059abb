"""benchmarks/replace_grid_rows.py: a re-run of some categories replaces their rows, nothing else."""

from __future__ import annotations

import json

import numpy as np
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


def _dump(category: str, ks: list[int], value: float) -> dict:
    out = {f"{category}/labels": np.array([0, 1]), f"{category}/types": np.array(["good", "logical_anomalies"])}
    for k in ks:
        for kind in ("score", "loo"):
            out[f"{category}/hungarian/loo/{k}/0/{kind}/fused"] = np.full(2, value)
    return out


def test_a_rerun_dump_replaces_its_categorys_runs_and_data(tmp_path):
    np.savez(tmp_path / "d.npz", **_dump("a", [4], 0.1), **_dump("b", [4], 0.2))
    np.savez(tmp_path / "re.npz", **{**_dump("a", [1, 4], 0.9), "a/labels": np.array([1, 0])})
    replace_grid_rows.main([str(tmp_path / "d.npz"), str(tmp_path / "re.npz")])
    with np.load(tmp_path / "d.npz") as out:
        assert out["a/hungarian/loo/4/0/score/fused"][0] == 0.9 and out["b/hungarian/loo/4/0/score/fused"][0] == 0.2
        assert list(out["a/labels"]) == [1, 0]  # the category's new images' labels
        assert "a/hungarian/loo/1/0/score/fused" not in out.files  # a k the dump did not hold


def test_a_rerun_dump_must_hold_every_run_of_its_category():
    # the re-run's images replace the category's labels: a run left out would be scored against them
    with pytest.raises(KeyError, match="re-run every run of a"):
        replace_grid_rows.replace_dump_runs(_dump("a", [4, 8], 0.1), [_dump("a", [4], 0.9)])
    with pytest.raises(KeyError, match="holds no run of c"):
        replace_grid_rows.replace_dump_runs(_dump("a", [4], 0.1), [_dump("c", [4], 0.9)])


def test_a_rerun_must_share_the_grids_settings_and_says_its_data_version():
    grid = {"command": "x", "variant": "heldout", "data": "heldout version 1", "results": [_row("a", 4, 0.7), _row("b", 4, 0.6)]}
    other = {"command": "y", "variant": "heldout_clean", "results": [_row("a", 4, 0.9)]}
    with pytest.raises(ValueError, match="differs from the grid in variant"):
        replace_grid_rows.replace_rows(grid, [other], "note")
    rerun = {**other, "variant": "heldout", "data": "heldout version 2"}
    out = replace_grid_rows.replace_rows(grid, [rerun, {**rerun, "results": [_row("b", 4, 0.8)]}], "v2")
    assert out["data"] == "heldout version 1; rows of a, b re-run on heldout version 2"
    # a grid written before test_images was recorded ran 12; a re-run of 36 images is another setting
    with pytest.raises(ValueError, match="differs from the grid in test_images"):
        replace_grid_rows.replace_rows(grid, [{**rerun, "test_images": 36}], "t36")
    twelve = replace_grid_rows.replace_rows(grid, [{**rerun, "test_images": 12}], "t12")
    assert twelve["results"][0] == rerun["results"][0]  # the same setting as the grid's, spelled out


def test_overrides_that_compose_the_same_configuration_are_the_same_setting():
    grid = {"command": "x", "overrides": ["backbone=efficientnet_lite0_lite2"], "results": [_row("a", 4, 0.7)]}
    same = {"command": "y", "overrides": [], "results": [_row("a", 4, 0.9)]}  # that backbone is the default
    assert replace_grid_rows.replace_rows(grid, [same], "n")["results"][0]["metrics"]["fused"]["auroc"] == 0.9
    with pytest.raises(ValueError, match="differs from the grid in overrides"):
        replace_grid_rows.replace_rows(grid, [{**same, "overrides": ["backbone=efficientnet_lite0"]}], "n")
