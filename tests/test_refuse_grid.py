"""benchmarks/refuse_grid.py: a fusion-only change re-fused from dumped scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import refuse_grid

from locoad.fusion.loo import LeaveOneOutSum
from locoad.metrics import image_metrics


def test_refuse_grid_rewrites_only_the_fused_metrics(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([0] * 6 + [1] * 6)
    types = np.array(["good"] * 6 + ["logical_anomalies"] * 3 + ["structural_anomalies"] * 3)
    defects = np.array([""] * 6 + ["missing"] * 3 + ["crack", "crack+stain", "stain"])
    # composition sees the anomalies, the patch score is noise: the fusion's weights decide
    score = {"composition": 1.0 + labels * 2.0 + rng.random(12), "foreground_patch": rng.random(12)}
    loo = {"composition": np.array([1.2, 1.5, 1.1, 1.4]), "foreground_patch": np.array([0.5, 0.9, 0.7, 0.8])}
    tag = "widgets/hungarian/loo/4/0"
    np.savez(tmp_path / "d.npz", **{"widgets/labels": labels, "widgets/types": types, "widgets/defects": defects},
             **{f"{tag}/score/{n}": v for n, v in score.items()}, **{f"{tag}/loo/{n}": v for n, v in loo.items()},
             **{f"{tag}/score/fused": np.zeros(12)})
    kept = {"auroc": 0.5, "per_defect": {}}
    row = {"category": "widgets", "aligner": "hungarian", "fusion": "loo", "k": 4, "seed": 0, "f1_floor": 0.67,
           "metrics": {"composition": kept, "fused": {"auroc": 0.0, "per_defect": {}}}}
    (tmp_path / "grid.json").write_text(json.dumps({"command": "quality_synthetic.py --x", "results": [row]}))
    refuse_grid.main([str(tmp_path / "grid.json"), str(tmp_path / "d.npz"), "--out", str(tmp_path / "new.json"),
                    "--overrides", "fusion=loo", "+fusion.weights.foreground_patch=0.0", "--dump-out", str(tmp_path / "j.npz")])
    out = json.loads((tmp_path / "new.json").read_text())
    new = out["results"][0]
    assert new["metrics"]["composition"] == kept and new["f1_floor"] == 0.67  # untouched
    fused = LeaveOneOutSum(weights={"foreground_patch": 0.0}).fit(loo).fuse(score)
    expected = image_metrics(fused, labels, types)
    with np.load(tmp_path / "j.npz") as joined:  # the dump's fused array is the new fusion's, not the run's
        np.testing.assert_array_equal(joined[f"{tag}/score/fused"], fused)
    assert new["metrics"]["fused"]["auroc"] == expected["auroc"] == 1.0  # composition alone separates them
    assert set(new["metrics"]["fused"]["per_defect"]) == {"missing", "crack", "stain"}
    assert new["metrics"]["fused"]["per_defect"]["crack"]["n"] == 2
    assert out["command"].startswith("quality_synthetic.py --x ; benchmarks/refuse_grid.py")


TAG = "widgets/hungarian/loo/4/0"


def _grid_and_two_dumps(tmp_path, old: dict, new: dict, metrics: dict) -> None:
    """Four good and four anomalous widgets: grid.json with one row of ``metrics``, and the
    scores ``old`` (the grid's own dump) and ``new`` (a later run's), {name: (test, loo)}."""
    data = {"widgets/labels": np.array([0] * 4 + [1] * 4), "widgets/types": np.array(["good"] * 4 + ["logical_anomalies"] * 4),
            "widgets/defects": np.array([""] * 4 + ["extra"] * 4)}
    for file, scores in (("old.npz", old), ("new.npz", new)):
        np.savez(tmp_path / file, **data, **{f"{TAG}/{kind}/{n}": v for n, (test, loo) in scores.items()
                                              for kind, v in (("score", test), ("loo", loo))})
    row = {"category": "widgets", "aligner": "hungarian", "fusion": "loo", "k": 4, "seed": 0, "metrics": metrics}
    (tmp_path / "grid.json").write_text(json.dumps({"command": "q", "results": [row]}))


def test_refuse_grid_fuses_in_a_feature_dumped_by_another_run(tmp_path):
    """A new feature scored alone on the same grid: its dump joins the grid's own, its metrics the row's."""
    # the grid's own score ranks two anomalies below the good images; the new one sees them all
    _grid_and_two_dumps(tmp_path, {"foreground_patch": (np.array([1.0, 2, 3, 4, 5, 6, 0.5, 0.6]), np.array([4.0, 4, 4, 4]))},
                        {"symmetry": (np.array([1.0, 1, 1, 1, 4, 4, 4, 4]), np.ones(4))},
                        {"foreground_patch": {"auroc": 0.5}, "fused": {"auroc": 0.5, "per_defect": {}}})
    args = [str(tmp_path / "grid.json"), str(tmp_path / "old.npz"), "--out", str(tmp_path / "a.json"), "--overrides", "fusion=loo"]
    refuse_grid.main(args)
    refuse_grid.main([*args[:2], str(tmp_path / "new.npz"), *args[2:3], str(tmp_path / "b.json"), *args[4:]])
    before, after = (json.loads((tmp_path / f).read_text())["results"][0]["metrics"] for f in ("a.json", "b.json"))
    assert "symmetry" not in before and before["fused"]["auroc"] == 0.5
    assert after["symmetry"]["auroc"] == 1.0 and after["symmetry"]["per_defect"]["extra"]["auroc"] == 1.0
    assert after["fused"]["auroc"] == 1.0 and after["foreground_patch"] == {"auroc": 0.5}


def test_refuse_grid_recomputes_the_metrics_of_a_score_that_a_later_dump_replaces(tmp_path):
    """A feature whose code changed, re-run alone: its scores replace the grid's own, and so must
    its metrics (the row's were of the old scores)."""
    _grid_and_two_dumps(tmp_path, {"composition": (np.array([4.0, 4, 4, 4, 1, 1, 1, 1]), np.ones(4))},
                        {"composition": (np.array([1.0, 1, 1, 1, 4, 4, 4, 4]), np.ones(4))},
                        {"composition": {"auroc": 0.0}, "fused": {"auroc": 0.0, "per_defect": {}}})
    refuse_grid.main([str(tmp_path / "grid.json"), str(tmp_path / "old.npz"), str(tmp_path / "new.npz"),
                    "--out", str(tmp_path / "b.json"), "--overrides", "fusion=loo", "--dump-out", str(tmp_path / "j.npz")])
    after = json.loads((tmp_path / "b.json").read_text())["results"][0]["metrics"]
    assert after["composition"]["auroc"] == 1.0 and after["fused"]["auroc"] == 1.0
    assert after["composition"]["per_defect"]["extra"]["auroc"] == 1.0
    # the joined dump holds the new scores: re-fused alone, it gives the same row
    with np.load(tmp_path / "j.npz") as joined:
        assert joined[f"{TAG}/score/composition"].tolist() == [1.0, 1, 1, 1, 4, 4, 4, 4]
    refuse_grid.main([str(tmp_path / "grid.json"), str(tmp_path / "j.npz"), "--out", str(tmp_path / "c.json"),
                      "--overrides", "fusion=loo"])
    assert json.loads((tmp_path / "c.json").read_text())["results"][0]["metrics"]["fused"] == after["fused"]


def test_refuse_grid_keeps_the_rows_of_other_shots(tmp_path, capsys):
    """--shots 4: a k = 8 row, whose run has no dump, is kept as it is; without it, it is an error."""
    _grid_and_two_dumps(tmp_path, {"composition": (np.array([1.0, 1, 1, 1, 4, 4, 4, 4]), np.ones(4))}, {},
                        {"composition": {"auroc": 1.0}, "fused": {"auroc": 0.0, "per_defect": {}}})
    grid = json.loads((tmp_path / "grid.json").read_text())
    other = {**grid["results"][0], "k": 8}
    (tmp_path / "grid.json").write_text(json.dumps({**grid, "results": [grid["results"][0], other]}))
    args = [str(tmp_path / "grid.json"), str(tmp_path / "old.npz"), "--out", str(tmp_path / "b.json"), "--overrides", "fusion=loo"]
    with pytest.raises(KeyError, match="no dumped scores"):
        refuse_grid.main(args)
    refuse_grid.main([*args, "--shots", "4"])
    four, eight = json.loads((tmp_path / "b.json").read_text())["results"]
    assert four["metrics"]["fused"]["auroc"] == 1.0 and eight == other
    assert "1 of 2 rows re-fused" in capsys.readouterr().out  # it said every row


def test_refusion_ramps_a_weight_by_the_row_s_shots_not_the_held_out_count(tmp_path):
    """With model.max_loo below k a run holds out fewer shots than it has; the model passes k to
    the fusion, the re-fusion took k from the held-out count (composition's ramped weight 2/3, not 1)."""
    rng = np.random.default_rng(1)
    test = {"composition": rng.random(8), "foreground_patch": rng.random(8)}
    _grid_and_two_dumps(tmp_path, {n: (v, np.ones(2)) for n, v in test.items()}, {},  # 2 held out of k = 4
                        {"fused": {"auroc": 0.0}})
    refuse_grid.main([str(tmp_path / "grid.json"), str(tmp_path / "old.npz"), "--out", str(tmp_path / "new.json"),
                      "--overrides", "fusion=loo", "+fusion.full_weight_shots.composition=3",
                      "--dump-out", str(tmp_path / "j.npz")])
    with np.load(tmp_path / "j.npz") as joined:
        np.testing.assert_allclose(joined[f"{TAG}/score/fused"], test["composition"] + test["foreground_patch"])
