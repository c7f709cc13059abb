"""DeAOTAligner: offline, with a random-init DeAOT-T on tiny frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from locoad.aligners.deaot import (
    MODEL_ZOO,
    DeAOTAligner,
    build_deaot,
    majority_assignment,
    network_size,
)
from locoad.types import SegmentedImage

CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(overrides=list(overrides))


def _grid_image(shift: int, n: int = 12, size: int = 64) -> SegmentedImage:
    """``n`` coloured squares on a grey background (4 per row), shifted right by ``shift``."""
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 255, (n, 3), dtype=np.uint8)
    rgb = np.full((size, size, 3), 128, np.uint8)
    seg = np.zeros((size, size), np.int32)
    for i in range(n):
        r, c = 4 + (i // 4) * 20, 2 + (i % 4) * 15 + shift
        rgb[r : r + 10, c : c + 10] = colours[i]
        seg[r : r + 10, c : c + 10] = i + 1
    return SegmentedImage(rgb, seg)


# --- majority vote -----------------------------------------------------------------------------


def test_majority_assignment_hand_made():
    segments = np.array(
        [
            [1, 1, 1, 2, 2, 2],
            [3, 3, 4, 4, 0, 0],
        ]
    )
    propagated = np.array(
        [
            [2, 2, 1, 0, 0, 3],  # seg 1: majority 2; seg 2: majority background
            [0, 1, 1, 3, 2, 2],  # seg 3: tie bg/1 -> 1; seg 4: tie 1/3 -> lowest id 1
        ]
    )
    got = majority_assignment(segments, propagated, unmatched_id=4)
    assert got == {1: 2, 2: 4, 3: 1, 4: 1}


def test_majority_assignment_edge_cases():
    assert majority_assignment(np.zeros((3, 3)), np.ones((3, 3)), unmatched_id=2) == {}
    # Only background propagated (C = 0): every segment is unmatched.
    assert majority_assignment(np.ones((2, 2)), np.zeros((2, 2)), unmatched_id=1) == {1: 1}
    with pytest.raises(ValueError, match="propagated ids"):
        majority_assignment(np.ones((2, 2)), np.full((2, 2), 5), unmatched_id=3)
    with pytest.raises(ValueError, match="shape"):
        majority_assignment(np.ones((2, 2)), np.ones((2, 3)), unmatched_id=3)


def test_network_size_snaps_to_stride():
    assert network_size(64, 64, 65, align_corners=True) == (65, 65)
    assert network_size(100, 200, 465, align_corners=True) == (225, 465)
    assert network_size(100, 200, 464, align_corners=False) == (224, 464)
    assert network_size(64, 48, None, align_corners=True) == (65, 49)


# --- the model ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aligner() -> DeAOTAligner:
    cfg = _compose("+aligner=deaot_tiny", "+paths.checkpoints=/nowhere")
    return instantiate(cfg.aligner)


def test_tiny_deaot_aligns_every_segment(aligner: DeAOTAligner):
    ref, target = _grid_image(0), _grid_image(3)
    aligner.fit(ref)  # 12 objects: two 10-object DeAOT sub-engines
    assert aligner.variant == "deaott" and len(aligner._engine.aot_engines) == 2
    c = aligner.num_reference_classes
    assert c == 12 and aligner.unmatched_id == 13

    propagated = aligner.propagate(target.rgb)
    assert propagated.shape == (64, 64) and propagated.min() >= 0 and propagated.max() <= c

    out = aligner.align(target)
    assert out.dtype == np.int64 and out.shape == target.segments.shape
    assert set(np.unique(out)) <= set(range(c + 2))
    assert (out[target.segments == 0] == 0).all()
    for s in range(1, target.num_segments + 1):
        vals = np.unique(out[target.segments == s])
        assert len(vals) == 1 and 1 <= vals[0] <= c + 1  # one id per segment, never background

    model = aligner.model
    np.testing.assert_array_equal(aligner.align(target), out)  # memory is not updated by align
    aligner.fit(target)
    assert aligner.model is model  # built once, reused across fits


def test_empty_reference_and_empty_target(aligner: DeAOTAligner):
    img = _grid_image(0)
    aligner.fit(SegmentedImage(img.rgb, np.zeros_like(img.segments)))
    out = aligner.align(img)
    assert (out[img.segments > 0] == 1).all()  # C = 0: everything unmatched
    aligner.fit(img)
    assert not aligner.align(SegmentedImage(img.rgb, np.zeros_like(img.segments))).any()


def test_too_many_objects_raise():
    al = DeAOTAligner(allow_random_weights=True, max_objects=5, device="cpu")
    with pytest.raises(ValueError, match="max_objects"):
        al.fit(_grid_image(0, n=6))
    assert al._model is None  # refused before building anything


def test_checkpoint_roundtrip(tmp_path: Path):
    saved = build_deaot("deaott").state_dict()
    path = tmp_path / "DeAOTT_PRE_YTB_DAV.pth"
    # The official files wrap a DataParallel state dict: {"state_dict": {"module.<key>": ...}}.
    torch.save({"state_dict": {f"module.{k}": v for k, v in saved.items()}}, path)
    al = DeAOTAligner(checkpoint=str(path), device="cpu")
    loaded = al.model.state_dict()
    assert loaded.keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(loaded[k], v), k

    partial = dict(list(saved.items())[:5])
    torch.save(partial, path)
    with pytest.raises(RuntimeError, match="missing keys"):
        _ = DeAOTAligner(checkpoint=str(path), device="cpu").model


def test_missing_checkpoint_and_random_weights(tmp_path: Path):
    with pytest.raises(FileNotFoundError) as err:
        DeAOTAligner(checkpoint=str(tmp_path / "DeAOTT_PRE_YTB_DAV.pth"))
    msg = str(err.value)
    assert "DeAOTT_PRE_YTB_DAV.pth" in msg and MODEL_ZOO in msg and "aligner.checkpoint" in msg
    with pytest.raises(ValueError, match="random weights"):
        DeAOTAligner()
    with pytest.raises(ValueError, match="unknown DeAOT variant"):
        DeAOTAligner(variant="deaotx", allow_random_weights=True)

    cfg = _compose("+aligner=deaot", "+paths.checkpoints=/nowhere")
    assert cfg.aligner.checkpoint == "/nowhere/DeAOTT_PRE_YTB_DAV.pth"
    with pytest.raises(InstantiationException) as err:  # Hydra wraps the constructor's error
        instantiate(cfg.aligner)
    assert isinstance(err.value.__cause__, FileNotFoundError)
