"""SamSegmenter: offline, with a tiny random-init SAM built by segment_anything's own builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from locoad.errors import ConfigError
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


def test_a_checkpoint_of_another_shape_names_the_file_and_the_right_one(tmp_path: Path):
    """A wrong file for model_type was torch's raw state-dict RuntimeError (a traceback)."""
    from locoad.errors import CheckpointMismatchError

    state = build_sam_vit_tiny().state_dict()
    key = next(k for k, v in state.items() if v.ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    path = tmp_path / "other.pth"
    torch.save(state, path)
    seg = SamSegmenter(model_type="vit_tiny", checkpoint=str(path), allow_random_weights=True, device="cpu")
    with pytest.raises(CheckpointMismatchError, match=rf"{path}.*model_type=vit_tiny.*shape mismatches: {key}"):
        _ = seg.model


def test_a_home_relative_checkpoint_path_is_expanded(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    torch.save(build_sam_vit_tiny().state_dict(), tmp_path / "tiny.pth")
    seg = SamSegmenter(model_type="vit_tiny", checkpoint="~/tiny.pth", allow_random_weights=True, device="cpu")
    assert seg.checkpoint == str(tmp_path / "tiny.pth")


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


# --- the whole automatic-mask path with a stand-in network that segments by colour --------------


class _Identity(torch.nn.Module):
    """Image encoder stand-in: the 'embedding' is the normalised, padded 1024 px input itself."""

    img_size = 1024

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Points(torch.nn.Module):
    """Prompt encoder stand-in: hands the point prompts (1024 px frame, x-y) through."""

    def forward(self, points, boxes, masks):
        return points[0], torch.zeros(1)

    def get_dense_pe(self) -> torch.Tensor:
        return torch.zeros(1)


class _ColourRegion(torch.nn.Module):
    """Mask decoder stand-in: for each point, the pixels within a colour distance of the point's
    colour (sharp logits at SAM's 256 px low resolution; every mask predicted as perfect)."""

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        img = image_embeddings[0]  # (3, 1024, 1024)
        xy = sparse_prompt_embeddings[:, 0].round().long().clamp(0, 1023)  # (B, 2)
        colours = img[:, xy[:, 1], xy[:, 0]].T  # (B, 3)
        low = torch.nn.functional.avg_pool2d(img[None], 4)[0]  # (3, 256, 256)
        dist = (low[None] - colours[:, :, None, None]).norm(dim=1)  # (B, 256, 256)
        logits = (20.0 * (0.5 - dist))[:, None].repeat(1, 3 if multimask_output else 1, 1, 1)
        return logits, torch.ones(logits.shape[:2])


def _colour_sam(checkpoint=None) -> torch.nn.Module:
    sam = build_sam_vit_tiny()
    sam.image_encoder, sam.prompt_encoder, sam.mask_decoder = _Identity(), _Points(), _ColourRegion()
    return sam


def test_automatic_masks_become_one_segment_per_object(monkeypatch):
    """SamSegmenter's own build, segment_anything's automatic mask generator (point grid,
    batching, NMS, stability filter, upscaling, crops) and the post-processing, with a network
    that segments by colour: three objects on a grey background must come out as three segments
    that cover them, one label each, background 0. A transposed, flipped or shifted image or
    mask anywhere between the generator and the label map moves the segments off the objects.
    The real SAM network's masks need its checkpoint and are not tested here."""
    import locoad.segmenters.sam as sam_module

    monkeypatch.setattr(sam_module, "build_sam_vit_tiny", _colour_sam)
    seg = SamSegmenter(model_type="vit_tiny", allow_random_weights=True, device="cpu",
                       points_per_side=8, points_per_batch=8)
    rgb = np.full((64, 96, 3), 128, np.uint8)
    objects = {"red": np.s_[8:24, 10:40], "green": np.s_[36:56, 12:30], "blue": np.s_[20:50, 60:86]}
    for sl, colour in zip(objects.values(), ((220, 30, 30), (30, 200, 30), (30, 30, 220))):
        rgb[sl] = colour
    label = seg(rgb)
    _assert_label_map(label, (64, 96))
    assert label.max() == 3
    seen = set()
    for name, sl in objects.items():
        truth = np.zeros(label.shape, bool)
        truth[sl] = True
        ids, counts = np.unique(label[truth], return_counts=True)
        lab = int(ids[counts.argmax()])
        assert lab > 0 and lab not in seen, name
        seen.add(lab)
        iou = ((label == lab) & truth).sum() / ((label == lab) | truth).sum()
        assert iou > 0.9, (name, iou)


def test_random_weight_sam_is_the_same_network_whatever_the_global_seed():
    """Random weights were drawn from the global random state when the model was built, so runs
    with other seeds (or that built it at another moment) had one cache key and different label
    maps. They come from a fixed seed now, and building draws nothing from the global state."""
    weights = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        seg = SamSegmenter(model_type="vit_tiny", allow_random_weights=True, device="cpu")
        before = torch.random.get_rng_state()
        weights.append(seg.model.state_dict())
        assert torch.equal(torch.random.get_rng_state(), before)
    for k, v in weights[0].items():
        assert torch.equal(v, weights[1][k]), k


def test_a_missing_test_only_checkpoint_names_no_download(tmp_path: Path):
    """The test-only architecture has no published file; the message pointed at a URL that does not exist."""
    with pytest.raises(FileNotFoundError) as err:
        SamSegmenter(model_type="vit_tiny", checkpoint=str(tmp_path / "tiny.pth"), allow_random_weights=True)
    msg = str(err.value)
    assert "test-only architecture" in msg and "http" not in msg


@pytest.mark.parametrize(("key", "value"), [("pred_iou_thresh", 1.5), ("stability_score_thresh", 1.2),
                                            ("stability_score_thresh", -0.1), ("points_per_side", 0),
                                            ("points_per_batch", 0), ("crop_n_layers", -1),
                                            ("min_mask_region_area", -5)])
def test_generator_settings_out_of_range_are_refused(key, value):
    """A threshold above 1 kept no mask (every label map empty, silently); a count of 0 or a
    negative crop_n_layers failed mid-run inside segment_anything."""
    with pytest.raises(ConfigError, match=f"segmenter.{key}"):
        SamSegmenter(model_type="vit_tiny", allow_random_weights=True, device="cpu", **{key: value})
