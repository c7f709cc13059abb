"""The VAND few-shot protocol: torch shot draw, the preset, and the report's per-k table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import compose_cfg
from locoad.data.datamodule import select_shots
from locoad.data.layout import DataLayoutError, list_split
from locoad.report import aufc, main


def test_torch_shot_draw_is_the_vand_protocol(loco_root):
    samples = list_split(loco_root / "widgets", "train")
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        expected = torch.randperm(len(samples))[:4].tolist()  # the protocol's own lines
    state = torch.random.get_rng_state()
    assert select_shots(samples, 4, seed=1234, draw="torch") == [samples[i] for i in expected]
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert select_shots(samples, 2, seed=1234, draw="torch") == [samples[i] for i in expected[:2]]
    # the default draw is unchanged: numpy's permutation
    order = np.random.default_rng(1234).permutation(len(samples))[:4]
    assert select_shots(samples, 4, seed=1234) == [samples[i] for i in order]
    with pytest.raises(DataLayoutError, match="shot_draw"):
        select_shots(samples, 4, seed=0, draw="random")


def test_preset_composes(tmp_path):
    cfg = compose_cfg(["experiment=vand_fewshot"], tmp_path / "run")
    assert cfg.data.shot_draw == "torch" and cfg.data.image_size == 256
    assert cfg.experiment_name == "vand_fewshot"
    preset = yaml.safe_load((Path(__file__).parents[1] / "conf/experiment/vand_fewshot.yaml").read_text())
    params = preset["hydra"]["sweeper"]["params"]
    assert params["data.k_shot"] == "1,2,4,8" and params["data.seed"] == "42,0,1234"
    assert len(params["data.category"].split(",")) == 5


def test_aufc_normalised():
    assert aufc([1, 2, 4, 8], [0.8] * 4) == pytest.approx(0.8)
    # trapezoids over k/7 rescaled: (1/7)(.6+.7)/2 + (2/7)(.7+.8)/2 + (4/7)(.8+1)/2
    assert aufc([8, 1, 2, 4], [1.0, 0.6, 0.7, 0.8]) == pytest.approx((0.65 + 2 * 0.75 + 4 * 0.9) / 7)


def _job(root: Path, name: str, category: str, k: int, seed: int, f1: float, **extra) -> None:
    job = root / name
    job.mkdir(parents=True)
    cfg = {"experiment_name": "vand_fewshot", "data": {"category": category, "k_shot": k, "seed": seed},
           "model": {"_target_": "locoad.models.seven_feature.SevenFeatureModule", "aligner": {}}, **extra}
    (job / "config.yaml").write_text(yaml.safe_dump(cfg))
    entry = {"f1_max": f1, "auroc": 0.5, "logical": {"f1_max": f1, "auroc": 0.5}, "structural": {"f1_max": f1, "auroc": 0.5}}
    pixel = {"au_spro": {t: {"0.05": 0.25} for t in ("logical", "structural", "mean")}}
    (job / "metrics.json").write_text(json.dumps({"fused": entry, "pixel": pixel}))


def test_report_prints_vand_table_with_published_anchors(tmp_path, capsys):
    root = tmp_path / "sweep"
    f1 = {1: 0.6, 2: 0.7, 4: 0.8, 8: 1.0}
    n = 0
    for cat, shift in (("breakfast_box", 0.0), ("pushpins", -0.1)):
        for k, value in f1.items():
            for seed, noise in ((42, -0.05), (0, 0.0), (1234, 0.05)):
                _job(root, str(n), cat, k, seed, value + shift + noise)
                n += 1
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    vand = (root / "report" / "vand.md").read_text()
    assert "VAND few-shot protocol" in out and vand.strip() in out
    row = next(line for line in vand.splitlines() if line.startswith("| breakfast_box"))
    assert row.split(" | ")[1:5] == ["0.600", "0.700", "0.800", "1.000"]
    expected = (0.65 + 2 * 0.75 + 4 * 0.9) / 7
    assert f"{expected:.3f}" in row and f"{expected - 0.1:.3f}" in vand
    assert "| **mean** | 0.550 |" in vand
    assert "0.773" in vand and "0.780" in vand and "0.894" in vand and "published" in vand
    md = (root / "report" / "summary.md").read_text()
    assert "au_spro_0.05" in md.splitlines()[0] and "0.250" in md


def test_vand_runs_of_two_settings_make_two_tables(tmp_path):
    """Two vand_fewshot sweeps in one folder (another override) were averaged into one table."""
    root = tmp_path / "sweeps"
    n = 0
    for top_n, value in ((1, 0.6), (3, 0.9)):
        for k in (1, 2):
            for seed in (0, 1):
                _job(root, str(n), "pushpins", k, seed, value, features={"composition": {"top_n": top_n}})
                n += 1
    assert main([str(root)]) == 0
    vand = (root / "report" / "vand.md").read_text()
    assert "setting: features.composition.top_n=1" in vand and "setting: features.composition.top_n=3" in vand
    assert "| pushpins | 0.600 | 0.600 |" in vand and "| pushpins | 0.900 | 0.900 |" in vand


def test_vand_table_of_a_sweep_with_unfinished_cells(tmp_path):
    """A (category, k) cell without a finished run (a job still running or failed) crashed the
    table (NaN seed count); the mean row is over the categories that have every k."""
    root = tmp_path / "sweep"
    n = 0
    for cat, value in (("breakfast_box", 0.6), ("pushpins", 0.9)):
        for k in (1, 2, 4):
            if cat == "pushpins" and k == 4:
                continue
            for seed in (0, 1):
                _job(root, str(n), cat, k, seed, value)
                n += 1
    assert main([str(root)]) == 0
    vand = (root / "report" / "vand.md").read_text()
    assert "| pushpins | 0.900 | 0.900 | – | – |" in vand
    assert "| **mean** | 0.600 | 0.600 | 0.600 | 0.600 |" in vand
    assert "pushpins lacks k=4" in vand and "over the 1 categories with every k" in vand
