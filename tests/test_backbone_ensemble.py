"""Backbone ensembles (backbones/ensemble.py): members' features side by side, and patch scores
that search one member's memory (``backbone_part``)."""

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import CONF, compose_cfg, train_images
from locoad.aligners.hungarian import HungarianAligner
from locoad.backbones.efficientnet_lite import EfficientNetLiteBackbone
from locoad.backbones.ensemble import BackboneEnsemble, members_read, split_parts
from locoad.backbones.handcrafted import HandcraftedBackbone
from locoad.cache import StageCache
from locoad.errors import ConfigError
from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
from locoad.features.class_aware_patch import ClassAwarePatchScore
from locoad.features.class_histogram import ClassHistogramScore
from locoad.features.foreground_patch import ForegroundPatchScore
from locoad.fusion.loo import LeaveOneOutSum
from locoad.models.seven_feature.stored import StoredBackbone, stored_backbone
from locoad.models.seven_feature.torch_model import SevenFeatureModel
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter
from locoad.types import ParsedImage
from locoad.utils import build


def members(lite2_size: int = 112) -> dict[str, EfficientNetLiteBackbone]:
    torch.manual_seed(0)  # random weights: no file read
    return {"lite0": EfficientNetLiteBackbone("lite0", pretrained=False, image_size=112, pool_size=1),
            "lite2": EfficientNetLiteBackbone("lite2", pretrained=False, image_size=lite2_size, pool_size=1)}


@pytest.fixture
def images(loco_root):
    return train_images(loco_root, 5)


def test_the_ensemble_puts_each_members_features_on_the_first_grid_side_by_side(images):
    m = members(lite2_size=96)
    ens = BackboneEnsemble(m)
    out = ens(images)
    assert ens.grid_size == 14 and BackboneEnsemble(m, image_size=256).grid_size == 14 and out.shape == (5, m["lite0"].embed_dim + m["lite2"].embed_dim, 14, 14)
    a, b = ens.parts["lite0"], ens.parts["lite2"]
    assert ens.primary == "lite0" and a == (0, m["lite0"].embed_dim) and b[1] == out.shape[1]
    torch.testing.assert_close(out[:, a[0]:a[1]], m["lite0"](images))
    lite2 = torch.nn.functional.interpolate(m["lite2"](images), size=(14, 14), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[:, b[0]:b[1]], lite2)  # the 12x12 member resized to the first grid


def model(backbone, feats) -> SevenFeatureModel:
    return SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(), backbone, feats,
                             LeaveOneOutSum(), work_size=64, shot_augment={"rotations": [90]})


def test_a_patch_score_on_a_member_scores_as_that_member_alone(images):
    """The ensemble's primary scores equal a Lite0-only model's (alignment included), its
    ``backbone_part: lite2`` scores a Lite2-only model's, leave-one-out and moved copies too."""
    m = members()
    ens = model(BackboneEnsemble(m), {
        "class_agnostic_patch": ClassAgnosticPatchScore(baseline="median"),
        "class_aware_patch": ClassAwarePatchScore(),
        "class_histogram": ClassHistogramScore(),
        "lite2_class_agnostic_patch": ClassAgnosticPatchScore(baseline="median", backbone_part="lite2"),
        "lite2_foreground_patch": ForegroundPatchScore(backbone_part="lite2"),
    })
    alone0 = model(m["lite0"], {"class_agnostic_patch": ClassAgnosticPatchScore(baseline="median"),
                                "class_aware_patch": ClassAwarePatchScore(), "class_histogram": ClassHistogramScore()})
    alone2 = model(m["lite2"], {"class_agnostic_patch": ClassAgnosticPatchScore(baseline="median"),
                                "foreground_patch": ForegroundPatchScore()})
    scores = {}
    for name, mdl in (("ens", ens), ("lite0", alone0), ("lite2", alone2)):
        mdl.fit(mdl.encode(images[:3], shots=True))
        scores[name] = (mdl.score(mdl.encode(images[3:]))[0], mdl.loo_scores)
    (ens_s, ens_loo), (s0, loo0), (s2, loo2) = scores["ens"], scores["lite0"], scores["lite2"]
    for n in ("class_agnostic_patch", "class_aware_patch", "class_histogram"):
        np.testing.assert_allclose(ens_s[n], s0[n], rtol=1e-5)
        np.testing.assert_allclose(ens_loo[n], loo0[n], rtol=1e-5)
    for n, alone in (("lite2_class_agnostic_patch", "class_agnostic_patch"), ("lite2_foreground_patch", "foreground_patch")):
        np.testing.assert_allclose(ens_s[n], s2[alone], rtol=1e-5)
        np.testing.assert_allclose(ens_loo[n], loo2[alone], rtol=1e-5)
    assert not np.allclose(ens_s["lite2_class_agnostic_patch"], ens_s["class_agnostic_patch"])  # two backbones


