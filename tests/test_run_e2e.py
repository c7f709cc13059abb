"""End to end through the same runner the CLI uses: fit, test, outputs, checkpoint reload."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, compose_cfg, plant_twins
from locoad.run import run

TINY = ["data=mvtec_loco", "data.category=widgets", "data.k_shot=3", "data.num_workers=0",
        "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "logger=csv"]


@pytest.fixture
def fitted(loco_root, tmp_path):
    plant_twins(loco_root)
    out = tmp_path / "run"
    cfg = compose_cfg(TINY + [f"data.root={loco_root}"], out)
    metrics = run(cfg)
    return loco_root, out, metrics


def test_outputs_have_documented_shape(fitted):
    _, out, metrics = fitted
    on_disk = json.loads((out / "metrics.json").read_text())
    names = ["class_agnostic_patch", "class_aware_patch", "foreground_patch",
             "class_location", "class_count", "composition", "symmetry", "fused"]  # the default features=robust
    for name in names:
        entry = on_disk[name]
        assert 0 <= entry["f1_max"] <= 1 and 0 <= entry["auroc"] <= 1
        for t in ("logical", "structural"):
            assert set(entry[t]) >= {"f1_max", "auroc"}
    assert 0 <= on_disk["alignment"]["accuracy"] <= 1
    table = pd.read_csv(out / "scores.csv")
    assert {"path", "label", "anomaly_type", *names} <= set(table.columns)
    assert len(table) == 9 and table["fused"].notna().all()
    assert "data:" in (out / "config.yaml").read_text() and "${" not in (out / "config.yaml").read_text()
    # the tiny data set is easy: the two-disc/one-disc difference is one instance fewer
    assert on_disk["class_count"]["logical"]["auroc"] == 1.0


def test_planted_defect_scores_above_its_clean_twin(fitted):
    """Each anomaly is its good twin plus one planted defect: the fused score must rank every
    anomaly above its own twin, the scratch through the patch score, the missing disc through
    the instance count (a missing part changes no patch of what remains)."""
    _, out, _ = fitted
    table = pd.read_csv(out / "scores.csv")
    table["id"] = table["path"].map(lambda p: Path(p).name)
    by = {t: g.set_index("id") for t, g in table.groupby("anomaly_type")}
    good, structural, logical = by["good"], by["structural_anomalies"], by["logical_anomalies"]
    assert len(good) == len(structural) == len(logical) == 3
    for i in good.index:
        assert structural.loc[i, "fused"] > good.loc[i, "fused"], i
        assert logical.loc[i, "fused"] > good.loc[i, "fused"], i
        assert structural.loc[i, "class_agnostic_patch"] > good.loc[i, "class_agnostic_patch"], i
        assert logical.loc[i, "class_count"] > good.loc[i, "class_count"], i
    # and the metrics on disk are those of this table (pair-count AUROC, labels from the folders)
    metrics = json.loads((out / "metrics.json").read_text())
    anomalous, normal = table.loc[table["label"] == 1, "fused"].to_numpy(), good["fused"].to_numpy()
    pairs = anomalous[:, None] - normal[None, :]
    assert metrics["fused"]["auroc"] == pytest.approx(((pairs > 0) + 0.5 * (pairs == 0)).mean())
    assert (table["label"] == (table["anomaly_type"] != "good")).all()


def test_checkpoint_reload_gives_identical_scores(fitted, tmp_path, recwarn):
    loco_root, out, _ = fitted
    ckpt = out / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    out2 = tmp_path / "reload"
    cfg = compose_cfg(TINY + [f"data.root={loco_root}", "train=false", f"ckpt_path={ckpt}"], out2)
    run(cfg)
    # a run that only tests saves no checkpoint: Lightning's checkpoint callback, restored from
    # another run's folder, would warn that its dirpath changed (and make an empty checkpoints/)
    assert not [str(w.message) for w in recwarn if "dirpath" in str(w.message)]
    assert not (out2 / "checkpoints").exists()
    a, b = pd.read_csv(out / "scores.csv"), pd.read_csv(out2 / "scores.csv")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_true_half_precision_is_refused_before_any_work(loco_root, tmp_path, precision):
    """Lightning casts every weight to half; the backbones take float32 images and failed on the
    first batch with a raw dtype error."""
    from locoad.errors import ConfigError

    # the advice works with every trainer (only trainer=gpu has the key: a bare `trainer.precision=` is a struct error)
    with pytest.raises(ConfigError, match=f"trainer.precision={precision} .*use \\+\\+trainer.precision=bf16-mixed"):
        run(compose_cfg(TINY + [f"data.root={loco_root}", f"+trainer.precision={precision}"], tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_misspelt_fusion_weight_is_said(tmp_path, caplog):
    """+fusion.weights.<name>= with a name no feature has was ignored without a word: the
    ablation "changed nothing". A preset's weights for features a run leaves out are not said."""
    from locoad.run import warn_unknown_fusion_names

    for overrides, said in ((["+fusion.weights.composiiton=2"], "composiiton"), (["features=all7"], None),
                            (["+fusion.weights.lite2_foreground_patch=1"], None)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="locoad.run"):
            warn_unknown_fusion_names(compose_cfg(TINY + overrides, tmp_path / "run"))
        assert (said in caplog.text and "check the spelling" in caplog.text) if said else not caplog.records, overrides


