"""The workbench scene family (never tuned on): layout, masks, determinism, captures, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from locoad.data.ground_truth import load_defects_config
from locoad.data.layout import list_split
from locoad.data.workbench import (
    CATEGORIES,
    EDITS,
    FAMILY,
    PIXEL_VALUES,
    SIZES,
    STILL,
    STRUCTURAL,
    TYPES,
    _Camera,
    defect_names,
    generate_workbench,
    render,
    scene_of,
)

F = 0.15
COUNTS = {"n_train": 2, "n_validation": 1, "n_test_good": 1, "n_logical": 4, "n_structural": 5}
SPLITS = {("train", "good"): 2, ("validation", "good"): 1, ("test", "good"): 1,
          ("test", "logical_anomalies"): 4, ("test", "structural_anomalies"): 5}


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.png")):
        h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_workbench(tmp_path_factory.mktemp("workbench"), seed=1, size_factor=F, **COUNTS)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_workbench(tmp_path_factory.mktemp("workbench_clean"), seed=1, size_factor=F,
                              capture="clean", **COUNTS)


def test_layout_counts_and_descriptions(root: Path) -> None:
    for cat in CATEGORIES:
        cdir = root / cat
        assert "never tune" in json.loads((cdir / ".complete.json").read_text())["note"]
        desc = json.loads((cdir / "dataset.json").read_text())
        assert desc["family"] == FAMILY and desc["category"] == cat and tuple(desc["part_types"]) == TYPES[cat]
        shape = tuple(round(v * F) for v in SIZES[cat])[::-1]
        assert shape[0] != shape[1]  # none square
        for (split, kind), n in SPLITS.items():
            images = sorted((cdir / split / kind).glob("*.png"))
            assert [p.name for p in images] == [f"{i:03d}.png" for i in range(n)], (cat, split, kind)
            labels = sorted((cdir / "part_labels" / split / kind).glob("*.png"))
            assert [p.name for p in labels] == [p.name for p in images]
            for p in images:
                assert _png(p).shape == (*shape, 3)
                lab = _png(cdir / "part_labels" / split / kind / p.name)
                assert lab.shape == shape and lab.max() <= len(TYPES[cat]) and lab.max() >= 2
        truth = cdir / "ground_truth"
        assert sorted(d.name for d in truth.iterdir()) == ["logical_anomalies", "structural_anomalies"]
        for kind in ("logical_anomalies", "structural_anomalies"):
            stems = sorted(d.name for d in (truth / kind).iterdir())
            assert stems == [f"{i:03d}" for i in range(SPLITS["test", kind])]
            assert all(sorted(p.name for p in (truth / kind / s).iterdir()) == ["000.png"] for s in stems)
        config = json.loads((cdir / "defects_config.json").read_text())
        assert [e["defect_name"] for e in config] == defect_names(cat)
        values = [e["pixel_value"] for e in config]
        assert len(set(values)) == len(values) and max(values) < 255
        assert all(e["saturation_threshold"] == 1.0 and e["relative_saturation"] is True for e in config)


def test_masks_name_their_defects_and_every_kind_appears(root: Path) -> None:
    for ci, cat in enumerate(CATEGORIES):
        named = {d.pixel_value: d.name for d in load_defects_config(root / cat).values()}
        seen: dict[str, set] = {"logical_anomalies": set(), "structural_anomalies": set()}
        for s in list_split(root / cat, "test"):
            if not s.label:  # good images: no mask at all
                assert not s.masks and not (root / cat / "ground_truth" / "good").exists()
                continue
            (m,) = s.masks
            values = np.unique(_png(m))
            assert len(values) == 2 and values[0] == 0, s.path  # non-empty, one defect value
            seen[s.anomaly_type].add(named[int(values[1])])
        assert seen["logical_anomalies"] == {n for _, n in EDITS[cat]}, cat
        assert seen["structural_anomalies"] == set(STRUCTURAL), cat
        # at the default counts (12 + 12) every edit and every structural kind is drawn
        edits = {EDITS[cat][(i + ci) % len(EDITS[cat])][0] for i in range(12)}
        assert edits == {e for e, _ in EDITS[cat]}
        kinds = {scene_of(cat, 0, 4, i, "structural_anomalies")[0]["defects"][0]["kind"] for i in range(12)}
        assert kinds == set(STRUCTURAL)
    assert len(set(PIXEL_VALUES.values())) == len(PIXEL_VALUES) and max(PIXEL_VALUES.values()) < 255


def test_deterministic_and_seeded(root: Path, tmp_path: Path) -> None:
    again = generate_workbench(tmp_path / "a", seed=1, size_factor=F, categories=["spice_jar"], **COUNTS)
    other = generate_workbench(tmp_path / "b", seed=2, size_factor=F, categories=["spice_jar"], **COUNTS)
    image = "spice_jar/test/logical_anomalies/001.png"
    assert (again / image).read_bytes() == (root / image).read_bytes() != (other / image).read_bytes()
    assert _digest(again / "spice_jar") == _digest(root / "spice_jar") != _digest(other / "spice_jar")


def test_photo_and_clean_captures_show_the_same_scenes(root: Path, clean: Path) -> None:
    """Same parts of the same types in every image (the scene's random stream does not depend on
    the capture); only the camera moves (zoom +-5 %, tilt), and the clean capture has no noise."""
    for cat in CATEGORIES:
        for (split, kind), n in SPLITS.items():
            for i in range(n):
                rel = Path(cat, "part_labels", split, kind, f"{i:03d}.png")
                a, b = _png(root / rel), _png(clean / rel)
                assert a.shape == b.shape
                assert set(np.unique(a)) == set(np.unique(b)), rel
                for t in np.unique(a)[1:]:
                    na, nb = int((a == t).sum()), int((b == t).sum())
                    assert abs(na - nb) <= 0.3 * max(na, nb) + 8, (rel, t, na, nb)
        still = _png(clean / cat / "train/good/000.png").astype(float)
        again = generate_workbench(clean, seed=1, size_factor=F, capture="clean", **COUNTS)  # kept, not rewritten
        assert np.array_equal(_png(again / cat / "train/good/000.png"), still)
    # photo: JPEG, noise and light differ between two images of one scene's background; clean: texture only
    photo = _png(root / "bento_box/train/good/000.png").astype(float)
    still = _png(clean / "bento_box/train/good/000.png").astype(float)
    assert np.abs(np.diff(photo[:8, :8], axis=1)).mean() > np.abs(np.diff(still[:8, :8], axis=1)).mean()


def test_loads_through_the_datamodule(root: Path) -> None:
    # imported here: lightning's import is most of this file's time
    from locoad.data.datamodule import LocoDataModule

    dm = LocoDataModule(str(root), "led_board", k_shot=1, seed=0, image_size=64)
    dm.setup()
    assert len(dm.splits["train"]) == 1 and len(dm.splits["test"]) == 10
    item = dm.dataset("test")[len(dm.splits["test"]) - 1]
    assert tuple(item["image"].shape) == (3, 64, 64) and item["label"] == 1 and item["mask"].sum() > 0
    assert int(item["parts"].max()) >= 2
    gt = dm.ground_truth()
    names = [gt.defect_names(i) for i in range(len(gt.samples))]
    for s, found in zip(dm.splits["test"], names):
        assert (found == []) == (s.label == 0) and set(found) <= set(defect_names("led_board"))


def test_bad_inputs_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown workbench categories \['pin_box'\]; choose from"):
        generate_workbench(tmp_path, categories=["pin_box"])
    with pytest.raises(ValueError, match="capture must be 'photo' or 'clean'"):
        generate_workbench(tmp_path, capture="studio")
    with pytest.raises(ValueError, match=r"smaller than 64 px; use >= 0\.0[78]"):
        generate_workbench(tmp_path, size_factor=0.05)
    assert not any(tmp_path.iterdir())  # nothing written


def test_every_structural_defect_shows() -> None:
    """A dent on the LED board's dark chip used to change about 5 grey levels (one structural
    image in twelve per seed): every defect changes its mask by 8 on average, as the development
    family's do."""
    cat = "led_board"
    cm = _Camera(STILL, *(round(v * 0.25) for v in SIZES[cat]))
    for seed in (0, 1):
        for i in (4, 9):  # the board's dents
            scene, _ = scene_of(cat, seed, 4, i, "structural_anomalies")
            shown, _, (mask,) = render(cat, scene, cm)
            plain = render(cat, {**scene, "defects": []}, cm)[0]
            assert np.abs(shown - plain).max(0)[mask].mean() * 255 >= 8, (seed, i)
