"""The MVTec LOCO evaluation in a run: ground-truth channels, metrics.json keys, TIFF export, and an
independent sPRO computation from the exported TIFFs that must agree with metrics.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import compose_cfg, make_loco
from locoad.data.ground_truth import LocoGroundTruth, load_defects_config, read_channel
from locoad.data.layout import DataLayoutError, category_dir, list_split
from locoad.errors import ConfigError
from locoad.metrics.loco import loco_au_spro, loco_au_spro_maps
from locoad.run import per_score_spro, run

SIZE = (72, 96)  # (H, W): not square, so "original resolution" is tested
DEFECTS = [
    {"defect_name": "missing_disc", "pixel_value": 200, "saturation_threshold": 1.0, "relative_saturation": True},
    {"defect_name": "scratch", "pixel_value": 255, "saturation_threshold": 12, "relative_saturation": False},
    {"defect_name": "mirrored_scratch", "pixel_value": 254, "saturation_threshold": 0.5,
     "relative_saturation": True},
]
TINY = ["data=mvtec_loco", "data.category=widgets", "data.k_shot=3", "data.num_workers=0",
        "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "logger=none"]


def make_unseen(root: Path, with_config: bool = True) -> Path:
    """conftest's tiny category at 96x72 px, ground-truth values naming three defects."""
    make_loco(root)
    cdir = root / "widgets"
    for p in cdir.rglob("*.png"):
        a = np.asarray(Image.open(p))
        gt = "ground_truth" in p.parts
        if gt:
            value = 200 if "logical_anomalies" in p.parts else (255 if p.name == "000.png" else 254)
            a = (a > 0).astype(np.uint8) * value
        resample = Image.NEAREST if gt or "part_labels" in p.parts else Image.BILINEAR
        Image.fromarray(a).resize(SIZE[::-1], resample).save(p)
    if with_config:
        (cdir / "defects_config.json").write_text(json.dumps(DEFECTS))
    return root


def reference_au_spro(maps: dict, cdir: Path, kind: str, limit: float, n_thresholds: int = 400) -> float:
    """sPRO the slow, obvious way: a grid of thresholds, a loop, trapezoids: written apart from
    locoad.metrics.spro to cross-check it (reads only the TIFFs, the PNGs and the json)."""
    config = {d["pixel_value"]: d for d in json.loads((cdir / "defects_config.json").read_text())}
    images = []
    for (k, stem), amap in maps.items():
        if k not in ("good", kind):
            continue
        regions = []
        for png in sorted((cdir / "ground_truth" / k / stem).glob("*.png")) if k != "good" else []:
            a = np.asarray(Image.open(png))
            mask = a > 0
            d, area = config[int(a.max())], int(mask.sum())
            sat = d["saturation_threshold"] * area if d["relative_saturation"] else min(d["saturation_threshold"], area)
            regions.append((mask, sat))
        neg = ~np.any([m for m, _ in regions], axis=0) if regions else np.ones(amap.shape, bool)
        images.append((amap, regions, neg))
    every = np.concatenate([a.ravel() for a, _, _ in images])
    thresholds = np.unique(np.quantile(every, np.linspace(0, 1, n_thresholds)))[::-1]
    n_neg = sum(int(n.sum()) for _, _, n in images)
    fpr, spro = [0.0], [0.0]
    for t in thresholds:
        fpr.append(sum(int(((a >= t) & n).sum()) for a, _, n in images) / n_neg)
        spro.append(np.mean([min(((a >= t) & m).sum() / s, 1.0) for a, rs, _ in images for m, s in rs]))
    fpr, spro = np.array(fpr), np.array(spro)
    keep = fpr <= limit
    x, y = list(fpr[keep]), list(spro[keep])
    after = np.flatnonzero(fpr > limit)[0]
    x.append(limit)
    y.append(spro[after - 1] + (spro[after] - spro[after - 1]) * (limit - fpr[after - 1]) / (fpr[after] - fpr[after - 1]))
    return float(np.trapezoid(y, x) / limit)


