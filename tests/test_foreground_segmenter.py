"""The foreground patch score's foreground from the segmenter's foreground segmenter
(``segmenter.foreground_strip_width``), the parts still from the segmenter itself."""

import numpy as np
import pytest
import torch

from locoad.aligners.hungarian import HungarianAligner
from locoad.backbones.handcrafted import HandcraftedBackbone
from locoad.data.datamodule import LocoDataModule
from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
from locoad.features.foreground_patch import ForegroundPatchScore
from locoad.fusion.loo import LeaveOneOutSum
from locoad.models.seven_feature.torch_model import SevenFeatureModel, majority_grid
from locoad.segmenters.base import Segmenter
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter


class Halves(Segmenter):
    """Parts: the image's left quarter; foreground (``wide=True``): its left half."""

    def __init__(self, wide: bool = False, calls: list | None = None):
        super().__init__(min_area=0.0, drop_background=False)
        self.wide, self._calls = wide, calls if calls is not None else []  # a record, not a setting

    @property
    def calls(self) -> list:
        return self._calls

    def propose(self, rgb: np.ndarray) -> np.ndarray:
        self.calls.append(self.wide)
        w = rgb.shape[1]
        out = np.zeros(rgb.shape[:2], dtype=np.int32) - 1  # -1 + 1 = 0: background
        out[:, : w // (2 if self.wide else 4)] = 0
        return out

    def foreground_segmenter(self) -> Segmenter | None:
        return None if self.wide else Halves(wide=True, calls=self.calls)


def model_with(segmenter, features) -> SevenFeatureModel:
    return SevenFeatureModel(segmenter, HungarianAligner(), HandcraftedBackbone(image_size=112), features,
                             LeaveOneOutSum(), work_size=64, shot_augment={"rotations": [90]})


@pytest.fixture
def images(loco_root):
    dm = LocoDataModule(str(loco_root), "widgets", k_shot=3, image_size=112)
    dm.setup()
    return next(iter(dm.train_dataloader()))["image"]


def test_foreground_patch_score_reads_the_foreground_segmenter(images):
    model = model_with(Halves(), {"foreground_patch": ForegroundPatchScore()})
    enc = model.encode(images, shots=True)
    assert all(e.foreground[:, :32].all() and not e.foreground[:, 32:].any() for e in enc)
    assert all((e.segments > 0)[:, :16].all() and not (e.segments > 0)[:, 16:].any() for e in enc)
    model.fit(enc)
    grid = model.parsed_shots[0].foreground_grid.cpu()
    assert torch.equal(grid, majority_grid(enc[0].foreground.astype(np.int64), grid.shape[0], 2).bool())
    assert grid.sum() > (model.parsed_shots[0].class_grid.cpu() != 0).sum()  # wider than the parts
    # the quarter turn's copies are in the patch memory with their foreground turned too: the
    # left half turned by 90 degrees is the top or bottom half, not the parts' quarter
    bank = model.patch_banks[0]
    moved_rows = int((bank.labels["foreground_patch"] >= 0).sum()) - len(enc) * int(grid.sum())
    parts = int((model.parsed_shots[0].class_grid != 0).sum())
    assert abs(moved_rows - len(enc) * int(grid.sum())) <= len(enc) * grid.shape[0]  # a row each at most
    assert moved_rows > 1.5 * len(enc) * parts


def test_foreground_segmenter_runs_only_when_a_score_reads_the_foreground(images):
    calls: list = []
    model_with(Halves(calls=calls), {"class_agnostic_patch": ClassAgnosticPatchScore()}).encode(images)
    assert calls == [False] * len(images)
    calls.clear()
    model = model_with(Halves(calls=calls), {"foreground_patch": ForegroundPatchScore()})
    assert [e.foreground is None for e in model.encode(images)] == [False] * len(images)
    assert calls.count(True) == len(images)


def test_felzenszwalb_foreground_segmenter_skips_only_the_strip_absorption():
    seg = FelzenszwalbSegmenter(work_size=64, scale=150.0, foreground_strip_width=0.0)
    fg = seg.foreground_segmenter()
    assert isinstance(fg, FelzenszwalbSegmenter) and fg.strip_width == 0.0 and fg.foreground_strip_width is None
    assert {k: v for k, v in vars(fg).items() if k not in ("strip_width", "foreground_strip_width")} == \
        {k: v for k, v in vars(seg).items() if k not in ("strip_width", "foreground_strip_width")}
    assert FelzenszwalbSegmenter().foreground_segmenter() is None  # null: the parts' union
    assert FelzenszwalbSegmenter(merge="components", foreground_strip_width=0.0).foreground_segmenter() is None
    # another foreground setting is another stage-cache entry
    assert seg.cache_key() != FelzenszwalbSegmenter(work_size=64, scale=150.0).cache_key()


def test_checkpoint_keeps_the_shots_foreground(images):
    """Saved with the shots; a checkpoint written before it was kept gets it made again, so
    shots and test images read the foreground the same way."""
    from locoad.models.seven_feature.lightning_model import STATE_KEY, SevenFeatureModule

    def module():
        return SevenFeatureModule(Halves(), HungarianAligner(), HandcraftedBackbone(image_size=112),
                                  {"foreground_patch": ForegroundPatchScore()}, LeaveOneOutSum(), work_size=64)

    fitted = module()
    fitted.on_train_epoch_start()
    fitted.training_step({"image": images[:3], "parts": torch.full((3, 8, 8), -1)}, 0)
    fitted.on_train_epoch_end()
    ckpt = {"state_dict": fitted.state_dict()}
    fitted.on_save_checkpoint(ckpt)
    saved = ckpt[STATE_KEY]["foreground"]
    assert saved.dtype == torch.bool and saved[:, :, :32].all() and not saved[:, :, 32:].any()
    for state in (ckpt, {**ckpt, STATE_KEY: {k: v for k, v in ckpt[STATE_KEY].items() if k != "foreground"}}):
        loaded = module()
        loaded.on_load_checkpoint(state)
        loaded.prepare()
        assert all(np.array_equal(a.foreground, b.foreground) for a, b in zip(loaded.model.shots, fitted.model.shots))
        assert torch.equal(loaded.model.patch_banks[0].bank, fitted.model.patch_banks[0].bank)


def test_parts_and_foreground_share_one_graph_segmentation_per_image(images, monkeypatch):
    """The foreground segmenter differs only in the merge: Felzenszwalb runs once per image for
    both, and each gives what a segmenter of its own would."""
    from locoad.segmenters import felzenszwalb as module

    rgbs = [(x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for x in images[:2]]
    seg = FelzenszwalbSegmenter(work_size=64, foreground_strip_width=0.0)
    fg = seg.foreground_segmenter()
    alone = [(FelzenszwalbSegmenter(work_size=64)(x), FelzenszwalbSegmenter(work_size=64, strip_width=0.0)(x))
             for x in rgbs]
    calls = []
    real = module.felzenszwalb
    monkeypatch.setattr(module, "felzenszwalb", lambda *a, **k: calls.append(1) or real(*a, **k))
    for x, (parts, foreground) in zip(rgbs, alone):
        assert np.array_equal(seg(x), parts) and np.array_equal(fg(x), foreground)
    assert len(calls) == len(rgbs)
    assert not np.array_equal(rgbs[0], rgbs[1])  # two images: the second is segmented, not reused


def test_segmenter_given_a_non_rgb_array_raises_a_plain_value_error():
    # the data module hands over read_rgb's (H, W, 3) uint8: another array is a caller's bug
    from locoad.errors import ConfigError

    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8") as err:
        FelzenszwalbSegmenter()(np.zeros((8, 8), np.float32))
    assert not isinstance(err.value, ConfigError)