def test_moving_an_ensemble_image_moves_the_primary_members_features_once():
    """``features`` is the primary member's entry of ``parts``: a model's ``.to()`` must keep it
    so, or every stored shot holds the primary's features twice on the device."""
    x = torch.randn(5, 4, 4)
    parts = split_parts(x, {"lite0": (0, 3), "lite2": (3, 5)})
    parsed = ParsedImage(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.int64),
                         parts["lite0"], torch.zeros(4, 4, dtype=torch.long), 2, parts=parts)
    moved = []
    parsed.apply(lambda t: moved.append(t) or t.clone())
    assert parsed.features is parsed.parts["lite0"] and len(moved) == 3  # class grid and two members
    torch.testing.assert_close(parsed.parts["lite2"], x[3:])
    torch.testing.assert_close(parsed.features, x[:3])


def test_a_patch_score_on_a_missing_member_is_refused_at_build():
    feats = {"lite2_class_agnostic_patch": ClassAgnosticPatchScore(backbone_part="lite2")}
    with pytest.raises(ValueError, match="backbone part 'lite2'.*none \\(one backbone\\).*efficientnet_lite0_lite2"):
        model(HandcraftedBackbone(image_size=112), feats)
    with pytest.raises(ValueError, match="backbone part 'lite3'.*lite0, lite2"):
        model(BackboneEnsemble(members()), {"x": ClassAgnosticPatchScore(backbone_part="lite3")})


def test_an_ensemble_needs_two_members():
    with pytest.raises(ValueError, match="at least two members.*single backbone"):
        BackboneEnsemble({"lite0": HandcraftedBackbone(image_size=112)})


def test_an_ensemble_stores_each_members_features_where_the_member_alone_finds_them(images, tmp_path):
    cache = StageCache(tmp_path / "stages")
    m = members()
    ens = stored_backbone(BackboneEnsemble(m), cache)
    assert isinstance(ens, BackboneEnsemble) and all(isinstance(b, StoredBackbone) for b in ens.members.values())
    first = ens(images)
    expected = m["lite2"](images)

    def ran(x):
        raise AssertionError("the network ran: the ensemble's stored features were not found")

    m["lite2"].extract = m["lite0"].extract = ran
    torch.testing.assert_close(StoredBackbone(m["lite2"], cache)(images), expected)
    torch.testing.assert_close(ens(images), first)


