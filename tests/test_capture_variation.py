"""capture="varied" synthetic data: native non-square sizes, geometry that labels follow, photo
effects, LOCO mask values, a layout per generator seed; non-square images through the loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from locoad.data.dataset import LocoDataset
from locoad.data.layout import list_split
from locoad.data.synthetic import check_constraints, generate, render_scene, sample_scene
from locoad.data.synthetic.generator import DEFECT_PIXEL_VALUES, NATIVE_SIZES, sample_layout

FACTOR = 0.08  # 64-136 px: the smallest size the generator accepts
COUNTS = {"n_train": 2, "n_validation": 0, "n_test_good": 1, "n_logical": 2, "n_structural": 2}
CATS = ["juice_bottle", "splicing_connectors"]  # the two most elongated native sizes


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("varied"), CATS, seed=5, capture="varied",
                    size_factor=FACTOR, **COUNTS)


def test_native_sizes_labels_masks_and_rules(root: Path) -> None:
    assert json.loads((root / CATS[0] / ".complete.json").read_text())["capture"] == "varied"
    for cat in CATS:
        w, h = NATIVE_SIZES[cat]
        shape = (round(h * FACTOR), round(w * FACTOR))
        assert shape[0] != shape[1]
        for img in sorted((root / cat).glob("test/*/*.png")) + sorted((root / cat).glob("train/*/*.png")):
            rel = img.relative_to(root / cat)
            assert np.asarray(Image.open(img)).shape == (*shape, 3)
            parts = np.asarray(Image.open(root / cat / "part_labels" / rel))
            assert parts.shape == shape and parts.any()
            edge = np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]])
            assert not edge.any(), f"{rel}: a part touches the image border"
            meta = json.loads((root / cat / "meta" / rel.with_suffix(".json")).read_text())
            assert meta["image_size"] == list(shape) and "vignette" in meta["lighting"]
            if rel.parts[1] == "good":
                assert check_constraints(meta) == []
            else:
                for m in (root / cat / "ground_truth" / rel.parts[1] / img.stem).glob("*.png"):
                    values = np.unique(np.asarray(Image.open(m)))  # LOCO: one value per defect kind
                    assert values[0] == 0 and len(values) == 2 and values[1] in DEFECT_PIXEL_VALUES.values()


def test_spot_tone_curve_and_jpeg_change_pixels_not_the_scene(root: Path) -> None:
    """A varied capture's light spot, tone curve and JPEG round trip (version 5) come from their
    own stream: without them the same meta renders the same parts, only other pixels; clean
    captures have none of them."""
    meta = json.loads((root / CATS[0] / "meta/train/good/000.json").read_text())
    light = meta["lighting"]
    assert len(light["spot"]) == 4 and 0.8 <= light["gamma"] <= 1.25 and 75 <= light["jpeg"] <= 95
    size = tuple(meta["image_size"])
    plain = {**meta, "lighting": {k: v for k, v in light.items() if k not in ("spot", "gamma", "jpeg")}}
    full, bare = render_scene(meta, size), render_scene(plain, size)
    assert np.array_equal(full.part_labels, bare.part_labels)
    assert np.abs(full.rgb.astype(int) - bare.rgb.astype(int)).mean() > 1.0
    assert np.array_equal(full.rgb, np.asarray(Image.open(root / CATS[0] / "train/good/000.png")))
    clean = sample_scene(CATS[0], np.random.default_rng(0))
    assert not {"spot", "gamma", "jpeg"} & set(clean["lighting"])


def test_layout_is_fixed_per_seed_and_differs_between_seeds() -> None:
    a = sample_layout("pushpins", 0)
    assert sample_layout("pushpins", 0) == a
    others = [sample_layout("pushpins", s) for s in range(1, 6)]
    assert any((o["flip_x"], o["flip_y"]) != (a["flip_x"], a["flip_y"]) for o in others)
    assert len({round(o["angle"], 3) for o in [a, *others]}) == 6


def _plain(category: str, pose: dict) -> dict:
    meta = sample_scene(category, np.random.default_rng(0), index=0)
    meta["pose"] = pose
    meta["lighting"] = {"brightness": 1.0, "white_balance": [1, 1, 1], "gradient": [0, 0], "noise_sigma": 0}
    return meta


def _worst_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest per-part-type IoU of two label maps (a wrong part shape shows up here)."""
    return min(((a == t) & (b == t)).sum() / ((a == t) | (b == t)).sum() for t in np.unique(a) if t)


@pytest.mark.parametrize("category", ["screw_bag", "juice_bottle"])  # screw head, bottle neck
def test_part_labels_follow_mirror_and_rotation(category: str) -> None:
    still = {"angle": 0.0, "shift": [0.0, 0.0]}
    base = render_scene(_plain(category, still), 128).part_labels
    mirrored = render_scene(_plain(category, {**still, "flip_x": True}), 128).part_labels
    assert _worst_iou(mirrored, np.fliplr(base)) > 0.95
    flipped = render_scene(_plain(category, {**still, "flip_y": True}), 128).part_labels
    assert _worst_iou(flipped, np.flipud(base)) > 0.95
    turned = render_scene(_plain(category, {**still, "angle": 90.0}), 128).part_labels
    assert _worst_iou(turned, np.rot90(base, -1)) > 0.95  # +90 deg: x -> y, y -> -x
    assert _worst_iou(mirrored, base) < 0.9  # not a symmetric scene: the checks can fail


def test_non_square_canvas_keeps_the_scene_centred() -> None:
    meta = _plain("pushpins", {"angle": 0.0, "shift": [0.0, 0.0]})
    square = render_scene(meta, 64).part_labels
    wide = render_scene(meta, (64, 100)).part_labels
    assert (wide[:, 18:82] != square).mean() < 0.002 and not wide[:, :18].any()


def test_bad_capture_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="capture='foggy'; use one of clean, varied"):
        generate(tmp_path, capture="foggy")
    with pytest.raises(ValueError, match="size_factor >= 0.08"):
        generate(tmp_path, capture="varied", size_factor=0.01)


def test_loader_handles_non_square_images(root: Path) -> None:
    cdir = root / "splicing_connectors"
    samples = list_split(cdir, "test")
    item = LocoDataset(samples, image_size=48)[len(samples) - 1]  # a structural anomaly
    assert np.asarray(Image.open(samples[-1].path)).shape[:2] == tuple(round(v * FACTOR) for v in (850, 1700))
    assert item["image"].shape == (3, 48, 48) and item["mask"].shape == (48, 48)
    assert item["mask"].sum() > 0  # mask values below 255 still mark the defect
