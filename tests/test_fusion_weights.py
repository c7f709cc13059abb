"""Fusion rules honour ``fusion.weights`` (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from locoad.fusion.simple import MeanRank


def test_rank_fusion_weights_change_the_result():
    # a and b order the four images in opposite ways; ranks used to be taken after a positive
    # scaling by the weight, so w=1 and w=10 gave the same output.
    scores = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([4.0, 3.0, 2.0, 1.0])}
    loo = {"a": np.array([1.0, 2.0]), "b": np.array([1.0, 2.0])}
    equal = MeanRank().fit(loo).fuse(scores)
    heavy_a = MeanRank(weights={"a": 10.0}).fit(loo).fuse(scores)
    only_b = MeanRank(weights={"a": 0.0}).fit(loo).fuse(scores)
    np.testing.assert_allclose(equal, 0.625)  # every image ties
    assert np.all(np.diff(heavy_a) > 0)  # a dominates: its order
    np.testing.assert_allclose(only_b, [1.0, 0.75, 0.5, 0.25])  # b alone
    with pytest.raises(ValueError, match="non-zero weight"):
        MeanRank(weights={"a": 0.0, "b": 0.0}).fit(loo).fuse(scores)


def test_anomaly_map_honours_fusion_weights(loco_root):
    # The map used to divide each patch map by its scale only, so a feature switched off in the
    # fusion (weight 0) still shaped the pixel metrics and overlays.
    import torch

    from locoad.aligners.hungarian import HungarianAligner
    from locoad.backbones.handcrafted import HandcraftedBackbone
    from locoad.data.datamodule import LocoDataModule
    from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
    from locoad.features.foreground_patch import ForegroundPatchScore
    from locoad.fusion.loo import LeaveOneOutSum
    from locoad.models.seven_feature.torch_model import SevenFeatureModel
    from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

    dm = LocoDataModule(str(loco_root), "widgets", k_shot=3, image_size=112, batch_size=3)
    dm.setup()
    shots = next(iter(dm.train_dataloader()))["image"]
    test = next(iter(dm.test_dataloader()))["image"][:2]

    def amap(names, weights):
        feats = {"class_agnostic_patch": ClassAgnosticPatchScore, "foreground_patch": ForegroundPatchScore}
        m = SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(), HandcraftedBackbone(image_size=112),
                              {n: feats[n]() for n in names}, LeaveOneOutSum(weights=weights), work_size=64)
        m.fit(m.encode(shots))
        return m.score(m.encode(test))[1]

    alone = amap(["class_agnostic_patch"], {})
    both = amap(["class_agnostic_patch", "foreground_patch"], {})
    off = amap(["class_agnostic_patch", "foreground_patch"], {"foreground_patch": 0.0})
    doubled = amap(["class_agnostic_patch", "foreground_patch"], {"class_agnostic_patch": 2.0, "foreground_patch": 0.0})
    assert not torch.allclose(both, alone)  # the foreground map does contribute when on
    torch.testing.assert_close(off, alone)
    torch.testing.assert_close(doubled, 2 * alone)


def test_zero_loo_max_falls_back_to_the_initial_scale(caplog):
    # Shots that agree exactly (LOO max 0) used to floor the divisor at min_scale = 1e-6: any
    # non-zero test score became ~1e6 and this one feature the whole fused score.
    from locoad.fusion.loo import LeaveOneOutSum

    loo = {"a": np.array([0.2, 0.4]), "hist": np.zeros(3)}
    with caplog.at_level("WARNING"):
        fusion = LeaveOneOutSum(initial_scales={"hist": 0.5}).fit(loo)
    assert fusion.scales == {"a": 0.4, "hist": 0.5}
    assert any("hist" in r.getMessage() and "initial scale" in r.getMessage() for r in caplog.records)
    fused = fusion.fuse({"a": np.array([0.4, 0.8]), "hist": np.array([0.0, 0.05])})
    np.testing.assert_allclose(fused, [1.0, 2.1])
    # without a measured initial scale: default_initial_scale, never a 1e6 multiplier
    assert LeaveOneOutSum().fit({"hist": np.zeros(2)}).scales["hist"] == 1.0
    with pytest.raises(ValueError, match="initial_scales.hist"):
        LeaveOneOutSum(initial_scales={"hist": 0.0}).fit({"hist": np.zeros(2)})


def test_one_shot_without_a_measured_scale_warns(caplog):
    from locoad.fusion.loo import LeaveOneOutSum

    with caplog.at_level("WARNING"):
        fusion = LeaveOneOutSum(initial_scales={"a": 0.2}).fit({"a": np.zeros(0), "b": np.zeros(0)})
    assert fusion.scales == {"a": 0.2, "b": 1.0}
    said = [r.getMessage() for r in caplog.records if "no 1-shot initial scale" in r.getMessage()]
    assert len(said) == 1 and "for b;" in said[0] and "--only b" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING"):
        LeaveOneOutSum(initial_scales={"a": 0.2}).fit({"a": np.zeros(0)})  # every score measured
        LeaveOneOutSum().fit({"b": np.array([0.1, 0.2])})  # two shots: the LOO max, no initial scale
    assert not [r for r in caplog.records if "no 1-shot initial scale" in r.getMessage()]


@pytest.mark.parametrize("rule", ["loo", "max", "gated", "loo_patch_weighted"])
def test_one_shot_uses_measured_initial_scales(rule, tmp_path):
    # initial_scales: {} made every 1-shot divisor 1.0: a raw sum of scores whose ranges differ
    # by a factor of ~40 (class_histogram ~0.02, class_colour ~0.5). The shipped values are the
    # ones benchmarks/initial_scales.py measured (on generated train images, never a test split).
    import json

    from conftest import REPO, compose_cfg
    from locoad.utils import build

    # the one-backbone stack it was measured on (an ensemble's member scores: test_backbone_ensemble.py)
    cfg = compose_cfg([f"fusion={rule}", "backbone=efficientnet_lite0", "logger=none"], tmp_path / "run")
    measured = json.loads((REPO / "benchmarks/results/initial_scales.json").read_text())["initial_scales"]
    shipped = dict(cfg.fusion.initial_scales)
    # every feature any preset can select has a measured 1-shot divisor, not the 1.0 fallback,
    # and so do the Lite2 member's patch scores that experiment=lite0_lite2 scores
    every_feature = {p.stem for p in (REPO / "conf" / "feature_defaults").glob("*.yaml")}
    members = set(compose_cfg(["experiment=lite0_lite2"], tmp_path / "ens").features) - every_feature
    assert members == {"lite2_class_agnostic_patch", "lite2_class_aware_patch", "lite2_foreground_patch"}
    assert set(shipped) == set(measured) == every_feature | members >= set(cfg.features)
    for name, value in shipped.items():
        assert value == pytest.approx(measured[name], rel=1e-3) and value > 0
    fusion = build(cfg.fusion).fit({n: np.zeros(0) for n in cfg.features})  # 1 shot: no LOO scores
    assert fusion.scales == pytest.approx({n: shipped[n] for n in cfg.features})


def test_initial_scales_script_measures_and_writes(loco_root, tmp_path):
    import shutil

    import initial_scales as script
    from omegaconf import OmegaConf

    from conftest import REPO

    tiny = ["backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "model.cache.enabled=false",
            "features=competition"]
    result = script.measure(loco_root, ["widgets"], pairs=2, overrides=tiny)
    scales = result["initial_scales"]
    assert set(scales) == {"class_agnostic_patch", "foreground_patch", "class_histogram"}
    # the median over the pairs of each pair's 2-shot LOO max, measured again by hand
    model, _ = script.compose_model(tiny)
    maxima = script.pair_loo_maxima(model, loco_root, "widgets", pairs=2)
    for name, value in scales.items():
        assert value == pytest.approx(np.median(maxima[name])) and value > 0
    yaml = tmp_path / "loo.yaml"
    shutil.copy(REPO / "conf" / "fusion" / "loo.yaml", yaml)
    for _ in range(2):  # the second write replaces the marked block
        script.write_yaml(yaml, script.yaml_block(scales, "a test"))
    loaded = OmegaConf.load(yaml)
    assert dict(loaded.initial_scales) == pytest.approx(scales, rel=1e-3)
    assert loaded._target_ == "locoad.fusion.loo.LeaveOneOutSum" and yaml.read_text().count("initial_scales:") == 1


@pytest.mark.parametrize("rule", ["loo", "gated"])
def test_full_weight_shots_ramps_a_weight_with_the_shots(rule, caplog):
    # A score standardised by the shots' spread (composition) has no spread at one shot: its
    # weight grows as weights[f] * min(k, n) / n and refitting on more shots restores it.
    from locoad.fusion.gated import GatedSum
    from locoad.fusion.loo import LeaveOneOutSum

    cls = {"loo": LeaveOneOutSum, "gated": GatedSum}[rule]
    fusion = cls(weights={"comp": 4.0, "patch": 2.0}, full_weight_shots={"comp": 4, "absent": 2})
    for k, expected in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (8, 4.0), (2, 2.0)]:
        loo = {n: np.full(k if k > 1 else 0, 0.5) for n in ("comp", "patch")}  # 1 shot: no LOO scores
        with caplog.at_level("WARNING"):
            fusion.fit(loo)
        assert fusion.weights == {"comp": expected, "patch": 2.0}
        assert fusion.map_weight("comp") == pytest.approx(expected / fusion.scales["comp"])
    assert any("absent" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="full_weight_shots"):
        LeaveOneOutSum(full_weight_shots={"comp": 0})


def test_default_fusion_ramps_composition(tmp_path):
    # The shipped default: composition enters as w log(1 + r) with w = 1 / 2 / 3 / 3 at k = 1 / 2 / 4 / 8.
    from conftest import compose_cfg
    from locoad.utils import build

    fusion = build(compose_cfg(["logger=none"], tmp_path / "run").fusion)
    for k, w in [(1, 1.0), (2, 2.0), (4, 3.0), (8, 3.0)]:
        fusion.fit({n: np.ones(k if k > 1 else 0) for n in ("composition", "foreground_patch")})
        fused = fusion.fuse({"composition": np.array([3.0]) * fusion.scales["composition"],
                             "foreground_patch": np.array([1.0]) * fusion.scales["foreground_patch"]})
        np.testing.assert_allclose(fused, fusion.base_weights["foreground_patch"] + w * np.log(4.0))


def test_model_ramps_by_its_shots_not_by_the_shots_held_out(loco_root):
    # max_loo holds out fewer shots than k: the ramp must follow k (the fusion is told it).
    from locoad.aligners.hungarian import HungarianAligner
    from locoad.backbones.handcrafted import HandcraftedBackbone
    from locoad.data.datamodule import LocoDataModule
    from locoad.features.foreground_patch import ForegroundPatchScore
    from locoad.fusion.loo import LeaveOneOutSum
    from locoad.models.seven_feature.torch_model import SevenFeatureModel
    from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

    dm = LocoDataModule(str(loco_root), "widgets", k_shot=4, image_size=112, batch_size=4)
    dm.setup()
    shots = next(iter(dm.train_dataloader()))["image"]
    fusion = LeaveOneOutSum(weights={"foreground_patch": 3.0}, full_weight_shots={"foreground_patch": 4})
    model = SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(), HandcraftedBackbone(image_size=112),
                              {"foreground_patch": ForegroundPatchScore()}, fusion, work_size=64, max_loo=2)
    model.fit(model.encode(shots, shots=True))
    assert len(model.loo_scores["foreground_patch"]) == 2
    assert fusion.weights["foreground_patch"] == 3.0  # 4 shots: full weight (2 held out would give 1.5)


def test_initial_scales_only_adds_a_feature_and_keeps_the_shipped_scales(tmp_path, monkeypatch):
    import json
    import shutil

    import initial_scales as script
    from omegaconf import OmegaConf

    from conftest import REPO

    (tmp_path / "conf" / "fusion").mkdir(parents=True)
    for name in script.FUSIONS:
        shutil.copy(REPO / "conf" / "fusion" / f"{name}.yaml", tmp_path / "conf" / "fusion")
    out = tmp_path / "scales.json"
    shutil.copy(REPO / "benchmarks" / "results" / "initial_scales.json", out)
    shipped = dict(OmegaConf.load(tmp_path / "conf" / "fusion" / "loo.yaml").initial_scales)
    measured = json.loads(out.read_text())["initial_scales"]
    monkeypatch.setattr(script, "REPO", tmp_path)
    monkeypatch.setattr(script, "generate", lambda *a, **k: None)
    # the measured stack also gives a shipped feature another value: --only must not write it
    monkeypatch.setattr(script, "measure", lambda *a: {"initial_scales": {"new_score": 0.25, "class_histogram": 9.0},
                                                       "per_category_median": {}})
    for _ in range(2):  # measured again: its provenance line is replaced, not repeated
        script.main(["--only", "new_score", "--out", str(out)])
    assert (tmp_path / "conf" / "fusion" / "loo.yaml").read_text().count("# new_score: ") == 1
    for name in script.FUSIONS:
        scales = dict(OmegaConf.load(tmp_path / "conf" / "fusion" / f"{name}.yaml").initial_scales)
        assert scales == {**shipped, "new_score": 0.25}
    saved = json.loads(out.read_text())
    assert saved["initial_scales"]["new_score"] == 0.25 and saved["initial_scales"] == {**measured, "new_score": 0.25}
    assert saved["added"][-1]["features"] == ["new_score"]
    with pytest.raises(SystemExit, match="not among the measured"):
        script.main(["--only", "unmeasured", "--out", str(out)])


def test_initial_scales_with_no_fusion_named_writes_only_the_json(tmp_path, monkeypatch):
    """``--fusion`` naming none: a stack's every scale measured into its JSON, conf/ untouched."""
    import json
    import shutil

    import initial_scales as script

    from conftest import REPO

    (tmp_path / "conf" / "fusion").mkdir(parents=True)
    shutil.copy(REPO / "conf" / "fusion" / "loo.yaml", tmp_path / "conf" / "fusion")
    before = (tmp_path / "conf" / "fusion" / "loo.yaml").read_text()
    monkeypatch.setattr(script, "REPO", tmp_path)
    monkeypatch.setattr(script, "generate", lambda *a, **k: None)
    monkeypatch.setattr(script, "measure", lambda *a: {"initial_scales": {"a": 0.5, "lite2_a": 0.25},
                                                       "per_category_median": {}})
    out = tmp_path / "stack.json"
    script.main(["--overrides", "experiment=x", "--fusion", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["initial_scales"] == {"a": 0.5, "lite2_a": 0.25} and saved["overrides"] == ["experiment=x"]
    assert (tmp_path / "conf" / "fusion" / "loo.yaml").read_text() == before


@pytest.mark.parametrize("rule", ["loo", "gated"])
def test_scale_statistic_median_divides_by_the_loo_median(rule, caplog):
    # One odd shot sets a LOO maximum; fusion.scale_statistic={f: median} divides f by the median
    # of its LOO scores instead, the other features keep the maximum; 1 shot keeps the initial scale.
    from locoad.fusion.gated import GatedSum
    from locoad.fusion.loo import LeaveOneOutSum

    cls = {"loo": LeaveOneOutSum, "gated": GatedSum}[rule]
    fusion = cls(scale_statistic={"comp": "median", "absent": "median"}, initial_scales={"comp": 7.0})
    with caplog.at_level("WARNING"):
        fusion.fit({"comp": np.array([1.0, 2.0, 3.0, 30.0]), "patch": np.array([1.0, 2.0, 3.0, 30.0])})
    assert fusion.scales == {"comp": 2.5, "patch": 30.0}
    assert any("absent" in r.getMessage() for r in caplog.records)
    fusion.fit({"comp": np.array([]), "patch": np.array([])})
    assert fusion.scales["comp"] == 7.0
    with pytest.raises(ValueError, match="scale_statistic must be one of"):
        cls(scale_statistic={"comp": "mean"})


def test_a_median_of_zero_falls_back_to_the_loo_maximum_and_a_refit_keeps_no_old_scale(caplog):
    """Most shots' count 0 made the median 0, and the fusion divided by the 1-shot prior (22 times
    the measured spread here), saying the shots agree exactly; a refit kept the last fit's scales."""
    from locoad.fusion.loo import LeaveOneOutSum

    fusion = LeaveOneOutSum(scale_statistic={"comp": "median"}, initial_scales={"comp": 20.0})
    with caplog.at_level("WARNING"):
        fusion.fit({"comp": np.array([0.0, 0.0, 0.0, 0.6, 0.9]), "patch": np.array([1.0, 2.0])})
    assert fusion.scales == {"comp": 0.9, "patch": 2.0} and "agree exactly" not in caplog.text
    fusion.fit({"comp": np.zeros(4)})  # every shot 0: the prior, said
    assert fusion.scales == {"comp": 20.0} and "agree exactly" in caplog.text


def test_scale_statistic_is_a_fusion_setting(tmp_path):
    # The shipped loo rules accept the override (and leave every feature at the maximum by default).
    from conftest import compose_cfg
    from locoad.utils import build

    default = build(compose_cfg(["logger=none"], tmp_path / "a").fusion)
    median = build(compose_cfg(["logger=none", "+fusion.scale_statistic.composition=median"], tmp_path / "b").fusion)
    loo = {"composition": np.array([1.0, 1.0, 9.0]), "foreground_patch": np.array([1.0, 1.0, 9.0])}
    assert default.fit(loo).scales == {"composition": 9.0, "foreground_patch": 9.0}
    assert median.fit(loo).scales == {"composition": 1.0, "foreground_patch": 9.0}


@pytest.mark.parametrize("rule", ["gated", "max"])
def test_a_score_split_over_two_backbones_counts_as_one_in_gated_and_max(rule):
    """The default ensemble splits a patch score's weight over its Lite2 copy
    (fusion.shared_weights). Gated fused max(w r - 1, 0), so at w = 0.5 a copy counted only above
    twice its LOO maximum, and max took the larger half: both lost the score's evidence."""
    from locoad.fusion.gated import GatedSum
    from locoad.fusion.simple import MaxNormalised

    cls = {"gated": GatedSum, "max": MaxNormalised}[rule]
    loo = {n: np.ones(4) for n in ("fg", "lite2_fg", "other")}  # every LOO maximum 1
    test = {"fg": np.array([1.8, 1.0]), "lite2_fg": np.array([1.8, 1.0]), "other": np.array([1.0, 1.0])}
    one = cls().fit({n: loo[n] for n in ("fg", "other")}).fuse({n: test[n] for n in ("fg", "other")})
    two = cls(shared_weights={"fg": ["lite2_fg"]}).fit(loo).fuse(test)
    np.testing.assert_allclose(two, one)
    assert two[0] > two[1] + 0.5  # the flagged image stands out


@pytest.mark.parametrize("rule", ["loo", "gated", "max"])
def test_every_feature_switched_off_is_a_clear_error(rule):
    from locoad.errors import ConfigError
    from locoad.fusion.gated import GatedSum
    from locoad.fusion.loo import LeaveOneOutSum
    from locoad.fusion.simple import MaxNormalised

    cls = {"loo": LeaveOneOutSum, "gated": GatedSum, "max": MaxNormalised}[rule]
    fusion = cls(weights={"a": 0.0, "b": 0.0}).fit({"a": np.ones(2), "b": np.ones(2)})
    with pytest.raises(ConfigError, match="switch off every feature"):
        fusion.fuse({"a": np.ones(3), "b": np.ones(3)})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_leave_one_out_score_that_is_not_finite_is_a_clear_error(bad):
    """A NaN scale made every fused score NaN and an inf one switched the feature off, silently."""
    from locoad.fusion.loo import LeaveOneOutSum

    with pytest.raises(FloatingPointError, match="leave-one-out scores of a are not finite"):
        LeaveOneOutSum().fit({"a": np.array([0.2, bad]), "b": np.array([1.0, 2.0])})


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_max_loo_below_one_is_a_config_error(bad):
    """max_loo=0 left every score uncalibrated (scale 1, said as "no 1-shot initial scale") or
    failed with an IndexError under loo_reference=refit."""
    from locoad.aligners.hungarian import HungarianAligner
    from locoad.backbones.handcrafted import HandcraftedBackbone
    from locoad.errors import ConfigError
    from locoad.features.foreground_patch import ForegroundPatchScore
    from locoad.fusion.loo import LeaveOneOutSum
    from locoad.models.seven_feature.torch_model import SevenFeatureModel
    from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

    with pytest.raises(ConfigError, match="model.max_loo must be a whole number >= 1"):
        SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(), HandcraftedBackbone(image_size=112),
                          {"foreground_patch": ForegroundPatchScore()}, LeaveOneOutSum(), work_size=64, max_loo=bad)


def test_a_shot_without_foreground_is_said(tmp_path, caplog):
    """A blank shot's leave-one-out patch scores are 1 (no patch to score): as the fusion's scale
    they switched the patch scores off for the run, without a word (only the reference was checked)."""
    import torch

    from conftest import make_loco, train_images
    from locoad.aligners.hungarian import HungarianAligner
    from locoad.backbones.handcrafted import HandcraftedBackbone
    from locoad.features.foreground_patch import ForegroundPatchScore
    from locoad.fusion.loo import LeaveOneOutSum
    from locoad.models.seven_feature.torch_model import SevenFeatureModel
    from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

    shots = torch.cat([train_images(make_loco(tmp_path / "loco", n_train=4), 3), torch.full((1, 3, 112, 112), 0.4)])
    for blank in (False, True):
        m = SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(), HandcraftedBackbone(image_size=112),
                              {"foreground_patch": ForegroundPatchScore()}, LeaveOneOutSum(), work_size=64)
        caplog.clear()
        with caplog.at_level("WARNING", logger="locoad.models.seven_feature.torch_model"):
            m.fit(m.encode(shots if blank else shots[:3]))
        assert ("1 of 4 shots have no foreground patch" in caplog.text) == blank