def test_the_lite0_lite2_experiment_composes_and_builds(tmp_path):
    cfg = compose_cfg(["experiment=lite0_lite2"], tmp_path)
    assert cfg.data.image_size == 296  # data.image_size: ${backbone.image_size}
    bb = instantiate(cfg.backbone, members={n: {"pretrained": False} for n in cfg.backbone.members})
    assert isinstance(bb, BackboneEnsemble) and list(bb.parts) == ["lite0", "lite2"]
    assert [m.variant for m in bb.members.values()] == ["lite0", "lite2"]
    feats = instantiate(cfg.features)
    patch = {n for n, f in feats.items() if getattr(f, "backbone_part", None) == "lite2"}
    assert patch == {"lite2_class_agnostic_patch", "lite2_class_aware_patch", "lite2_foreground_patch"}
    # each backbone's patch scores at half the single-backbone weight (fusion.shared_weights)
    fusion = instantiate(cfg.fusion).fit({n: np.ones(4) for n in feats})
    patch_scores = ("class_agnostic_patch", "class_aware_patch", "foreground_patch")
    assert [fusion.weights[n] for n in patch_scores] == [fusion.weights[f"lite2_{n}"] for n in patch_scores] == [1.0, 0.5, 3.0]
    # the same features without the Lite2 copies (features= given with the ensemble): full weight
    fusion.fit({n: np.ones(4) for n in feats if not n.startswith("lite2_")})
    assert [fusion.weights[n] for n in patch_scores] == [2.0, 1.0, 6.0]


def test_a_single_backbones_key_on_an_ensemble_says_where_it_belongs(tmp_path):
    """model=ulsad sets backbone.layers for its one CNN: with the ensemble it was a TypeError
    ("unexpected keyword argument 'layers'") from inside Hydra's instantiate."""
    cfg = compose_cfg(["model=ulsad", "backbone=efficientnet_lite0_lite2"], tmp_path)
    with pytest.raises(ConfigError, match=r"ensemble has no layers, patch_size, pool_size: .*backbone.members.<name>.layers.*model=ulsad"):
        build(cfg.backbone, members={n: {"pretrained": False} for n in cfg.backbone.members})


def test_the_ensembles_image_size_is_every_members_input_size(tmp_path):
    """`backbone.image_size=N` with the ensemble moves both members' inputs, as it moves a single
    backbone's (the data were read at N while the members kept 296 px); one member can differ."""
    def sizes(overrides):
        cfg = compose_cfg(["backbone=efficientnet_lite0_lite2", *overrides], tmp_path)
        bb = instantiate(cfg.backbone, members={n: {"pretrained": False} for n in cfg.backbone.members})
        return cfg.data.image_size, [m.image_size for m in bb.members.values()]

    assert sizes([]) == (296, [296, 296])
    assert sizes(["backbone.image_size=448"]) == (448, [448, 448])
    assert sizes(["backbone.members.lite2.image_size=352"]) == (296, [296, 352])


def test_a_copy_weighted_on_its_own_is_a_clear_error():
    from locoad.errors import ConfigError
    from locoad.fusion.loo import LeaveOneOutSum

    with pytest.raises(ConfigError, match="fusion.weights sets lite2_a.*weight the score it copies"):
        LeaveOneOutSum(weights={"lite2_a": 2.0}, shared_weights={"a": ["lite2_a"]})


def test_the_lite0_lite2_fusion_has_measured_one_shot_scales_for_every_score(tmp_path):
    """At one shot (no leave-one-out) each score is divided by its measured initial scale; a
    Lite2 patch score left at the 1.0 fallback would count ~6x less than its Lite0 twin."""
    import json

    from conftest import REPO

    cfg = compose_cfg(["experiment=lite0_lite2"], tmp_path)
    measured = json.loads((REPO / "benchmarks/results/initial_scales_lite0_lite2.json").read_text())["initial_scales"]
    assert set(measured) == set(cfg.features)
    fusion = instantiate(cfg.fusion).fit({n: np.zeros(0) for n in cfg.features})
    assert fusion.scales == pytest.approx(measured, rel=1e-3)
    # the primary member's scales are the single-backbone default's (the same features)
    single = json.loads((REPO / "benchmarks/results/initial_scales.json").read_text())["initial_scales"]
    for n in ("class_agnostic_patch", "class_aware_patch", "foreground_patch"):
        assert measured[n] == pytest.approx(single[n], rel=1e-3)


