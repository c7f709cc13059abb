"""The alignment reference: the first shot (the seed) or the most typical one (``model.reference``)."""

import numpy as np
import pytest
import torch

from conftest import _scene, train_images
from locoad.aligners.reference import most_typical
from locoad.types import SegmentedImage


def view(n_discs: int, colour=(200, 40, 40), seed: int = 0) -> SegmentedImage:
    """Discs as segments 1..n (the conftest scene: fixed slots along the middle row)."""
    rgb, parts = _scene(np.random.default_rng(seed), 64, n_discs, colour)
    segments = np.zeros(parts.shape, np.int32)
    xx = np.mgrid[0:64, 0:64][1]
    segments[parts > 0] = 1 + (xx[parts > 0] > 32)  # left disc 1, right disc 2 (or none)
    return SegmentedImage(rgb, segments)


def test_an_odd_first_shot_is_not_the_typical_one():
    odd = view(1, colour=(40, 40, 200))  # one blue disc where the others show two red ones
    views = [odd, view(2, seed=1), view(2, seed=2), view(2, seed=3)]
    assert most_typical(views) in (1, 2, 3)
    assert most_typical([view(2, seed=1), odd, view(2, seed=2)]) != 1
    assert most_typical([odd, view(2)]) == 0  # two shots: neither is more typical


def test_typical_reference_leads_the_shots_and_bad_values_are_refused(loco_root):
    from locoad.data.datamodule import LocoDataModule
    from test_patch_robust import small_model

    dm = LocoDataModule(str(loco_root), "widgets", k_shot=None, image_size=112)
    dm.setup()
    train, test = dm.dataset("train"), dm.dataset("test")
    odd = test[[i for i, s in enumerate(test.samples) if s.anomaly_type == "logical_anomalies"][0]]["image"]
    images = torch.stack([odd] + [train[i]["image"] for i in range(3)])  # one disc first, then two
    first, typical = small_model(), small_model(reference="typical")
    first.fit(first.encode(images))
    typical.fit(typical.encode(images))
    assert first.shot_order == [0, 1, 2, 3]
    assert typical.shot_order[0] != 0 and sorted(typical.shot_order) == [0, 1, 2, 3]
    assert typical.shots[0] is not first.shots[0]
    assert typical.aligner.num_reference_classes >= first.aligner.num_reference_classes
    with pytest.raises(ValueError, match="model.reference"):
        small_model(reference="median")


def test_the_module_reorders_the_shots_true_parts_with_them(loco_root):
    """Alignment accuracy reads the reference's true parts: they must follow the shot order."""
    from locoad.data.datamodule import LocoDataModule
    from locoad.models.seven_feature.lightning_model import SevenFeatureModule
    from test_patch_robust import small_model

    dm = LocoDataModule(str(loco_root), "widgets", k_shot=None, image_size=112)
    dm.setup()
    train, test = dm.dataset("train"), dm.dataset("test")
    odd = test[[i for i, s in enumerate(test.samples) if s.anomaly_type == "logical_anomalies"][0]]["image"]
    images = torch.stack([odd] + [train[i]["image"] for i in range(3)])
    m = small_model()
    module = SevenFeatureModule(m.segmenter, m.aligner, m.backbone, m.features, m.fusion, work_size=64,
                                reference="typical")
    module.on_train_epoch_start()
    tags = torch.arange(4).view(4, 1, 1).expand(4, 8, 8)  # each shot's "parts" say which shot it is
    module.training_step({"image": images, "parts": tags}, 0)
    module.on_train_epoch_end()
    order = module.model.shot_order
    assert order[0] != 0 and [int(p[0, 0]) for p in module._parts] == order


def test_the_empty_reference_warning_speaks_of_the_shot_aligned_to(loco_root, caplog):
    """A blank first shot is no reference under ``typical``: no warning then; under ``first`` one."""
    from test_patch_robust import small_model

    images = torch.cat([torch.full((1, 3, 112, 112), 0.4), train_images(loco_root, 3)])
    for reference, warned in (("typical", False), ("first", True)):
        caplog.clear()
        model = small_model(reference=reference)
        model.fit(model.encode(images))
        assert ("no foreground segment" in caplog.text) is warned, reference


def test_refit_scores_the_reference_shot_as_a_test_image_of_the_others(loco_root):
    """``model.loo_reference=refit``: the reference shot's leave-one-out scores are those of a
    test image of a model fitted on the other shots alone (``shared`` scores it with its own
    class map against the others aligned to it); the other shots' and the fitted model's scores
    are as under ``shared``."""
    from conftest import train_images
    from locoad.features.class_histogram import ClassHistogramScore
    from test_patch_robust import small_model

    def model(**kwargs):
        m = small_model(**kwargs)
        m.features["class_count"] = ClassHistogramScore(mode="count")  # its LOO scores are floored
        m.features["class_count"].name = "class_count"
        return m

    images = train_images(loco_root, 4)
    refit, shared, others = model(loo_reference="refit"), model(), model()
    enc = refit.encode(images)
    refit.fit(enc)
    shared.fit(shared.encode(images))
    others.fit_memory(enc[1:])
    alone, _, _ = others.score_parts(enc[:1])
    alone["class_count"][0] = max(alone["class_count"][0], refit.features["class_count"].loo_floor)
    for n in refit.features:
        assert refit.loo_scores[n][0] == pytest.approx(alone[n][0], rel=1e-6), n
        np.testing.assert_allclose(refit.loo_scores[n][1:], shared.loo_scores[n][1:], rtol=1e-6)
    assert any(abs(refit.loo_scores[n][0] - shared.loo_scores[n][0]) > 1e-6 for n in refit.features)
    test = refit.encode(images[:2].flip(-1))  # the full fit is back: test images score alike
    a, b = refit.score(test)[0], shared.score(shared.encode(images[:2].flip(-1)))[0]
    for n in refit.features:
        np.testing.assert_allclose(a[n], b[n], rtol=1e-6)
    with pytest.raises(ValueError, match="model.loo_reference"):
        small_model(loo_reference="all")
