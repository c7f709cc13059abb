"""benchmarks/target_check.py: every shot draw against the mean and the per-part floor."""

from __future__ import annotations

import json

import pytest
import target_check


def _row(category: str, seed: int, auroc: float, logical: float, structural: float, k: int = 4) -> dict:
    fused = {"auroc": auroc, "logical": {"auroc": logical}, "structural": {"auroc": structural}}
    return {"category": category, "aligner": "hungarian", "fusion": "loo", "k": k, "seed": seed,
            "metrics": {"fused": fused}}


def test_a_draw_misses_on_its_lowest_part_though_the_mean_over_seeds_passes(tmp_path, capsys):
    rows = [_row("a", 0, 0.95, 0.96, 0.94), _row("b", 0, 0.90, 0.91, 0.89),  # seed 0 passes
            _row("a", 1, 0.95, 0.96, 0.94), _row("b", 1, 0.80, 0.62, 0.98),  # seed 1: b's logical part
            _row("a", 1, 0.10, 0.10, 0.10, k=8)]  # another k: not checked at --shots 4
    (tmp_path / "g.json").write_text(json.dumps({"results": rows}))
    draws = target_check.draws(json.loads((tmp_path / "g.json").read_text()), {4})
    assert [round(d["mean"], 3) for d in draws] == [0.925, 0.875]
    assert draws[1]["lowest"] == {"auroc": 0.62, "category": "b", "part": "logical"}
    assert [target_check.passes(d, 0.85, 0.70) for d in draws] == [True, False]
    target_check.main([str(tmp_path / "g.json"), "--mean", "0.85", "--floor", "0.70"])
    out = capsys.readouterr().out
    assert "1 of 2 draws pass" in out and "MISS" in out
    target_check.main([str(tmp_path / "g.json"), "--seeds", "0"])
    assert "1 of 1 draws pass" in capsys.readouterr().out


def test_no_matching_rows_or_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "g.json").write_text(json.dumps({"results": [_row("a", 0, 0.9, 0.9, 0.9)]}))
    with pytest.raises(SystemExit):
        target_check.main([str(tmp_path / "g.json"), "--shots", "8"])
    assert "no rows match --shots / --seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        target_check.main([str(tmp_path / "missing.json")])
    assert "no such result file" in capsys.readouterr().err
    (tmp_path / "untyped.json").write_text(json.dumps({"results": [{**_row("a", 0, 0.9, 0.9, 0.9),
                                                                   "metrics": {"fused": {"auroc": 0.9}}}]}))
    with pytest.raises(SystemExit):
        target_check.main([str(tmp_path / "untyped.json")])
    assert "untyped.json: not a quality_synthetic.py result file" in capsys.readouterr().err
    # one category without its logical part: the draw cannot be judged (it passed on the other part)
    half = {"results": [_row("a", 0, 0.9, 0.9, 0.9), {**_row("b", 0, 0.9, 0.9, 0.9),
                                                      "metrics": {"fused": {"auroc": 0.9, "structural": {"auroc": 0.9}}}}]}
    (tmp_path / "half.json").write_text(json.dumps(half))
    with pytest.raises(SystemExit):
        target_check.main([str(tmp_path / "half.json")])
    assert "b (hungarian/loo k=4 seed=0) has no logical fused AUROC" in capsys.readouterr().err


def test_parts_gives_each_parts_spread_over_the_draws(tmp_path, capsys):
    rows = [_row("a", 0, 0.9, 0.80, 0.95), _row("a", 1, 0.9, 0.60, 0.97), _row("a", 2, 0.9, 0.70, 0.99)]
    (tmp_path / "g.json").write_text(json.dumps({"results": rows}))
    lines = target_check.part_spread(target_check.draws(json.loads((tmp_path / "g.json").read_text()), {4}), 0.65)
    assert lines[0].split()[:2] == ["a", "logical"]
    assert "mean 0.700  sd 0.100  lowest 0.60  below 0.65: 1" in lines[0]
    assert "mean 0.970  sd 0.020  lowest 0.95  below 0.65: 0" in lines[1]
    target_check.main([str(tmp_path / "g.json"), "--floor", "0.65", "--parts"])
    assert "sd 0.100" in capsys.readouterr().out
