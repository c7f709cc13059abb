"""The labelled tuning split (data.eval_split=tune) and the Optuna fusion-weight preset."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, make_loco
from locoad.data.datamodule import LocoDataModule
from locoad.data.layout import DataLayoutError, category_dir, list_split
from locoad.data.synthetic import generate

SMALL = {"categories": ["breakfast_box"], "image_size": 64, "n_train": 2, "n_validation": 1,
         "n_test_good": 2, "n_logical": 2, "n_structural": 2}
TUNE = {"n_tune_good": 2, "n_tune_logical": 2, "n_tune_structural": 2}
FEATURES = ("class_agnostic_patch", "class_aware_patch", "foreground_patch", "class_embedding",
            "class_histogram", "class_colour", "class_location")


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def test_synthetic_tune_split_is_labelled_and_disjoint_from_test(tmp_path):
    with_tune = generate(tmp_path / "with", **SMALL, **TUNE) / "breakfast_box"
    without = generate(tmp_path / "without", **SMALL) / "breakfast_box"
    assert not (without / "tune").exists()
    for kind in ("good", "logical_anomalies", "structural_anomalies"):
        assert len(list((with_tune / "tune" / kind).glob("*.png"))) == 2
    for kind in ("logical_anomalies", "structural_anomalies"):
        for i in range(2):
            assert list((with_tune / "ground_truth_tune" / kind / f"{i:03d}").glob("*.png"))
    # adding the tune split leaves train, validation and test byte-identical
    before, after = _digests(without), _digests(with_tune)
    assert all(after[k] == v for k, v in before.items())
    # and no tune image is a test image
    test_bytes = set(_digests(with_tune / "test").values())
    tune_bytes = set(_digests(with_tune / "tune").values())
    assert tune_bytes and not tune_bytes & test_bytes

    samples = list_split(with_tune, "tune")
    assert len(samples) == 6 and {s.split for s in samples} == {"tune"}
    assert all(s.masks for s in samples if s.label) and all(s.part_labels for s in samples)
    assert all("ground_truth_tune" in str(m) for s in samples for m in s.masks)


def test_eval_split_tune_makes_the_test_loader_read_tune(tmp_path):
    root = generate(tmp_path / "syn", **SMALL, **TUNE)
    dm = LocoDataModule(str(root), "breakfast_box", k_shot=2, image_size=64, eval_split="tune")
    dm.setup("test")
    paths = [Path(s.path) for s in dm.splits["test"]]
    assert paths and all(p.parent.parent.name == "tune" for p in paths)
    assert len(dm.test_dataloader().dataset) == 6
    default = LocoDataModule(str(root), "breakfast_box", k_shot=2, image_size=64)
    assert all(Path(s.path).parent.parent.name == "test" for s in default.splits["test"])
    with pytest.raises(DataLayoutError, match="eval_split"):
        LocoDataModule(str(root), "breakfast_box", eval_split="validation")


def test_missing_tune_folder_is_a_clear_error(loco_root):
    cdir = category_dir(loco_root, "widgets")
    with pytest.raises(DataLayoutError, match=r"missing folder .*tune.*ground_truth_tune.*n_tune_good.*never copies"):
        list_split(cdir, "tune")
    (cdir / "tune" / "good").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match="no images under"):
        list_split(cdir, "tune")
    dm = LocoDataModule(str(loco_root), "widgets", k_shot=2, image_size=64, eval_split="tune")
    with pytest.raises(DataLayoutError, match="data.eval_split=tune"):
        dm.setup("fit")


def add_tune_split(loco_root: Path, category: str = "widgets") -> Path:
    """Give the hand-made category a tune split of its own (other pixels than test/)."""
    other = make_loco(loco_root.parent / "other", category, n_train=4, n_test=2)  # other rng draws
    src, dst = other / category, loco_root / category
    shutil.move(src / "test", dst / "tune")
    shutil.move(src / "ground_truth", dst / "ground_truth_tune")
    shutil.move(src / "part_labels" / "test", dst / "part_labels" / "tune")
    shutil.rmtree(other)
    return dst


TINY = ["data=mvtec_loco", "data.category=widgets", "data.k_shot=2", "data.num_workers=0",
        "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "logger=csv"]


def test_optuna_preset_tunes_fusion_weights_on_tune_only(loco_root, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the `tune` extra")
    cdir = add_tune_split(loco_root)
    assert not set(_digests(cdir / "tune").values()) & set(_digests(cdir / "test").values())
    sweep = tmp_path / "multiruns" / "optuna"
    cmd = [sys.executable, "-m", "locoad", "-m", "experiment=optuna_fusion", "hydra.sweeper.n_trials=2",
           *TINY, f"data.root={loco_root}", f"paths.root_dir={tmp_path}",
           f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = result["best_params"]
    assert set(best) == {f"fusion.weights.{f}" for f in FEATURES}
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    trials = []
    for job in jobs:
        # the weights Optuna sampled for this trial are the ones its fused score used:
        # fused = sum over features of weight * score / LOO scale (the loo rule), row by row
        sampled = {k.removeprefix("fusion.weights."): float(v) for k, v in
                   (o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
                   if k.startswith("fusion.weights.")}
        assert set(sampled) == set(FEATURES) and len(set(sampled.values())) > 1  # not the untuned 1.0s
        metrics = json.loads((job / "metrics.json").read_text())
        scores = pd.read_csv(job / "scores.csv")
        scales = metrics["fusion"]["scales"]
        expected = sum(sampled[f] * scores[f] / scales[f] for f in FEATURES)
        np.testing.assert_allclose(scores["fused"], expected, rtol=1e-6)
        trials.append((metrics["fused"]["f1_max"], {f"fusion.weights.{f}": w for f, w in sampled.items()}))
        scores = pd.read_csv(job / "scores.csv")
        # the optimised metric was computed on tune/ images only, never on test/
        assert len(scores) == 6 and all(Path(p).parent.parent.name == "tune" for p in scores["path"])
        assert set(scores["anomaly_type"]) == {"good", "logical_anomalies", "structural_anomalies"}
        assert "eval_split: tune" in (job / "config.yaml").read_text()
    # the reported best is the trial with the highest tune-split F1-max, with that trial's weights
    best_value = max(v for v, _ in trials)
    assert result["best_value"] == pytest.approx(best_value)
    assert any(best == pytest.approx(params) for v, params in trials if v == best_value)  # a tie: either


def test_a_misspelt_optimized_metric_stops_an_optuna_sweep_in_one_line(loco_root, tmp_path):
    """The job returned None, so the Optuna sweeper ended in a 40-line traceback ("No trials are
    completed yet") after a whole trial."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the `tune` extra")
    add_tune_split(loco_root)
    cmd = [sys.executable, "-m", "locoad", "-m", "experiment=optuna_fusion", "hydra.sweeper.n_trials=1",
           "optimized_metric=fused.f1max", *TINY, f"data.root={loco_root}", f"paths.root_dir={tmp_path}",
           f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    # CI exports HYDRA_FULL_ERROR=1 (full tracebacks on purpose); a user's shell does not
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "optimized_metric=fused.f1max is not a number" in proc.stderr and "Traceback" not in proc.stderr, \
        proc.stderr[-3000:]


def test_optimized_metric_reaches_au_spro_keys_with_dots(caplog):
    from locoad.__main__ import metric_value

    spro = {t: {"0.01": 0.1, "0.05": 0.25, "1.0": 0.9} for t in ("logical", "structural", "mean")}
    metrics = {"fused": {"f1_max": 0.8, "auroc_loco": 0.7}, "pixel": {"au_spro": spro}}
    assert metric_value(metrics, "fused.f1_max") == 0.8
    assert metric_value(metrics, "pixel.au_spro.mean.0.05") == 0.25  # greedy: "0.05" is one key
    assert metric_value(metrics, "pixel/au_spro/logical/1.0") == 0.9
    assert metric_value(metrics, "pixel.au_spro.mean.0.3") is None  # absent: None, said once
    assert "optimized_metric=pixel.au_spro.mean.0.3" in caplog.text
    assert metric_value(metrics, "pixel.au_spro.mean") is None  # a dict, not a number
