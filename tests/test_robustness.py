"""What happens when inputs are odd: each case gives a clear error or a defined, finite result."""

import stat

import numpy as np
import pytest
import torch
from PIL import Image

from locoad.aligners.hungarian import HungarianAligner
from locoad.backbones.handcrafted import HandcraftedBackbone
from locoad.data.datamodule import LocoDataModule
from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
from locoad.features.class_aware_patch import ClassAwarePatchScore
from locoad.features.class_histogram import ClassHistogramScore
from locoad.features.foreground_patch import ForegroundPatchScore
from locoad.fusion.loo import LeaveOneOutSum
from locoad.io import atomic_write_json, atomic_write_text
from locoad.models.seven_feature.torch_model import Encoded, SevenFeatureModel
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter


def small_model(aligner=None) -> SevenFeatureModel:
    feats = {
        "class_agnostic_patch": ClassAgnosticPatchScore(),
        "class_aware_patch": ClassAwarePatchScore(),
        "foreground_patch": ForegroundPatchScore(),
        "class_histogram": ClassHistogramScore(),
    }
    return SevenFeatureModel(
        FelzenszwalbSegmenter(work_size=64), aligner or HungarianAligner(), HandcraftedBackbone(image_size=112),
        feats, LeaveOneOutSum(), work_size=64,
    )


@pytest.fixture
def shots(loco_root):
    dm = LocoDataModule(str(loco_root), "widgets", k_shot=3, image_size=112)
    dm.setup()
    return next(iter(dm.train_dataloader()))


def test_test_image_of_another_size_is_resized(loco_root):
    odd = loco_root / "widgets" / "test" / "good" / "000.png"
    Image.open(odd).resize((100, 70)).save(odd)
    dm = LocoDataModule(str(loco_root), "widgets", k_shot=1, image_size=112)
    dm.setup()
    items = [dm.dataset("test")[i] for i in range(len(dm.dataset("test")))]
    assert {tuple(it["image"].shape) for it in items} == {(3, 112, 112)}


def test_empty_segmentation_is_flagged_not_nan(shots):
    model = small_model()
    model.fit(model.encode(shots["image"]))
    blank = torch.full((1, 3, 112, 112), 0.4)  # nothing but background
    enc = model.encode(blank)
    assert enc[0].segments.max() == 0
    scores, _, _ = model.score(enc)
    assert all(np.isfinite(v).all() for v in scores.values())
    assert scores["foreground_patch"][0] == 1.0  # "nothing found" is maximally anomalous
    good, _, _ = model.score(model.encode(shots["image"][:1]))
    assert scores["class_histogram"][0] > good["class_histogram"][0]


def test_segments_matching_nothing_become_unmatched(shots):
    model = small_model(HungarianAligner(max_cost=-1.0))  # no match is ever cheap enough
    model.fit(model.encode(shots["image"]))
    enc = model.encode(shots["image"][1:2])
    scores, _, class_maps = model.score(enc)
    fg = enc[0].segments > 0
    assert (class_maps[0][fg] == model.aligner.unmatched_id).all()
    assert all(np.isfinite(v).all() for v in scores.values())


def test_reference_without_foreground_warns_and_still_runs(shots, caplog):
    model = small_model()
    blank = model.encode(torch.full((2, 3, 112, 112), 0.4))
    model.fit(blank + model.encode(shots["image"][:1]))
    assert "no foreground segment" in caplog.text
    scores, _, _ = model.score(model.encode(shots["image"][1:2]))
    assert all(np.isfinite(v).all() for v in scores.values())


def test_nan_features_raise_a_clear_error(shots):
    model = small_model()
    enc = model.encode(shots["image"])
    model.fit(enc)
    bad = Encoded(enc[0].rgb, enc[0].segments, enc[0].features.clone())
    bad.features[0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN/inf features"):
        model.score([bad])


def test_killed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"fused": {"f1_max": 0.5}})

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # a kill in the middle of writing

    monkeypatch.setattr("os.fsync", die)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, '{"half": ')
    assert target.read_text().startswith('{\n  "fused"')
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_writes_get_the_mode_of_an_ordinary_open(tmp_path):
    # mkstemp makes 0600 files: outputs (gallery, metrics) unreadable by other users or a web server.
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = atomic_write_text(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_nan_metric_is_written_as_null(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"auroc": float("nan")})
    assert (tmp_path / "m.json").read_text().strip() == '{\n  "auroc": null\n}'


class RefusingAligner(HungarianAligner):
    def fit(self, reference):
        raise AssertionError("alignment is not needed by foreground-only scores")

    def align(self, image):
        raise AssertionError("alignment is not needed by foreground-only scores")


def test_foreground_only_scores_skip_alignment(shots):
    """The anomalydino preset (foreground patch score) needs no classes: no aligner call, and
    the same scores as with alignment."""
    feats = lambda: {"foreground_patch": ForegroundPatchScore(top_percent=1.0), "class_agnostic_patch": ClassAgnosticPatchScore()}  # noqa: E731
    seg, bb = FelzenszwalbSegmenter(work_size=64), HandcraftedBackbone(image_size=112)
    plain = SevenFeatureModel(seg, RefusingAligner(), bb, feats(), LeaveOneOutSum(), work_size=64)
    enc = plain.encode(shots["image"])
    plain.fit(enc[:2])
    scores, _, class_maps = plain.score(enc[2:])
    assert set(np.unique(class_maps[0])) <= {0, 1}
    aligned = SevenFeatureModel(seg, HungarianAligner(), bb, {**feats(), "class_histogram": ClassHistogramScore()}, LeaveOneOutSum(), work_size=64)
    aligned.fit(enc[:2])
    ref, _, _ = aligned.score(enc[2:])
    for n in feats():
        np.testing.assert_allclose(scores[n], ref[n], rtol=1e-6)