def test_a_run_into_an_earlier_runs_folder_replaces_its_outputs(fitted):
    """Lightning's version counter saved the new model as last-v1.ckpt beside the old last.ckpt
    (which train=false ckpt_path=<run>/checkpoints/last.ckpt then tested), and an earlier run's
    exported maps stayed beside the new metrics."""
    import torch

    loco_root, out, _ = fitted
    (out / "anomaly_maps").mkdir()
    (out / "anomaly_maps" / "old.tiff").write_bytes(b"")
    run(compose_cfg([o for o in TINY if not o.startswith("data.k_shot")] + [f"data.root={loco_root}", "data.k_shot=2"], out))
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.ckpt"]
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert "'k_shot': 2" in str(state) and "'k_shot': 3" not in str(state)
    assert not (out / "anomaly_maps").exists()


@pytest.mark.parametrize("key", ["fusion", "aligner", "segmenter"])
def test_a_component_key_given_a_name_says_which_group_picks_it(tmp_path, key):
    """``model.fusion=max`` replaces the whole fusion config with a string (the group is
    ``fusion=max``); it used to fail later as "'str' object has no attribute 'fit'"."""
    from locoad.errors import ConfigError
    from locoad.utils import build

    with pytest.raises(ConfigError, match=rf"model.{key}='x' is a name.*{key}=<name> \(the files in conf/{key}/\)"):
        build(compose_cfg([f"model.{key}=x", "logger=none"], tmp_path / "run").model)


def test_a_run_log_has_no_lightning_advertisement(caplog):
    """Lightning logs a "💡 Tip" for its cloud logger at every Trainer; a run's log leaves it out."""
    import logging

    import lightning as L

    import locoad.run  # noqa: F401  (installs the filter)

    with caplog.at_level(logging.INFO):
        L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    assert caplog.records  # the Trainer logs (GPU available: ...), only the tip is gone
    assert "litlogger" not in caplog.text


def test_a_cli_run_prints_each_lightning_line_once_and_none_of_its_idle_warnings(loco_root, tmp_path):
    """Lightning's own console handler and Hydra's both printed every Lightning record ("INFO: GPU
    available ..." and "[time][lightning...][INFO] - GPU available ..."); and four Lightning
    warnings about training a model that trains nothing filled the demo's output."""
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "locoad", *TINY, f"data.root={loco_root}", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert text.count("GPU available") == 1, text[-3000:]
    assert text.count("Seed set to 0") == 1, text[-3000:]
    assert "GPU available" in (out / "run.log").read_text()  # through Hydra's handlers: in the run's log too
    for idle in ("validation_step", "configure_optimizers", "in eval mode", "LeafSpec"):
        assert idle not in text, idle


def test_a_run_stopped_midway_leaves_no_results_to_pass_for_finished(fitted, tmp_path, monkeypatch):
    """config.yaml is written first, the results last: a run of another config stopped midway in
    a finished folder left the old results beside its own config, and skip_if_done then took the
    old metrics for the new config's."""
    import locoad.run as runner

    loco_root, out, _ = fitted
    other = compose_cfg(TINY + [f"data.root={loco_root}", "+skip_if_done=true", "fusion=loo"], out)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stopped while fitting

    monkeypatch.setattr(runner, "fit_and_test", killed)
    with pytest.raises(KeyboardInterrupt):
        run(other)
    assert "LeaveOneOutSum" in (out / "config.yaml").read_text()
    assert not any((out / f).exists() for f in ("metrics.json", "scores.csv", "metrics.md"))
    assert runner.finished_metrics(out, other) is None  # so the re-run runs


@pytest.mark.parametrize("ckpt", [None, "/nowhere/last.ckpt"])
def test_testing_without_a_checkpoint_is_a_clear_error(loco_root, tmp_path, ckpt):
    from locoad.errors import ConfigError

    overrides = TINY + [f"data.root={loco_root}", "train=false"] + ([f"ckpt_path={ckpt}"] if ckpt else [])
    with pytest.raises(ConfigError, match="ckpt_path"):
        run(compose_cfg(overrides, tmp_path / "out"))


