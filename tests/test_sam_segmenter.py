"""SamSegmenter: offline, with a tiny random-init SAM built by segment_anything's own builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from locoad.segmenters.sam import SAM_URL, SamSegmenter, build_sam_vit_tiny

CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(overrides=list(overrides))


def _assert_label_map(label: np.ndarray, shape: tuple[int, int]) -> None:
    assert label.dtype == np.int32 and label.shape == shape
    ids = np.unique(label)
    assert ids[0] >= 0
    fg = ids[ids > 0]
    np.testing.assert_array_equal(fg, np.arange(1, len(fg) + 1))


def test_tiny_sam_end_to_end_from_yaml():
    cfg = _compose(
        "+segmenter=sam_tiny", "+paths.checkpoints=/nowhere", "segmenter.points_per_side=2"
    )
    seg = instantiate(cfg.segmenter)
    assert isinstance(seg, SamSegmenter) and seg.model_type == "vit_tiny"
    rng = np.random.default_rng(0)
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[16:48, 24:72] = rng.integers(0, 255, 3, dtype=np.uint8)  # one flat object
    _assert_label_map(seg(rgb), (64, 96))
    model = seg.model
    _assert_label_map(seg(rgb), (64, 96))
    assert seg.model is model  # built once, reused


def test_checkpoint_roundtrip(tmp_path: Path):
    saved = build_sam_vit_tiny().state_dict()
    path = tmp_path / "tiny.pth"
    torch.save(saved, path)
    seg = SamSegmenter(
        model_type="vit_tiny", checkpoint=str(path), allow_random_weights=True, device="cpu"
    )
    loaded = seg.model.state_dict()
    assert loaded.keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(loaded[k], v), k
    fresh = build_sam_vit_tiny().state_dict()  # random init differs, so loading did something
    assert any(not torch.equal(fresh[k], v) for k, v in saved.items())


def test_missing_checkpoint_names_file_url_and_key(tmp_path: Path):
    missing = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(FileNotFoundError) as err:
        SamSegmenter(model_type="vit_b", checkpoint=str(missing))
    msg = str(err.value)
    assert "sam_vit_b_01ec64.pth" in msg
    assert SAM_URL.format("sam_vit_b_01ec64.pth") in msg
    assert "segmenter.checkpoint" in msg


def test_default_yaml_points_at_official_file():
    cfg = _compose("+segmenter=sam", "+paths.checkpoints=/nowhere")
    assert cfg.segmenter.checkpoint == "/nowhere/sam_vit_b_01ec64.pth"
    with pytest.raises(InstantiationException) as err:  # Hydra wraps the constructor's error
        instantiate(cfg.segmenter)
    assert isinstance(err.value.__cause__, FileNotFoundError)


def test_random_weights_refused():
    with pytest.raises(ValueError, match="random weights"):
        SamSegmenter(model_type="vit_b", checkpoint=None)
    with pytest.raises(ValueError, match="random weights"):
        SamSegmenter(model_type="vit_tiny")
    with pytest.raises(ValueError, match="unknown SAM model_type"):
        SamSegmenter(model_type="vit_x", allow_random_weights=True)


class _FakeGenerator:
    """Stands in for SamAutomaticMaskGenerator: returns fixed records."""

    def __init__(self, masks: list[np.ndarray]):
        self.masks = masks

    def generate(self, image: np.ndarray) -> list[dict]:
        return [{"segmentation": m, "area": int(m.sum())} for m in self.masks]


def test_post_processing_with_hand_made_masks():
    h = w = 32
    obj = np.zeros((h, w), bool)
    obj[8:24, 8:24] = True  # 256 px
    inner = np.zeros((h, w), bool)
    inner[12:16, 12:16] = True  # 16 px, overlaps obj and must stay on top
    top = np.zeros((h, w), bool)
    top[0:5, 26:30] = True  # 20 px, touches one edge only: kept
    tiny = np.zeros((h, w), bool)
    tiny[2:4, 2:4] = True  # 4 px < min_area: dropped
    background = ~obj  # touches all four edges: dropped

    seg = SamSegmenter(model_type="vit_b", allow_random_weights=True, min_area=0.01)
    seg._generator = _FakeGenerator([background, tiny, inner, obj, top])
    label = seg(np.zeros((h, w, 3), np.uint8))

    _assert_label_map(label, (h, w))
    assert seg._model is None  # the fake generator never built a model
    assert (label[inner] == 3).all()  # smallest kept region: label 3
    assert (label[obj & ~inner] == 1).all()
    assert (label[top] == 2).all()
    assert (label[tiny] == 0).all()
    assert (label[~(obj | top)] == 0).all()
    assert label.max() == 3