def choices(overrides: list[str]) -> tuple[str, str, str]:
    """(backbone, features, fusion) that the root config composes to."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        chosen = compose("config", overrides=overrides, return_hydra_config=True).hydra.runtime.choices
    return chosen.backbone, chosen.features, chosen.fusion


def test_the_ensemble_backbone_brings_its_patch_scores_and_weights():
    """`backbone=efficientnet_lite0_lite2` alone brings Lite2's foreground copy and
    `experiment=lite0_lite2` all three copies; a single backbone brings the single-backbone scores
    back; a features= or fusion= given with it still wins."""
    assert choices(["backbone=efficientnet_lite0_lite2"]) == (
        "efficientnet_lite0_lite2", "robust_lite2_foreground", "loo_patch_weighted")
    assert choices(["experiment=lite0_lite2"]) == ("efficientnet_lite0_lite2", "robust_lite0_lite2", "loo_patch_weighted")
    assert choices(["backbone=efficientnet_lite2"]) == ("efficientnet_lite2", "robust", "loo_patch_weighted")
    # the experiment names its features: on one backbone their Lite2 copies are refused at build (above)
    assert choices(["experiment=lite0_lite2", "backbone=efficientnet_lite2"]) == (
        "efficientnet_lite2", "robust_lite0_lite2", "loo_patch_weighted")
    assert choices(["backbone=efficientnet_lite0_lite2", "features=competition", "fusion=loo"]) == (
        "efficientnet_lite0_lite2", "competition", "loo")


@pytest.mark.parametrize("fusion", ["loo_patch_weighted", "loo", "max", "gated", "sum", "rank"])
def test_every_fusion_shares_a_patch_weight_with_its_ensemble_copy(fusion, tmp_path):
    single = compose_cfg(["backbone=efficientnet_lite0", f"fusion={fusion}"], tmp_path / "one")
    alone = instantiate(single.fusion).fit({n: np.ones(4) for n in single.features}).weights
    # all three copies (experiment=lite0_lite2): every patch weight halved
    cfg = compose_cfg(["experiment=lite0_lite2", f"fusion={fusion}"], tmp_path)
    weights = instantiate(cfg.fusion).fit({n: np.ones(4) for n in cfg.features}).weights
    for n in ("class_agnostic_patch", "class_aware_patch", "foreground_patch"):
        assert weights[n] == weights[f"lite2_{n}"] == alone.get(n, 1.0) / 2
    # the backbone alone (only the foreground copy): the foreground weight halved, the others whole
    cfg = compose_cfg(["backbone=efficientnet_lite0_lite2", f"fusion={fusion}"], tmp_path / "fg")
    weights = instantiate(cfg.fusion).fit({n: np.ones(4) for n in cfg.features}).weights
    assert weights["foreground_patch"] == weights["lite2_foreground_patch"] == alone.get("foreground_patch", 1.0) / 2
    for n in ("class_agnostic_patch", "class_aware_patch"):
        assert weights[n] == alone.get(n, 1.0) and f"lite2_{n}" not in weights


@pytest.mark.parametrize(("features", "members"), [("robust_lite2_foreground", ["lite0", "lite2"]), ("competition", None)])
def test_a_member_no_score_reads_is_not_run(features, members, tmp_path):
    """`backbone=efficientnet_lite0_lite2 features=competition` reads Lite0 alone: the model runs
    Lite0 alone (the ensemble ran Lite2 for nothing), and scores as the single backbone does."""
    cfg = compose_cfg(["backbone=efficientnet_lite0_lite2", f"features={features}", "model.cache.enabled=false"], tmp_path)
    module = build(cfg.model, backbone={"members": {n: {"pretrained": False} for n in cfg.backbone.members}})
    bb = module.model.backbone
    if members is None:
        assert isinstance(bb, EfficientNetLiteBackbone) and bb.variant == "lite0" and module.model.parts == {}
    else:
        assert isinstance(bb, BackboneEnsemble) and list(bb.members) == members


def test_members_read_keeps_the_primary_and_refuses_nothing():
    ens = BackboneEnsemble(members())
    assert members_read(ens, {"lite2"}) is ens
    assert members_read(ens, set()) is ens.members["lite0"]
    assert members_read(ens, {"lite3"}) is ens  # the model names the missing member
