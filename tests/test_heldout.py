"""The held-out scene family (never tuned on): layout, sizes, masks, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from locoad.data.ground_truth import load_defects_config
from locoad.data.heldout import (
    BUILDERS,
    CATEGORIES,
    PIXEL_VALUES,
    SIZES,
    STRUCTURAL,
    _structural,
    fastener_bag,
    generate_heldout,
    pin_box,
    render,
)
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


def test_a_misplaced_pin_lies_on_a_wall_between_two_compartments() -> None:
    """The logical edit moves a pin onto a wall; it used to land in a compartment's middle, which
    left about one such image in ten normal (the pin back in its own compartment)."""
    cells = np.array([(0.5 + (c - 1.5) * 0.19, 0.5 + (r - 0.5) * 0.22) for r in range(2) for c in range(4)])
    for i in range(40):
        parts, _ = pin_box(np.random.default_rng([7, i]), i, "misplaced")
        before, _ = pin_box(np.random.default_rng([7, i]), i)
        moved = [a for a, b in zip(parts, before) if a is not None and a["kind"] == "pin"
                 and not np.allclose(a["prims"][0][1], b["prims"][0][1])]
        assert len(moved) == 1
        x = moved[0]["prims"][0][1].mean(0)[0]
        # a compartment is 0.165 wide: its nearest centre is at least half a pitch minus a bit away
        assert np.abs(cells[:, 0] - x).min() > 0.09, (i, x)


@pytest.mark.parametrize("edit", [None, "extra", "mismatched"])
def test_a_good_bags_parts_lie_inside_the_bag(edit) -> None:
    """Parts were placed in a box whose corners lie outside the elliptic bag: a third of the good
    bags had a nut or washer partly outside it, which is the misplaced defect. (The extra and
    mismatched edits place their part the same way.)"""
    for i in range(60):
        parts, _ = fastener_bag(np.random.default_rng([3, i]), i, edit)
        for p in parts[1:]:
            pts = np.concatenate([q[1] for q in p["prims"]])
            reach = ((pts[:, 0] - 0.5) / 0.33) ** 2 + ((pts[:, 1] - 0.5) / 0.4) ** 2
            # within a bolt head's and a line's half width of the outline
            assert reach.max() <= 1.12, (edit, i, p["kind"], reach.max())


@pytest.mark.parametrize("category", CATEGORIES)
def test_structural_masks_cover_every_changed_pixel(category: str) -> None:
    """A crack or chip is drawn over the target's neighbours too (a chip bites the background
    colour through a tray under a cookie): the mask must hold those pixels, not only the target's."""
    size = tuple(round(v * 0.25) for v in SIZES[category])
    cam = {"angle": 0.0, "zoom": 1.0, "shift": np.zeros(2)}
    for i in range(12):
        rng = np.random.default_rng([3, i])
        parts, _ = BUILDERS[category](rng, i)
        defect = _structural(rng, STRUCTURAL[i % 3], parts, category)
        plain = render(category, parts, cam, [], size, rng, photo=False)[0].astype(int)
        shown, _, (mask,) = render(category, parts, cam, [defect], size, rng, photo=False)
        changed = np.abs(shown.astype(int) - plain).max(-1) > 40  # clearly changed, not an edge's blend
        grown = ndimage.binary_dilation(mask, iterations=2)  # the mask's edge is the footprint's
        assert not (changed & ~grown).any(), (category, i, defect["kind"], int((changed & ~grown).sum()))
