"""benchmarks/quality_synthetic.py's per-defect table: which kinds of anomaly a configuration misses."""

from __future__ import annotations

import json

import pytest
import quality_synthetic
import torch

from locoad.data.synthetic.generator import VERSION


def _row(k: int, seed: int, per_defect: dict | None) -> dict:
    fused = {"f1_max": 1.0, "auroc": 1.0}
    if per_defect is not None:
        fused["per_defect"] = {name: {"auroc": a, "n": 3} for name, a in per_defect.items()}
    return {"category": "pushpins", "k": k, "seed": seed, "metrics": {"fused": fused}}


def test_per_defect_table_averages_seeds_per_k():
    results = [_row(1, 0, {"missing": 0.5, "scratch": 0.9}), _row(1, 1, {"missing": 0.7, "scratch": 1.0}),
               _row(4, 0, {"missing": 1.0})]
    lines = quality_synthetic.markdown_per_defect(results).splitlines()
    assert lines[0] == "| category | defect | images | fused AUROC k=1 | fused AUROC k=4 |"
    assert lines[2] == "| pushpins | missing | 3 | 0.60 | 1.00 |"
    assert lines[3] == "| pushpins | scratch | 3 | 0.95 |  |"  # no k = 4 run showed it


def test_per_defect_table_is_empty_without_defect_names():
    assert quality_synthetic.markdown_per_defect([_row(1, 0, None)]) == ""


def test_grid_file_records_the_size_factor_of_every_variant_that_has_one():
    assert quality_synthetic.size_factor_of("heldout", 1.0) == 1.0  # the held-out captures' native size
    assert quality_synthetic.size_factor_of("heldout_clean", 0.5) == 0.5
    assert quality_synthetic.size_factor_of("varied", 0.5) == 0.5
    assert quality_synthetic.size_factor_of("clean", 0.5) is None  # 256 px squares


def test_test_images_sets_every_family_s_test_counts_and_names_its_folder(tmp_path, monkeypatch):
    """``--test-images N``: N good, logical and structural test images in every family, in a
    folder of its own (a grid made with the default 12 is never mixed with it)."""
    import pytest

    monkeypatch.setattr(quality_synthetic, "REPO", tmp_path)
    for variant, size in (("clean", 0.5), ("heldout_clean", 0.1), ("workbench_clean", 0.1)):
        root, cats = quality_synthetic.prepare_data(variant, 0, size, test_images=2)
        assert root.endswith("_t2")
        for kind in ("good", "logical_anomalies", "structural_anomalies"):
            assert len(list((tmp_path.joinpath(root) / cats[0] / "test" / kind).glob("*.png"))) == 2, (variant, kind)
    with pytest.raises(ValueError, match="--test-images must be >= 1"):
        quality_synthetic.prepare_data("clean", 0, 0.5, test_images=0)


