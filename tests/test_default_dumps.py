"""The raw scores under benchmarks/results/dumps/ are those of their result files' rows:
the default's (``default_k<k>_*``, the README's grids at k = 1, 2, 4 and 8), Lite0
alone's (``lite0_k4_*``) and ``experiment=lite0_lite2``'s (``lite0_lite2_k4_*``), each fused with
today's fusion of its configuration, give each row's AUROC at its k. A fusion change without a re-run of the tables, or a dump of
another configuration, fails here (docs/ablations.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from paired_bootstrap import fused_runs
from quality_synthetic import compose_config

from conftest import REPO
from locoad.metrics import image_metrics

DUMPS = REPO / "benchmarks/results/dumps"
# dump name -> the grid file whose k = 4 rows it reproduces
GRIDS = {
    "clean": "quality_default_clean_grid.json",
    "varied": "quality_default_varied_grid.json",
    "varied_x1.0": "quality_default_varied_x1.0.json",
    "heldout": "quality_default_heldout_grid.json",
    "heldout_clean": "quality_default_heldout_clean_grid.json",
    "heldout_x1.0": "quality_default_heldout_x1.0.json",
    "heldout_clean_x1.0": "quality_default_heldout_clean_x1.0.json",
    "gen101": "quality_default_gen101_grid.json",
    "workbench": "quality_default_workbench_grid.json",
    "workbench_clean": "quality_default_workbench_clean_grid.json",
}
# dump prefix -> (the overrides its runs were made with, dump name -> its result file)
CONFIGS = {
    "default": ([], GRIDS),
    "lite0_lite2": (["experiment=lite0_lite2"], {n: f"quality_lite0_lite2_{n}_k4.json" for n in GRIDS}),
    "lite0": (["backbone=efficientnet_lite0"], {n: v.replace("quality_default_", "quality_lite0_") for n, v in GRIDS.items()}),
}
# (prefix, k, dump name) of every dump: <prefix>_k<k>_<name>.npz
DUMPED = [(prefix, k, p.name.removeprefix(f"{prefix}_k{k}_").removesuffix(".npz"))
          for prefix in CONFIGS for k in (1, 2, 4, 8) for p in sorted(DUMPS.glob(f"{prefix}_k{k}_*.npz"))]


@pytest.mark.parametrize("prefix", list(CONFIGS))
def test_every_dump_names_its_grid(prefix):
    names = [name for p, _, name in DUMPED if p == prefix]
    assert names and set(names) <= set(CONFIGS[prefix][1]), names


@pytest.mark.parametrize(("prefix", "k", "name"), DUMPED)
def test_a_dump_holds_its_configurations_scores(prefix, k, name):
    """A dump of another backbone or feature set fuses to nearly the same rows when the fusions
    agree on the scores they share; its scores' names give it away."""
    with np.load(DUMPS / f"{prefix}_k{k}_{name}.npz") as dump:
        scored = {key.rsplit("/", 1)[1] for key in dump.files if "/score/" in key} - {"fused"}
    assert scored == set(compose_config(CONFIGS[prefix][0]).features), (
        f"{prefix}_k{k}_{name}.npz scores {sorted(scored)}, not the features of {CONFIGS[prefix][0] or 'the default'}: "
        "re-run its set (README, Results) and replace the dump")


@pytest.mark.parametrize(("prefix", "k", "name"), DUMPED)
def test_a_dump_fused_by_its_configuration_gives_its_grid_rows(prefix, k, name):
    overrides, files = CONFIGS[prefix]
    grid = json.loads((REPO / "benchmarks/results" / files[name]).read_text())
    rows = {(r["category"], r["seed"]): r["metrics"]["fused"]["auroc"]
            for r in grid["results"] if r["k"] == k and r["aligner"] == "hungarian"}
    runs, data = fused_runs(str(DUMPS / f"{prefix}_k{k}_{name}.npz"), compose_config(overrides).model.fusion)
    mine = {(cat, seed): image_metrics(score, data[cat]["labels"], data[cat]["types"])["auroc"]
            for (cat, _, shots, seed), score in runs.items() if shots == k}
    assert set(mine) == set(rows)
    # A re-run of the same code can differ in the last bits of the aligner and the colour classes
    # (one held-out run by 0.004); the means agree to the table's precision.
    assert max(abs(mine[k] - rows[k]) for k in rows) < 0.01
    assert np.mean(list(mine.values())) == pytest.approx(np.mean(list(rows.values())), abs=5e-4)
    # A reader of the dump takes its own fused arrays for the rows' scores: a dump re-fused into a
    # new default (refuse_grid.py --dump-out) must not keep the fusion of the run that wrote it.
    with np.load(DUMPS / f"{prefix}_k{k}_{name}.npz") as dump:  # keys cat/aligner/fusion/k/seed/score/fused
        written = {(cat, aligner, int(shots), int(seed)): dump[key] for key in dump.files if key.endswith("/score/fused")
                   for cat, aligner, _, shots, seed, *_ in [key.split("/")]}
    stale = [key for key, score in runs.items() if not np.allclose(written[key], score)]
    assert not stale, f"{name}: stale fused scores of {stale[:2]}; re-write the dump with refuse_grid.py --dump-out"
