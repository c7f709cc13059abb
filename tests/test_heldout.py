"""The held-out scene family (never tuned on): layout, sizes, masks, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from locoad.data.ground_truth import load_defects_config
from locoad.data.heldout import CATEGORIES, PIXEL_VALUES, SIZES, generate_heldout
from locoad.data.layout import list_split

COUNTS = {"n_train": 1, "n_validation": 0, "n_test_good": 1, "n_logical": 4, "n_structural": 3}


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_heldout(tmp_path_factory.mktemp("heldout"), seed=1, size_factor=0.08, **COUNTS)


def test_layout_sizes_and_masks(root: Path) -> None:
    for cat in CATEGORIES:
        assert "never tune" in json.loads((root / cat / ".complete.json").read_text())["note"]
        shape = tuple(round(v * 0.08) for v in SIZES[cat])[::-1]
        samples = list_split(root / cat, "test")
        assert sorted({s.anomaly_type for s in samples}) == ["good", "logical_anomalies", "structural_anomalies"]
        for s in samples:
            img = np.asarray(Image.open(s.path))
            assert img.shape == (*shape, 3) and s.part_labels is not None
            assert np.asarray(Image.open(s.part_labels)).max() >= 2  # parts on their container
            if s.label:  # every anomaly has a non-empty ground-truth region, valued as LOCO's
                values = {int(v) for m in s.masks for v in np.unique(np.asarray(Image.open(m)))}
                assert len(values) == 2 and values - {0} <= set(PIXEL_VALUES.values()), s.path
        assert {d.name for d in load_defects_config(root / cat).values()} == set(PIXEL_VALUES)


def test_deterministic_and_seeded(root: Path, tmp_path: Path) -> None:
    again = generate_heldout(tmp_path / "a", seed=1, size_factor=0.08, categories=["flask"], **COUNTS)
    other = generate_heldout(tmp_path / "b", seed=2, size_factor=0.08, categories=["flask"], **COUNTS)
    assert _digest(again / "flask") == _digest(root / "flask") != _digest(other / "flask")
    with pytest.raises(ValueError, match="unknown held-out categories"):
        generate_heldout(tmp_path / "c", categories=["breakfast_box"])


def test_clean_capture_renders_the_same_scenes_without_the_camera(root: Path, tmp_path: Path) -> None:
    clean = generate_heldout(tmp_path / "c", seed=1, size_factor=0.08, categories=["flask"], capture="clean", **COUNTS)
    photo, still = (np.asarray(Image.open(r / "flask/train/good/000.png"), np.float32) for r in (root, clean))
    labels = [np.asarray(Image.open(r / "flask/part_labels/train/good/000.png")) for r in (root, clean)]
    assert photo.shape == still.shape
    # same parts (label areas within the photo set's zoom), but no noise: flat regions are flat
    assert abs((labels[0] > 0).mean() - (labels[1] > 0).mean()) < 0.1
    assert still[:4, :4].std(axis=(0, 1)).max() == 0 < photo[:4, :4].std(axis=(0, 1)).max()
    with pytest.raises(ValueError, match="capture"):
        generate_heldout(tmp_path / "d", capture="studio")


def test_a_complete_category_is_kept_when_others_are_added(tmp_path: Path) -> None:
    # One marker per category folder: asking for more categories writes only the new ones.
    first = generate_heldout(tmp_path, seed=1, size_factor=0.08, categories=["flask"], **COUNTS)
    image = first / "flask/train/good/000.png"
    before, seed1 = image.stat().st_mtime_ns, image.read_bytes()
    generate_heldout(tmp_path, seed=1, size_factor=0.08, categories=["flask", "pin_box"], **COUNTS)
    assert image.stat().st_mtime_ns == before and (tmp_path / "pin_box/.complete.json").is_file()
    generate_heldout(tmp_path, seed=2, size_factor=0.08, categories=["flask"], **COUNTS)  # other seed: rewritten
    assert image.read_bytes() != seed1  # by content: a coarse file clock could repeat the mtime
    (tmp_path / "cable_pair").mkdir()  # a folder this family did not write is never deleted
    with pytest.raises(FileExistsError, match="not written by"):
        generate_heldout(tmp_path, seed=2, size_factor=0.08, categories=["cable_pair"], **COUNTS)


def test_a_half_written_description_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A folder whose dataset.json is not JSON (cut off mid-write by a kill before the writes were
    atomic, or written by someone else) is not vouched for: the same one-line refusal as a foreign
    folder, never a JSON traceback, and the folder is left as it is."""
    (tmp_path / "flask").mkdir()
    (tmp_path / "flask" / "dataset.json").write_text('{"family": "locoad.data.he')
    with pytest.raises(FileExistsError, match="not written by"):
        generate_heldout(tmp_path, seed=1, size_factor=0.08, categories=["flask"], **COUNTS)
    assert (tmp_path / "flask" / "dataset.json").is_file()
