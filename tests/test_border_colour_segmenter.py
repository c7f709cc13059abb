"""BorderColourSegmenter: foreground from the border ring's colour, and the anomalydino preset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import compose_cfg, plant_twins
from locoad.data.synthetic import CATEGORIES, render_scene, sample_scene
from locoad.errors import ConfigError
from locoad.run import run
from locoad.segmenters.border_colour import BorderColourSegmenter
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter
from locoad.utils import build


@pytest.mark.parametrize("category", CATEGORIES)
def test_foreground_covers_the_true_parts(category):
    """Foreground IoU against the true part map. Measured at 128 px on 30 scenes per category:
    min 0.985 (splicing_connectors, its thin cable), >= 0.999 elsewhere; the errors are boundary
    pixels. A lost object costs far more (Otsu losing the connector housings: IoU ~0.35), so
    0.95 keeps a margin and still catches it."""
    seg = BorderColourSegmenter()
    for i in range(2):
        scene = render_scene(sample_scene(category, np.random.default_rng([11, i])), 128)
        found, true = seg(scene.rgb) > 0, scene.part_labels > 0
        iou = (found & true).sum() / (found | true).sum()
        assert iou > 0.95, f"{category} scene {i}: foreground IoU {iou:.3f}"


def _noisy(img: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, sigma, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def test_every_object_of_a_multicolour_foreground_is_found():
    """Pale housings (CIELAB distance ~33 from the grey) and a saturated bar (~83): Otsu on the
    distance image would split at ~36, between the two foreground colours, and lose the housings.
    The background-spread threshold keeps all three objects."""
    img = np.full((96, 96, 3), (136, 139, 143), np.uint8)
    objects = [np.s_[20:44, 12:30], np.s_[20:44, 66:84], np.s_[60:80, 20:76]]
    img[objects[0]] = img[objects[1]] = (230, 230, 222)
    img[objects[2]] = (228, 202, 38)
    out = BorderColourSegmenter()(_noisy(img))
    assert out.max() == 3
    assert all((out[o] > 0).mean() > 0.95 for o in objects)  # upsampling may miss an edge pixel


@pytest.mark.parametrize("sigma", [0.0, 3.0, 20.0])
def test_uniform_image_has_no_foreground(sigma):
    img = _noisy(np.full((64, 80, 3), 120, np.uint8), sigma)
    out = BorderColourSegmenter()(img)
    assert out.shape == (64, 80) and out.dtype == np.int32 and not out.any()


@pytest.mark.parametrize("shape", [(97, 131), (131, 97), (9, 7)])
def test_grayscale_as_rgb_and_odd_sizes(shape):
    h, w = shape
    grey = np.full(shape, 200, np.uint8)
    grey[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 40
    out = BorderColourSegmenter()(_noisy(np.repeat(grey[..., None], 3, axis=-1)))
    assert out.shape == shape and out.dtype == np.int32 and out.max() == 1
    assert out[h // 2, w // 2] == 1 and out[0, 0] == 0
    truth = grey == 40
    assert ((out > 0) & truth).sum() / ((out > 0) | truth).sum() > 0.8


def test_background_is_never_a_segment():
    """The objects are the segments: without the two-edge rule, an object across a corner is kept,
    the background still is not."""
    img = np.full((64, 64, 3), 90, np.uint8)
    img[40:, 40:] = (200, 40, 40)  # touches the bottom and right edges
    img[10:20, 10:20] = (40, 40, 200)
    img = _noisy(img)
    assert BorderColourSegmenter()(img).max() == 1
    kept = BorderColourSegmenter(drop_background=False)(img)
    assert kept.max() == 2 and (kept[50:, 50:] > 0).all() and (kept[:5, :30] == 0).all()


def test_anomalydino_preset_composes(tmp_path):
    cfg = compose_cfg(["experiment=anomalydino"], tmp_path / "run")
    assert cfg.segmenter._target_.endswith("BorderColourSegmenter")
    assert list(cfg.features) == ["anomalydino"]
    assert isinstance(build(cfg.segmenter), BorderColourSegmenter)
    assert not any(f.needs_classes for f in build(cfg.features).values())  # so alignment is skipped


def test_anomalydino_preset_runs_end_to_end(loco_root, tmp_path):
    plant_twins(loco_root)  # each structural anomaly = its good twin + a scratch
    out = tmp_path / "run"
    overrides = [
        "experiment=anomalydino",
        "data=mvtec_loco",
        "data.category=widgets",
        "data.k_shot=3",
        "data.num_workers=0",
        "backbone.image_size=112",
        "model.work_size=64",
        "logger=csv",
        f"data.root={loco_root}",
    ]
    run(compose_cfg(overrides, out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"anomalydino", "fused"}
    # no aligner ran, so no alignment accuracy; segmentation quality is still measured
    assert set(metrics["alignment"]) == {"foreground_iou"} and 0.5 < metrics["alignment"]["foreground_iou"] <= 1
    table = pd.read_csv(out / "scores.csv")
    assert len(table) == 9 and table["anomalydino"].notna().all()
    # the scratched copy of every good image scores above it (foreground patch kNN sees it)
    table["id"] = table["path"].map(lambda p: p.rsplit("/", 1)[-1])
    by = {t: g.set_index("id")["anomalydino"] for t, g in table.groupby("anomaly_type")}
    assert len(by["good"]) == 3 and (by["structural_anomalies"] > by["good"]).all(), by
    assert metrics["anomalydino"]["structural"]["auroc"] == 1.0



def test_a_ring_over_half_the_image_or_a_bad_work_size_is_refused():
    """border=0.6 made the ring the whole image: a large object was the 'background' colour and
    vanished; work_size=-5 resized every image to 1x1 px. Both ran without a word."""
    with pytest.raises(ConfigError, match="segmenter.border"):
        BorderColourSegmenter(border=0.6)
    for bad in (-5, 0, 4, 64.0):
        with pytest.raises(ConfigError, match="segmenter.work_size"):
            BorderColourSegmenter(work_size=bad)
        with pytest.raises(ConfigError, match="segmenter.work_size"):
            FelzenszwalbSegmenter(work_size=bad)
    assert BorderColourSegmenter(border=0.0, work_size=None).work_size is None