def test_exported_tiffs_reproduce_metrics_json(tmp_path):
    root = make_unseen(tmp_path / "loco")
    out = tmp_path / "run"
    metrics = run(compose_cfg(TINY + [f"data.root={root}", "export.anomaly_maps=true"], out))
    saved = json.loads((out / "metrics.json").read_text())
    spro = saved["pixel"]["au_spro"]
    assert set(spro) == {"logical", "structural", "mean"}
    assert all(set(v) == {"0.01", "0.05", "0.1", "0.3", "1.0"} for v in spro.values())
    assert spro["mean"]["0.05"] == pytest.approx((spro["logical"]["0.05"] + spro["structural"]["0.05"]) / 2)
    fused = saved["fused"]
    assert fused["auroc_loco"] == pytest.approx((fused["logical"]["auroc"] + fused["structural"]["auroc"]) / 2)
    assert {k: v["n"] for k, v in fused["per_defect"].items()} == {"missing_disc": 3, "scratch": 3, "mirrored_scratch": 3}
    assert "pixel" in saved["class_agnostic_patch"] and "pixel" not in saved["class_count"]
    assert "per_defect" in saved["class_count"]
    assert metrics["pixel"]["au_spro"]["structural"]["0.05"] == spro["structural"]["0.05"]
    table = (out / "metrics.md").read_text().splitlines()
    assert table[0].startswith("| score | F1-max | AUROC | AU-sPRO@0.05 |")
    assert next(r for r in table if r.startswith("| fused ")).split(" | ")[3] == f"{spro['mean']['0.05']:.3f}"

    cdir = root / "widgets"
    tiffs = sorted((out / "anomaly_maps" / "widgets" / "test").rglob("*.tiff"))
    assert len(tiffs) == 9
    maps = {}
    for t in tiffs:
        a = tifffile.imread(t)
        assert a.dtype == np.float32 and a.shape == SIZE
        maps[(t.parent.name, t.stem)] = a
    for kind, short in (("logical_anomalies", "logical"), ("structural_anomalies", "structural")):
        ref = reference_au_spro(maps, cdir, kind, 0.05)
        assert abs(ref - spro[short]["0.05"]) < 0.03, (short, ref, spro[short]["0.05"])


def test_without_defects_config_plain_pro_said_once(tmp_path, caplog):
    root = make_unseen(tmp_path / "loco", with_config=False)
    with caplog.at_level(logging.WARNING, logger="locoad.data.ground_truth"):
        metrics = run(compose_cfg(TINY + [f"data.root={root}"], tmp_path / "run"))
    notes = [r for r in caplog.records if "defects_config.json" in r.getMessage()]
    assert len(notes) == 1 and "plain PRO" in notes[0].getMessage()
    assert "per_defect" not in metrics["fused"] and "au_spro" in metrics["pixel"]


def test_channels_and_saturation(tmp_path):
    root = make_unseen(tmp_path / "loco")
    cdir = category_dir(root, "widgets")
    gt = LocoGroundTruth(list_split(cdir, "test"), cdir)
    i = next(j for j, s in enumerate(gt.samples) if s.anomaly_type == "structural_anomalies")
    (a, b) = gt.channels(i)
    assert (a.defect.name, b.defect.name) == ("scratch", "mirrored_scratch")
    assert gt.regions(i)[0].saturation == min(12, a.mask.sum())
    assert gt.regions(i)[1].saturation == 0.5 * b.mask.sum()
    assert gt.defect_names(i) == ["mirrored_scratch", "scratch"] and gt.size(i) == SIZE
    good = next(j for j, s in enumerate(gt.samples) if s.anomaly_type == "good")
    assert gt.regions(good) == [] and gt.size(good) == SIZE