@pytest.mark.parametrize("bad", [0, 4, -1, 64.0])
def test_a_work_size_too_small_to_map_classes_is_a_config_error(bad):
    """model.work_size=0 failed inside the first training step with a tensor-shape error."""
    from locoad.aligners.hungarian import HungarianAligner
    from locoad.backbones.handcrafted import HandcraftedBackbone
    from locoad.errors import ConfigError
    from locoad.features.foreground_patch import ForegroundPatchScore
    from locoad.fusion.loo import LeaveOneOutSum
    from locoad.models.seven_feature.torch_model import SevenFeatureModel
    from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

    with pytest.raises(ConfigError, match="model.work_size must be a whole number >= 8"):
        SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(), HandcraftedBackbone(image_size=112),
                          {"foreground_patch": ForegroundPatchScore()}, LeaveOneOutSum(), work_size=bad)


def test_feature_statistics_do_not_depend_on_the_shots_order(tmp_path):
    """feature_norm=standardize summed the shots' features in float32 in their drawn order; a
    checkpoint stores them reordered (the reference first), so a reload's statistics, and every
    patch score, differed in the last digits from the fitted model's."""
    import torch

    from conftest import make_loco, train_images
    from locoad.aligners.hungarian import HungarianAligner
    from locoad.backbones.handcrafted import HandcraftedBackbone
    from locoad.features.foreground_patch import ForegroundPatchScore
    from locoad.fusion.loo import LeaveOneOutSum
    from locoad.models.seven_feature.torch_model import SevenFeatureModel
    from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

    shots = train_images(make_loco(tmp_path / "loco", n_train=6), 6)
    stats = []
    for order in ([0, 1, 2, 3, 4, 5], [5, 3, 1, 4, 2, 0]):
        m = SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(), HandcraftedBackbone(image_size=112),
                              {"foreground_patch": ForegroundPatchScore()}, LeaveOneOutSum(), work_size=64,
                              feature_norm="standardize")
        m.fit(m.encode(shots[order]))
        stats.append((m.feat_mean, m.feat_std))
    assert torch.equal(stats[0][0], stats[1][0]) and torch.equal(stats[0][1], stats[1][1])


def test_a_scores_copies_take_its_log_and_scale_statistic():
    """With a backbone ensemble, log_features and scale_statistic named the score but not its
    lite2_ copy, which shares its weight, so the copy stayed linear and at its maximum; a copy in
    full_weight_shots was overwritten by the weight split without a word."""
    from locoad.errors import ConfigError
    from locoad.fusion.loo import LeaveOneOutSum

    shared = {"fp": ["lite2_fp"]}
    fusion = LeaveOneOutSum(log_features=["fp"], scale_statistic={"fp": "median"}, shared_weights=shared)
    fusion.fit({"fp": np.array([1.0, 2.0, 9.0]), "lite2_fp": np.array([1.0, 3.0, 9.0])})
    assert fusion.scales == {"fp": 2.0, "lite2_fp": 3.0}
    fused = fusion.fuse({"fp": np.array([2.0]), "lite2_fp": np.array([3.0])})
    assert fused == pytest.approx(0.5 * np.log1p(1.0) * 2)
    with pytest.raises(ConfigError, match="full_weight_shots names lite2_fp"):
        LeaveOneOutSum(full_weight_shots={"lite2_fp": 3}, shared_weights=shared)