def test_device_cuda_without_cuda_stops_before_any_work(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as info:
        quality_synthetic.main(["--root", str(tmp_path / "data"), "--device", "cuda"])
    assert info.value.code == 2 and not (tmp_path / "data").exists()
    assert "--device cuda: torch sees no CUDA device here; drop --device" in capsys.readouterr().err


def test_the_benchmark_keeps_the_stage_cache_within_its_bound(tmp_path):
    """quality_synthetic.py writes features and label maps to the stage cache; like a run, it
    prunes the cache to model.cache.max_gb at the end (unbounded, benchmark grids fill a disk)."""
    stages = tmp_path / "cache" / "stages"
    args = ["--root", str(tmp_path / "data"), "--test-images", "1", "--categories", "juice_bottle", "--shots", "1",
            "--seeds", "0", "--aligners", "hungarian", "--out", str(tmp_path / "out.json"), "--overrides",
            "backbone=handcrafted", "features=robust", "backbone.image_size=112", "model.work_size=64",
            "segmenter.work_size=64", f"paths.cache_dir={tmp_path / 'cache'}",
            "model.cache.min_free_gb=null"]  # it must write, whatever the test machine's free disk
    quality_synthetic.main(args)
    assert any(p.suffix in (".pt", ".npy") for p in stages.rglob("*"))  # it did write entries
    # the file names the data's generator and version: one variant's figures of two versions differ
    assert json.loads((tmp_path / "out.json").read_text())["data"] == f"locoad.data.synthetic version {VERSION}"
    quality_synthetic.main([*args, "model.cache.max_gb=1e-9"])
    assert not [p for p in stages.rglob("*") if p.is_file()]


def test_a_dump_names_the_image_files_its_scores_are_of(tmp_path):
    """Labels, types and defect names can all stay the same when a generator's new version
    redraws a category's images, so a dump of the old images joined to one of the new paired
    their scores by name; the files' checksums tell them apart."""
    import zlib

    import numpy as np

    args = ["--root", str(tmp_path / "data"), "--test-images", "1", "--categories", "juice_bottle", "--shots", "1",
            "--seeds", "0", "--aligners", "hungarian", "--out", str(tmp_path / "out.json"), "--dump",
            str(tmp_path / "d.npz"), "--overrides", "backbone=handcrafted", "features=robust",
            "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64",
            f"paths.cache_dir={tmp_path / 'cache'}", "model.cache.enabled=false"]
    quality_synthetic.main(args)
    dump = np.load(tmp_path / "d.npz")
    cat = tmp_path / "data" / "juice_bottle"
    test_files = sorted((cat / "test").rglob("*.png"))
    assert sorted(dump["juice_bottle/images"].tolist()) == sorted(zlib.crc32(p.read_bytes()) for p in test_files)
    assert len(dump["juice_bottle/train_images"]) == len(list((cat / "train" / "good").glob("*.png")))


def test_only_leaves_the_named_features_and_names_unknown_ones(capsys):
    """--only scores one feature alone (its dump then joins a grid's with refuse_grid.py)."""
    cfg = quality_synthetic.compose_config(quality_synthetic.only_features([], ["lite2_foreground_patch"]))
    assert list(cfg.features) == ["lite2_foreground_patch"]
    assert cfg.features.lite2_foreground_patch.backbone_part == "lite2"  # its settings kept
    with pytest.raises(SystemExit) as info:
        quality_synthetic.main(["--only", "no_such_feature"])
    assert info.value.code == 2
    assert "--only no_such_feature: not among this config's features" in capsys.readouterr().err


def test_the_tone_nuisance_bends_each_image_s_tones_and_moves_nothing():
    ramp = torch.linspace(0, 1, 32).repeat(4, 3, 32, 1)  # (4, 3, 32, 32): four grey ramps
    out, shifts = quality_synthetic.perturb(ramp, quality_synthetic.NUISANCE["tone"], seed=0)
    assert shifts == [(0.0, 0.0)] * 4
    assert torch.equal(out[..., 0], ramp[..., 0]) and torch.allclose(out[..., -1], ramp[..., -1])  # black, white stay
    mid = out[:, 0, 0, 16] - ramp[:, 0, 0, 16]
    assert mid.abs().max() > 0.02 and (mid > 0).any() and (mid < 0).any()  # brighter and darker mid-tones
    assert torch.all(out[..., 1:] >= out[..., :-1])  # a tone curve keeps the order of the tones
    mild, _ = quality_synthetic.perturb(ramp, quality_synthetic.NUISANCE["mild"], seed=0)
    assert not torch.allclose(mild, ramp)


def test_defect_by_score_table_has_a_column_per_score_fused_last(tmp_path, capsys):
    rows = [_row(4, 0, {"missing": 0.5}), _row(4, 1, {"missing": 0.7}), _row(1, 0, {"missing": 0.0})]
    for r, a in zip(rows, (0.2, 0.4, 0.0)):
        r["metrics"]["composition"] = {"auroc": 0.5, "per_defect": {"missing": {"auroc": a, "n": 3}}}
    lines = quality_synthetic.markdown_defect_by_score(rows, 4).splitlines()
    assert lines[0] == "| category | defect | images | composition | fused |"
    assert lines[2] == "| pushpins | missing | 3 | 0.30 | 0.60 |"  # the k = 1 run is left out
    assert quality_synthetic.markdown_defect_by_score(rows, 8) == ""
    (tmp_path / "r.json").write_text(json.dumps({"command": "c", "results": rows}))
    quality_synthetic.render([str(tmp_path / "r.json"), "--by-score", "4"])
    assert "| pushpins | missing | 3 | 0.30 | 0.60 |" in capsys.readouterr().out
    quality_synthetic.render([str(tmp_path / "r.json"), "--by-score", "2"])
    assert "no per-defect AUROC at k = 2" in capsys.readouterr().out


def _fused_row(aligner: str, seed: int, auroc: float) -> dict:
    part = {"f1_max": auroc, "auroc": auroc}
    return {"category": "pushpins", "k": 4, "seed": seed, "aligner": aligner, "fusion": "loo",
            "metrics": {"fused": {**part, "logical": part, "structural": part}}}


def test_tables_never_average_two_aligners_as_if_they_were_seeds(tmp_path, monkeypatch):
    """The fused table's rows and its mean averaged every aligner's runs together (the script's
    default runs two); the README's helper would have done the same with such a file."""
    import readme_tables

    results = [_fused_row("hungarian", 0, 0.9), _fused_row("hungarian", 1, 0.8), _fused_row("nearest", 0, 0.5)]
    text = quality_synthetic.markdown_fused(results)
    assert "aligner=hungarian, fusion=loo" in text and "aligner=nearest, fusion=loo" in text
    assert "| pushpins | 4 | 0–1 | 0.850 |" in text and "| pushpins | 4 | 0–0 | 0.500 |" in text
    assert "0.733" not in text  # the three runs' mean
    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    (tmp_path / "mixed.json").write_text(json.dumps({"results": results}))
    readme_tables.results.cache_clear()
    with pytest.raises(ValueError, match="several aligners / fusions"):
        readme_tables.results("mixed.json")


@pytest.mark.parametrize("override", ["data.shot_draw=torch", "+data.image_size=128", "aligner=nearest", "fusion=loo"])
def test_overrides_the_script_would_not_apply_as_a_run_does_are_refused(override):
    """data.* overrides were recorded but never applied (the script reads the data itself), and an
    aligner= or fusion= override fitted with one component while the rows named another."""
    with pytest.raises(SystemExit, match=override.split("=")[0].lstrip("+")):
        quality_synthetic.check_overrides(["features=robust", override])
    quality_synthetic.check_overrides(["features=robust", "backbone=efficientnet_lite0"])  # fine
