"""benchmarks/demo_devices.py: two run directories compared (the CPU-vs-GPU demo check)."""

from __future__ import annotations

import json

import demo_devices
import pandas as pd
import pytest


def write_run(d, scores, metrics):
    d.mkdir()
    pd.DataFrame({"path": ["a.png", "b.png"], "label": [0, 1], "anomaly_type": ["good", "logical_anomalies"],
                  **scores, "extra/foreground_iou": [1.0, 0.0]}).to_csv(d / "scores.csv", index=False)
    (d / "metrics.json").write_text(json.dumps(metrics))


def test_compare_finds_the_largest_difference_per_column_and_metric_kind(tmp_path):
    metrics = {"fused": {"auroc": 1.0, "f1_max": 1.0, "pixel": {"au_spro": {"mean": {"0.05": 0.5}}}},
               "fusion": {"scales": {"fused": 2.0}}}
    write_run(tmp_path / "a", {"patch": [1.0, 2.0], "fused": [10.0, 20.0]}, metrics)
    moved = json.loads(json.dumps(metrics))
    moved["fused"]["pixel"]["au_spro"]["mean"]["0.05"] = 0.5 + 3e-6
    moved["fusion"]["scales"]["fused"] = 9.0  # a fitted divisor, not a metric
    write_run(tmp_path / "b", {"patch": [1.0, 2.0 * (1 + 4e-3)], "fused": [10.0 * (1 + 1e-5), 20.0]}, moved)
    got = demo_devices.compare(tmp_path / "a", tmp_path / "b")
    assert got["score_max_rel_diff"] == pytest.approx({"patch": 4e-3, "fused": 1e-5}, rel=1e-6)
    assert got["image_metrics"] == 2 and got["image_metric_max_abs_diff"] == 0.0
    assert got["pixel_metric_max_abs_diff"] == pytest.approx(3e-6, rel=1e-6)


def test_compare_refuses_runs_of_different_images(tmp_path):
    write_run(tmp_path / "a", {"fused": [1.0, 2.0]}, {})
    write_run(tmp_path / "b", {"fused": [1.0, 2.0]}, {})
    table = pd.read_csv(tmp_path / "b" / "scores.csv")
    table.loc[0, "path"] = "c.png"
    table.to_csv(tmp_path / "b" / "scores.csv", index=False)
    with pytest.raises(SystemExit, match="different images"):
        demo_devices.compare(tmp_path / "a", tmp_path / "b")