def test_bad_ground_truth_is_named(tmp_path, caplog, monkeypatch):
    root = make_unseen(tmp_path / "loco")
    cdir = root / "widgets"
    png = cdir / "ground_truth" / "logical_anomalies" / "000" / "000.png"
    a = np.asarray(Image.open(png)).copy()
    a[0, 0] = 17
    Image.fromarray(a).save(png)
    with pytest.raises(DataLayoutError, match="several non-zero values .* re-export it as a lossless PNG"):
        read_channel(png, load_defects_config(cdir))
    # without defects_config.json any value > 0 is the region (a smoothed mask failed here)
    # ... with a warning, once: a JPEG mask's noise widened the region without a word
    import locoad.data.ground_truth as ground_truth

    monkeypatch.setattr(ground_truth, "_SEVERAL_VALUES_SAID", False)
    with caplog.at_level("WARNING", logger="locoad.data.ground_truth"):
        channel = read_channel(png, None)
        read_channel(png, None)
    assert channel.mask.sum() == (a > 0).sum() and channel.pixel_value == a.max() and channel.defect is None
    assert caplog.text.count("several non-zero values [17, ") == 1 and "lossless PNG" in caplog.text
    a[0, 0] = 0
    Image.fromarray((a > 0).astype(np.uint8) * 99).save(png)
    with pytest.raises(DataLayoutError, match="pixel value 99"):
        read_channel(png, load_defects_config(cdir))
    (cdir / "defects_config.json").write_text(json.dumps([{"defect_name": "x", "pixel_value": 3}]))
    with pytest.raises(DataLayoutError, match="lacks saturation_threshold"):
        load_defects_config(cdir)
    # JSON types checked: bool("false") was True, 254.9 became 254, a relative share of 50 was
    # a saturation 50 times the region (never reached)
    good = {"defect_name": "x", "pixel_value": 3, "saturation_threshold": 0.5, "relative_saturation": False}
    for bad in ({"relative_saturation": "false"}, {"pixel_value": 254.9}, {"pixel_value": True},
                {"saturation_threshold": 50, "relative_saturation": True}, {"saturation_threshold": "1"}):
        (cdir / "defects_config.json").write_text(json.dumps([{**good, **bad}]))
        with pytest.raises(DataLayoutError, match="JSON booleans"):
            load_defects_config(cdir)
    (cdir / "defects_config.json").write_text(json.dumps([good]))
    assert load_defects_config(cdir)[3].relative_saturation is False


def test_per_score_spro_off_evaluates_the_fused_map_only(tmp_path):
    root = make_unseen(tmp_path / "loco")
    metrics = run(compose_cfg(TINY + [f"data.root={root}", "evaluation.per_score_spro=false"], tmp_path / "run"))
    assert set(metrics["pixel"]["au_spro"]) == {"logical", "structural", "mean"}
    assert "per_defect" in metrics["class_agnostic_patch"]  # the rest of the evaluation stays
    assert not [name for name, m in metrics.items() if isinstance(m, dict) and "pixel" in m and name != "pixel"]
    with pytest.raises(ConfigError, match="evaluation.per_score_spro='no' must be true or false"):
        per_score_spro(compose_cfg(["evaluation.per_score_spro=no"], tmp_path / "bad"))


def test_several_scores_maps_evaluated_side_by_side_as_one_by_one(tmp_path):
    """loco_au_spro_maps runs the scores' sPRO in threads: the same numbers as one at a time."""
    root = make_unseen(tmp_path / "loco")
    cdir = category_dir(root, "widgets")
    gt = LocoGroundTruth(list_split(cdir, "test"), cdir)
    rng = np.random.default_rng(0)
    maps = {name: [rng.random((9, 12)).astype(np.float32) for _ in range(len(gt))] for name in ("", "a", "b")}
    one_by_one = {name: loco_au_spro(m, LocoGroundTruth(list_split(cdir, "test"), cdir)) for name, m in maps.items()}
    assert loco_au_spro_maps(maps, gt, workers=3) == one_by_one
    assert len({json.dumps(s, sort_keys=True) for s in one_by_one.values()}) == 3  # three different maps
    assert loco_au_spro_maps({}, gt, workers=2) == {}
