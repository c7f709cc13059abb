"""benchmarks/subset_grid.py: a configuration scoring a subset of a dumped run's scores gets that
run's rows without the scores it lacks, fused by its own fusion, as a run of it would."""

from __future__ import annotations

import json

import numpy as np
import pytest
import subset_grid
from quality_synthetic import compose_config

from locoad.metrics import image_metrics
from locoad.utils import build

ENSEMBLE = ["backbone=efficientnet_lite0_lite2"]  # features=robust_lite0_lite2
FOREGROUND_ONLY = ["backbone=efficientnet_lite0_lite2", "features=robust_lite2_foreground"]


def _run(tmp_path):
    rng = np.random.default_rng(0)
    names = list(compose_config(ENSEMBLE).features)
    labels = np.array([0] * 6 + [1] * 6)
    types = np.array(["good"] * 6 + ["logical_anomalies"] * 3 + ["structural_anomalies"] * 3)
    tag = "widget/hungarian/loo_patch_weighted_lite0_lite2/4/0"  # the name the ensemble's runs used
    dump = {"widget/labels": labels, "widget/types": types, "widget/defects": np.array([""] * 12)}
    for n in names:
        dump[f"{tag}/score/{n}"] = rng.random(12) + labels * rng.random()
        dump[f"{tag}/loo/{n}"] = rng.random(4)
    dump[f"{tag}/score/fused"] = rng.random(12)
    np.savez(tmp_path / "run.npz", **dump)
    row = {"category": "widget", "aligner": "hungarian", "fusion": "loo_patch_weighted_lite0_lite2", "k": 4, "seed": 0,
           "metrics": {n: image_metrics(dump[f"{tag}/score/{n}"], labels, types) for n in [*names, "fused"]}}
    return {"command": "quality_synthetic.py ...", "overrides": ENSEMBLE, "results": [row]}, dump


def test_the_subset_is_the_runs_rows_without_the_scores_it_lacks(tmp_path):
    grid, dump = _run(tmp_path)
    new, new_dump = subset_grid.subset(grid, str(tmp_path / "run.npz"), FOREGROUND_ONLY)
    want = set(compose_config(FOREGROUND_ONLY).features)
    row = new["results"][0]
    assert set(row["metrics"]) == want | {"fused"} and new["overrides"] == FOREGROUND_ONLY
    assert row["fusion"] == "loo_patch_weighted"  # the fusion the configuration composes
    old, tag = "widget/hungarian/loo_patch_weighted_lite0_lite2/4/0", "widget/hungarian/loo_patch_weighted/4/0"
    fused = build(compose_config(FOREGROUND_ONLY).model.fusion).fit(
        {n: dump[f"{old}/loo/{n}"] for n in want}).fuse({n: dump[f"{old}/score/{n}"] for n in want})
    np.testing.assert_allclose(new_dump[f"{tag}/score/fused"], fused)
    assert row["metrics"]["fused"]["auroc"] == image_metrics(fused, dump["widget/labels"], dump["widget/types"])["auroc"]
    assert row["metrics"]["class_count"] == grid["results"][0]["metrics"]["class_count"]  # kept as measured
    assert {k.rsplit("/", 1)[1] for k in new_dump if "/score/" in k} == want | {"fused"}
    assert json.dumps(new)  # a file like any grid


def test_a_configuration_scoring_more_than_the_dump_is_refused(tmp_path):
    grid, _ = _run(tmp_path)
    with pytest.raises(ValueError, match=r"scores \['class_colour'.*which the dump lacks"):
        subset_grid.subset(grid, str(tmp_path / "run.npz"), ["features=all8"])