@pytest.mark.parametrize("override,named", [
    ("model.photometric=none", "photometric: checkpoint"),
    ("backbone.members.lite0.layers=[1,3]", "backbone.lite0.key.layers"),
    ("segmenter.merge_threshold=30", "segmenter.key.merge_threshold: checkpoint 12.0, config 30"),
])
def test_testing_a_checkpoint_under_other_encoding_settings_is_an_error(fitted, tmp_path, override, named):
    """The checkpoint holds the shots encoded; test images encoded under another backbone,
    segmenter or normalisation were scored against them silently."""
    from locoad.errors import ConfigError

    loco_root, out, _ = fitted
    cfg = compose_cfg(TINY + [f"data.root={loco_root}", "train=false", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
                              override], tmp_path / "other")
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("[", r"\[")):
        run(cfg)


def test_test_images_are_encoded_with_their_capture_s_aspect(loco_root, tmp_path, monkeypatch):
    """The shots were encoded with each capture's aspect, the test images as squares (aspect 1):
    a score that measures at the capture's scale (instance_set) compared the two at other scales."""
    import torch

    from locoad.utils import build

    module = build(compose_cfg(TINY + [f"data.root={loco_root}"], tmp_path / "run").model)
    module._pending = None
    seen = {}

    class Seen(Exception):
        pass

    def encode(images, shots=False, aspects=None):
        seen["aspects"] = aspects
        raise Seen

    monkeypatch.setattr(module.model, "encode", encode)
    aspects = torch.tensor([0.6875, 0.5], dtype=torch.float64)
    with pytest.raises(Seen):
        module.score_batch({"image": torch.zeros(2, 3, 112, 112), "aspect": aspects})
    assert seen["aspects"] is aspects


def test_testing_a_seven_feature_checkpoint_as_ulsad_names_the_model(fitted, tmp_path):
    """A seven-feature checkpoint given to ULSAD says which model wrote it (it failed on the
    state dict's keys, many lines)."""
    from locoad.errors import ConfigError

    loco_root, out, _ = fitted
    data = [o for o in TINY if o.startswith("data")]
    cfg = compose_cfg(data + [f"data.root={loco_root}", "model=ulsad_tiny", "logger=csv", "train=false",
                              f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"], tmp_path / "as_ulsad")
    # it once said "not model=ulsad" to a model=ulsad_tiny run
    with pytest.raises(ConfigError, match=r"model=seven_feature, not by a ULSAD model \(model=ulsad or ulsad_tiny\)"):
        run(cfg)


@pytest.mark.parametrize("override,named", [("data.k_shot=2", "data.k_shot=3 (this run: 2)"),
                                            ("data.seed=5", "data.seed=0 (this run: 5)")])
def test_testing_a_checkpoint_on_another_shot_draw_is_an_error(fitted, tmp_path, override, named):
    """A checkpoint tested with other data settings scored its own shots and wrote the run's
    settings into config.yaml as if they were the fitted ones."""
    from locoad.errors import ConfigError

    loco_root, out, _ = fitted
    cfg = compose_cfg(TINY + [f"data.root={loco_root}", "train=false", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
                              override], tmp_path / "other_draw")
    with pytest.raises(ConfigError, match=re.escape(named)):
        run(cfg)


def test_a_checkpoint_of_another_backbone_names_both_backbones():
    """A checkpoint of the Lite0 + Lite2 ensemble tested with one backbone listed the config's
    first four leaves, each as "checkpoint None", and never said which backbone the checkpoint had."""
    from locoad.models.seven_feature.lightning_model import differences

    member = {"class": "TimmEfficientNet", "key": {"layers": [1, 2], "image_size": 296}}
    saved = {"backbone": {"lite0": member, "lite2": {**member, "class": "TimmEfficientNetL2"}}, "work_size": 128}
    now = {"backbone": {"backbone": {"class": "HandcraftedBackbone", "key": {"a": 1, "b": 2, "c": 3, "d": 4}}},
           "work_size": 128}
    out = differences(saved, now)
    assert out == ["backbone.backbone: checkpoint absent, config 'HandcraftedBackbone'",
                   "backbone.lite0: checkpoint 'TimmEfficientNet', config absent",
                   "backbone.lite2: checkpoint 'TimmEfficientNetL2', config absent"]
    one = {"backbone": {"lite0": {"class": "A", "key": {"image_size": 224}}}, "work_size": 128}
    other = {"backbone": {"lite0": {"class": "A", "key": {"image_size": 296}}}, "work_size": 128}
    assert differences(one, other) == ["backbone.lite0.key.image_size: checkpoint 224, config 296"]
