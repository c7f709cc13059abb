"""locoad-report on hand-written job folders: seed averaging, ULSAD rows, plots, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from locoad.report import collect, main


def _job(root: Path, name: str, cfg: dict, fused: float, choices: dict | None = None) -> None:
    job = root / name
    job.mkdir(parents=True)
    (job / "config.yaml").write_text(yaml.safe_dump(cfg))
    entry = {"f1_max": fused, "auroc": fused, "logical": {"f1_max": fused, "auroc": fused},
             "structural": {"f1_max": fused, "auroc": None}}
    metrics = {"fused": entry, "class_histogram": {**entry, "f1_max": 0.5}, "alignment": {"accuracy": 0.9}}
    (job / "metrics.json").write_text(json.dumps(metrics))
    if choices:
        (job / ".hydra").mkdir()
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))


def _seven(category: str, k: int, seed: int) -> dict:
    return {"data": {"category": category, "k_shot": k, "seed": seed},
            "model": {"_target_": "locoad.models.seven_feature.SevenFeatureModule", "aligner": {}},
            "aligner": {"_target_": "locoad.aligners.nearest.NearestAligner"},
            "features": {"class_histogram": {}, "class_colour": {}},
            "fusion": {"_target_": "locoad.fusion.loo.LeaveOneOutSum"}}


def test_report_averages_seeds_and_handles_ulsad(tmp_path, capsys):
    root = tmp_path / "multi"
    for i, (k, seed, f1) in enumerate([(1, 0, 0.6), (1, 1, 0.8), (4, 0, 0.9), (4, 1, 0.9)]):
        _job(root, str(i), _seven("tray", k, seed), f1,
             choices={"model": "seven_feature", "aligner": "nearest", "features": "logical"})
    ulsad = {"data": {"category": "tray", "k_shot": None, "seed": 0},
             "model": {"_target_": "locoad.models.ulsad.ULSADModule", "backbone": "resnet18"}}
    _job(root, "ulsad/0", ulsad, 0.7)
    (root / "broken").mkdir()
    (root / "broken" / "metrics.json").write_text("{}")  # no config.yaml: ignored

    runs = collect(root)
    assert len(runs) == 5 and set(runs["model"]) == {"seven_feature", "ULSADModule"}
    u = runs[runs["model"] == "ULSADModule"].iloc[0]
    assert u["aligner"] == "n/a" and u["backbone"] == "resnet18" and u["k_shot"] == "full"
    assert runs.loc[runs["model"] == "seven_feature", "features"].eq("logical").all()

    assert main([str(root)]) == 0
    summary = pd.read_csv(root / "report" / "summary.csv")
    one_shot = summary[(summary["model"] == "seven_feature") & (summary["k_shot"].astype(str) == "1")].iloc[0]
    assert abs(one_shot["f1_max_mean"] - 0.7) < 1e-9 and abs(one_shot["f1_max_std"] - 0.1) < 1e-9
    assert one_shot["n_seeds"] == 2
    md = (root / "report" / "summary.md").read_text()
    assert "0.700 ± 0.100" in md and "ULSADModule" in md
    assert (root / "report" / "plots" / "f1_max_by_k_shot.png").is_file()
    assert (root / "report" / "plots" / "f1_max_by_model.png").is_file()
    assert "0.700 ± 0.100" in capsys.readouterr().out


def test_runs_with_other_settings_are_kept_apart_and_only_seeds_are_averaged(tmp_path, caplog):
    """Rows were grouped by the config group choices only, so runs that differed in any other
    override (Optuna's fusion weights, another data root) were averaged as if they were seeds."""
    root = tmp_path / "sweep"
    choices = {"model": "seven_feature", "aligner": "nearest", "features": "logical"}
    for i, (weight, seed, f1) in enumerate([(1.0, 0, 0.6), (1.0, 1, 0.8), (3.0, 0, 0.9), (3.0, 1, 0.95)]):
        cfg = _seven("tray", 4, seed)
        cfg["fusion"]["weights"] = {"composition": weight}
        cfg["paths"] = {"output_dir": f"/runs/{i}"}  # where a job writes: never a setting
        _job(root, str(i), cfg, f1, choices=choices)
    runs = collect(root)
    assert sorted(set(runs["setting"])) == ["fusion.weights.composition=1.0", "fusion.weights.composition=3.0"]
    assert main([str(root)]) == 0
    summary = pd.read_csv(root / "report" / "summary.csv").set_index("setting")
    assert abs(summary.loc["fusion.weights.composition=1.0", "f1_max_mean"] - 0.7) < 1e-9
    assert abs(summary.loc["fusion.weights.composition=3.0", "f1_max_mean"] - 0.925) < 1e-9
    assert set(summary["n_seeds"]) == {2}
    assert "fusion.weights.composition=3.0" in (root / "report" / "summary.md").read_text()

    # a rerun of one seed: counted once as a seed, said in the log
    rerun = _seven("tray", 4, 0)
    rerun["fusion"]["weights"] = {"composition": 3.0}
    _job(root, "4", rerun, 0.9, choices=choices)
    with caplog.at_level("WARNING"):
        assert main([str(root)]) == 0
    assert any("same data.seed" in r.getMessage() for r in caplog.records)


def test_jobs_that_did_not_finish_are_named(tmp_path, capsys):
    """A failed job (config.yaml, no metrics.json) vanished from the mean over seeds unsaid."""
    root = tmp_path / "multi"
    for i, f1 in enumerate((0.6, 0.8)):
        _job(root, str(i), _seven("tray", 4, i), f1, choices={"model": "seven_feature"})
    failed = root / "2"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "config.yaml").write_text("{}")
    (failed / "config.yaml").write_text(yaml.safe_dump(_seven("tray", 4, 2)))
    assert main([str(root)]) == 0
    md = (root / "report" / "summary.md").read_text()
    assert "1 job(s) without metrics.json (failed, killed or still running), not in the table: 2" in md
    assert "not in the table: 2" in capsys.readouterr().out
    (failed / "config.yaml").unlink()  # Hydra's own .hydra/config.yaml is no job of its own
    assert main([str(root)]) == 0 and "without metrics.json" not in (root / "report" / "summary.md").read_text()


def test_one_setting_gets_one_label_whatever_shares_its_cell(tmp_path):
    """Labels were the entries that differ within a (category, k) cell: a k = 1 run beside a
    run with another max_loo was labelled model.max_loo=16, the same setting's k = 2 run (alone in
    its cell) not, so one setting had two labels and the few-shot table split in two."""
    root = tmp_path / "sweeps"
    choices = {"model": "seven_feature", "aligner": "nearest", "features": "logical"}
    for i, (k, loo) in enumerate([(1, 16), (2, 16), (1, 8)]):
        cfg = _seven("tray", k, 42)
        cfg["model"]["max_loo"] = loo
        _job(root, str(i), cfg, 0.8, choices=choices)
    runs = collect(root).sort_values(["k_shot", "setting"])
    assert list(zip(runs["k_shot"], runs["setting"])) == [(1, "model.max_loo=16"), (1, "model.max_loo=8"),
                                                          (2, "model.max_loo=16")]


def test_the_few_shot_curve_keeps_k_in_order(tmp_path, monkeypatch):
    """Each category's line met its own k first: a category with only k = 3 drawn before one with
    k = 2 and 3 put 3 left of 2 on the shared text axis."""
    import matplotlib.axes

    from locoad.report import plot

    ticks = {}
    real = matplotlib.axes.Axes.set_xticks
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xticks",
                        lambda self, t, labels=None, **kw: ticks.update(labels=[str(x) for x in labels or []]) or real(self, t, labels, **kw))
    runs = pd.DataFrame({"category": ["a", "b", "b", "b"], "k_shot": [3, 2, 3, 10], "f1_max": [0.5, 0.6, 0.7, 0.8]})
    plot(runs, tmp_path)
    assert ticks["labels"] == ["2", "3", "10"]


def test_collect_with_missing_metrics_raises_no_pandas_warning(tmp_path):
    """The labels were grouped on a copy of every column filled with "–": pandas 3 warns (and will
    raise) when a float metric column with a missing value is filled with a string."""
    import warnings

    root = tmp_path / "multi"
    choices = {"model": "seven_feature", "aligner": "nearest", "features": "logical"}
    for i, seed in enumerate((0, 1)):
        _job(root, str(i), _seven("tray", 4, seed), 0.8, choices=choices)  # structural auroc None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = collect(root)
    assert len(runs) == 2 and runs["structural_auroc"].isna().all()
