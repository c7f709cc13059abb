"""ULSAD: losses and score combination on hand-made tensors, training, end-to-end runs (offline)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import CONF, compose_cfg, ulsad_overrides
from locoad.backbones.cnn import TimmCNNBackbone
from locoad.components.blur import gaussian_blur
from locoad.errors import CheckpointNotFoundError, WeightsUnavailableError
from locoad.models.ulsad import ULSADModule, losses
from locoad.models.ulsad.torch_model import (
    PatchFeatures,
    fuse_maps,
    image_score,
    map_quantiles,
    normalise_map,
)


def tiny_backbone(**kwargs) -> TimmCNNBackbone:
    """ResNet-18 configured as the ULSAD preset configures its backbone: 64 px, stride-8 grid."""
    return TimmCNNBackbone(**{"model_name": "resnet18", "pretrained": False, "image_size": 64, "patch_size": 8,
                              "pool_size": 1, **kwargs})


TINY_KW = dict(image_size=64, feature_dim=64, hidden_dim=128, global_width=16, blur_sigma=1.0, lr=1e-3)


def grid(*vectors: tuple[float, ...]) -> torch.Tensor:
    """(1, C, 1, N) map whose N positions hold the given C-vectors."""
    return torch.tensor(vectors, dtype=torch.float32).T[None, :, None, :]


# -- losses -------------------------------------------------------------------------------
def test_feature_distance_known_values():
    a, b = grid((1.0, 0.0), (2.0, 0.0)), grid((0.0, 1.0), (1.0, 0.0))
    d = losses.feature_distance(a, b, lam=0.5)
    # position 0: mean((1,-1)^2) = 1, orthogonal -> +0.5; position 1: mean((1,0)^2) = 0.5, parallel -> +0
    assert d.shape == (1, 1, 2)
    assert torch.allclose(d, torch.tensor([[[1.5, 0.5]]]))
    assert torch.allclose(losses.feature_distance(a, a, lam=0.5), torch.zeros(1, 1, 2), atol=1e-6)


def test_local_and_global_local_loss_are_mean_distances():
    a, b = grid((1.0, 0.0), (2.0, 0.0)), grid((0.0, 1.0), (1.0, 0.0))
    assert losses.local_loss(a, b, lam=0.5).item() == pytest.approx(1.0)
    assert losses.global_local_loss(a, b, lam=0.0).item() == pytest.approx(0.75)


def test_attention_known_values():
    values = grid((1.0, 0.0), (3.0, 2.0))
    # a zero query gives uniform weights: every position receives the mean value (2, 1)
    out = losses.attention(torch.zeros_like(values), values, values)
    assert torch.allclose(out, grid((2.0, 1.0), (2.0, 1.0)))
    # one-hot keys scaled by sqrt(C): weights softmax([1, 0]) for position 0
    keys = grid((math.sqrt(2), 0.0), (0.0, math.sqrt(2)))
    query = grid((1.0, 0.0), (0.0, 1.0))
    w = 1 / (1 + math.exp(-1))  # softmax([1, 0])[0]
    out = losses.attention(query, keys, values)
    expected = grid((w * 1 + (1 - w) * 3, (1 - w) * 2), ((1 - w) * 1 + w * 3, w * 2))
    assert torch.allclose(out, expected, atol=1e-6)


def test_attention_loss_zero_iff_global_output_matches_features():
    f = grid((1.0, 0.0), (0.0, 2.0), (1.0, 1.0))
    assert losses.attention_loss(f, f, lam=0.5).item() == pytest.approx(0.0, abs=1e-6)
    target = losses.attention(f, f, f)
    uniform = f.mean(dim=(2, 3), keepdim=True).expand_as(f)  # what a zero query attends to
    expected = losses.feature_distance(target, uniform, 0.5).mean()
    assert losses.attention_loss(f, torch.zeros_like(f), lam=0.5).item() == pytest.approx(expected.item())


# -- maps and scores ----------------------------------------------------------------------
def test_score_combination_on_hand_made_maps():
    local = torch.tensor([[[1.0, 2.0], [3.0, 1.0]]])  # qa = 1, qb = 3 -> 0 ... 0.1
    global_ = torch.tensor([[[10.0, 10.0], [10.0, 30.0]]])  # qa = 10, qb = 30
    nl = normalise_map(local, torch.tensor([1.0, 3.0]))
    ng = normalise_map(global_, torch.tensor([10.0, 30.0]))
    assert torch.allclose(nl, torch.tensor([[[0.0, 0.05], [0.1, 0.0]]]))
    fused = fuse_maps(nl, ng, local_weight=0.5)
    assert torch.allclose(fused, torch.tensor([[[0.0, 0.025], [0.05, 0.05]]]))
    assert torch.allclose(image_score(fused), torch.tensor([0.05]))
    assert torch.allclose(image_score(torch.stack([nl[0], ng[0]])), torch.tensor([0.1, 0.1]))


def test_map_quantiles_and_blur():
    q = map_quantiles(torch.arange(1001.0), 0.9, 0.995)
    assert torch.allclose(q, torch.tensor([900.0, 995.0]))
    flat = torch.full((2, 16, 16), 3.0)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat)  # normalised kernel keeps constants
    spike = torch.zeros(1, 33, 33)
    spike[0, 16, 16] = 1.0
    blurred = gaussian_blur(spike, 1.0)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5) and blurred.max() < 0.2


# -- model --------------------------------------------------------------------------------
def test_maps_stay_float32_when_the_networks_run_in_bfloat16():
    """``trainer.precision=bf16-mixed`` runs the networks in bfloat16; the maps, and the image
    scores ranked from them, are float32. Computed in bfloat16 (as an H200 run found), the
    global scores of these 8 images tied in 4 pairs."""
    torch.manual_seed(0)
    model = ULSADModule(tiny_backbone(), **TINY_KW).model.eval()
    images = torch.rand(8, 3, 64, 64)
    model.features.fit([images])
    model.fit_map_quantiles(*model.raw_maps(images), 0.9, 0.995)
    want = model.maps(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.maps(images)
    for name, amap in got.items():
        scores = image_score(amap)
        assert amap.dtype == torch.float32 and len(torch.unique(scores)) == len(images), name
        # the networks' bfloat16 error only: scores within a few % of the float32 run's
        torch.testing.assert_close(scores, image_score(want[name]), rtol=0.1, atol=0.02)


def test_maps_run_every_convolution_at_float32():
    """A GPU would run the networks' and the blur's float32 convolutions as TF32: scores of a
    checkpoint then differed from the CPU's by up to 2e-3 relative (an H100 run). The maps ask
    for full float32 (cuDNN's flag read inside each branch) and leave the flag as it was."""
    conv = torch.backends.cudnn.conv
    model = ULSADModule(tiny_backbone(), **TINY_KW).model.eval()
    seen = []
    for branch in (model.local_branch, model.global_branch):
        branch.register_forward_pre_hook(lambda *_: seen.append(conv.fp32_precision))
    before = conv.fp32_precision
    model.raw_maps(torch.rand(2, 3, 64, 64))
    assert seen == ["ieee", "ieee"] and conv.fp32_precision == before


def test_training_lowers_loss(loco_root):
    from locoad.data.dataset import LocoDataset
    from locoad.data.layout import category_dir, list_split

    torch.manual_seed(0)
    samples = list_split(category_dir(loco_root, "widgets"), "train")
    images = torch.stack([LocoDataset(samples, 64)[i]["image"] for i in range(4)])
    module = ULSADModule(tiny_backbone(), **TINY_KW)
    module.model.features.fit([images])
    opt = module.configure_optimizers()["optimizer"]
    module.train()
    history = []
    for _ in range(8):
        loss = module.model.loss(images)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.8 * history[0], history
    assert not any(p.requires_grad for p in module.model.features.parameters())


def test_pretrained_failure_says_which_weights_to_fetch(monkeypatch, tmp_path):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained") and "pretrained_cfg_overlay" not in kwargs:
            raise OSError("no network")
        return create(*args, **kwargs)

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsUnavailableError, match="backbone.checkpoint"):
        tiny_backbone(pretrained=True)
    with pytest.raises(CheckpointNotFoundError, match="resnet18"):
        tiny_backbone(checkpoint=str(tmp_path / "missing.safetensors"))


def test_features_come_from_a_locoad_backbone():
    feats = PatchFeatures(tiny_backbone(), feature_dim=64)
    assert feats(torch.rand(2, 3, 64, 64)).shape == (2, 64, 8, 8)  # stride-8 grid at 64 px
    with pytest.raises(TypeError, match="locoad Backbone"):
        PatchFeatures(torch.nn.Identity(), feature_dim=64)
    with pytest.raises(ValueError, match="feature_dim"):
        PatchFeatures(tiny_backbone(), feature_dim=4096)


def test_truncated_backbone_checkpoint_is_rejected(tmp_path):
    # ULSAD had its own timm features_only loader, which loads non-strictly: a file missing
    # layer2.* left those weights random without a word. It now uses the backbones/ loader.
    import timm

    from locoad.errors import CheckpointMismatchError
    from locoad.utils import build

    full = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path / "resnet18_truncated.pth"
    torch.save({k: v for k, v in full.items() if not k.startswith("layer2.")}, path)
    cfg = compose_cfg(["model=ulsad_tiny", f"backbone.checkpoint={path}", "logger=none"], tmp_path / "run")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: layer2\.0\."):
        build(cfg.model)
    torch.save(full, path)  # the complete file loads, into the backbone ULSAD uses
    module = build(cfg.model)
    loaded = module.model.features.backbone.model.state_dict()
    assert torch.equal(loaded["layer2.0.conv1.weight"], full["layer2.0.conv1.weight"])


# -- configs and end to end ---------------------------------------------------------------
def test_presets_compose():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["model=ulsad"])
        tiny = compose("config", overrides=["model=ulsad_tiny"])
        sweep = compose("config", overrides=["experiment=ulsad_ablation"], return_hydra_config=True)
    assert cfg.model._target_ == "locoad.models.ulsad.ULSADModule"
    assert cfg.data.image_size == cfg.model.image_size == 256
    assert tiny.model.backbone.model_name == "resnet18" and tiny.data.image_size == 64
    assert cfg.model.backbone._target_ == "locoad.backbones.cnn.TimmCNNBackbone"  # backbones/, not a copy
    assert cfg.backbone.model_name == "wide_resnet50_2" and cfg.backbone.image_size == 256
    assert cfg.backbone.patch_size == 8 and cfg.backbone.pool_size == 1
    assert set(sweep.hydra.sweeper.params) >= {"model.weight_attn", "model.weight_global", "backbone.layers"}


def test_ulsad_preset_sets_trainer_epochs():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        assert compose("config", overrides=["model=ulsad"]).trainer.max_epochs == 200


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    from locoad.run import run

    root = tmp_path_factory.mktemp("ulsad")
    out = root / "run"
    metrics = run(compose_cfg(ulsad_overrides(root), out))
    return root, out, metrics


def test_end_to_end_outputs(fitted_run):
    _, out, metrics = fitted_run
    on_disk = json.loads((out / "metrics.json").read_text())
    assert set(on_disk) >= {"local", "global", "fused"}
    table = pd.read_csv(out / "scores.csv")
    assert {"path", "label", "anomaly_type", "local", "global", "fused"} <= set(table.columns)
    assert table["fused"].notna().all() and "pixel_auroc" in on_disk["fused"]
    for name in ("local", "global", "fused"):  # the metrics are those of the scores on disk
        pos = table.loc[table["label"] == 1, name].to_numpy()
        neg = table.loc[table["label"] == 0, name].to_numpy()
        pairs = pos[:, None] - neg[None, :]
        assert on_disk[name]["auroc"] == pytest.approx(((pairs > 0) + 0.5 * (pairs == 0)).mean())
        for t in ("logical", "structural"):
            assert set(on_disk[name][t]) >= {"f1_max", "auroc"}
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert bool(state["state_dict"]["model.maps_fitted"]) and bool(state["state_dict"]["model.features.fitted"])
    assert state["epoch"] == 1 and state["global_step"] == 2


def test_planted_defect_raises_the_local_map_where_it_is(fitted_run):
    """A magenta square planted near the top-left corner of every good test image: the local
    (student) map on the square rises above the same spot of the clean twin, and the fused map
    is higher on the square than on the mirror-image spot (a flipped or shifted map fails).
    Measured (2 epochs, 12 twins): local map on the square >= 0.032 planted, <= 0.019 clean;
    fused, square minus mirror spot >= 0.044."""
    from locoad.data.dataset import LocoDataset
    from locoad.data.layout import category_dir, list_split
    from locoad.data.synthetic import CATEGORIES
    from locoad.utils import build

    root, out, _ = fitted_run
    cfg = compose_cfg(ulsad_overrides(root), root / "probe")
    module = build(cfg.model)  # the backbone from the config
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    module.eval()
    cdir = category_dir(Path(cfg.data.root), CATEGORIES[0])  # the generated data
    good = LocoDataset([s for s in list_split(cdir, "test") if s.label == 0], 64)
    clean = torch.stack([good[i]["image"] for i in range(len(good))])
    planted = clean.clone()
    planted[:, :, 8:24, 8:24] = torch.tensor([1.0, 0.0, 1.0])[:, None, None]
    with torch.no_grad():
        before, after = module.model.maps(clean), module.model.maps(planted)
    assert len(clean) >= 4
    square, mirror = np.s_[:, 10:22, 10:22], np.s_[:, 42:54, 42:54]
    assert after["local"][square].mean((1, 2)).min() > before["local"][square].mean((1, 2)).max()
    fused = after["fused"]
    assert (fused[square].mean((1, 2)) > fused[mirror].mean((1, 2))).all()


def test_test_only_from_checkpoint_gives_identical_scores(fitted_run):
    from locoad.run import run

    root, out, _ = fitted_run
    ckpt = out / "checkpoints" / "last.ckpt"
    out2 = root / "reload"
    run(compose_cfg(ulsad_overrides(root) + ["train=false", f"ckpt_path={ckpt}"], out2))
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv"), pd.read_csv(out2 / "scores.csv"))


def test_resume_continues_training(fitted_run):
    from locoad.run import run

    root, out, _ = fitted_run
    out3 = root / "resume"
    cfg = compose_cfg(ulsad_overrides(root) + ["trainer.max_epochs=3", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"], out3)
    run(cfg)
    state = torch.load(out3 / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and state["global_step"] == 3


def test_category_without_validation_normalises_on_training_images(tmp_path, caplog):
    # validation/ is optional in the LOCO layout; fitting the map quantiles used to crash with
    # "torch.cat(): expected a non-empty list of Tensors".
    import shutil

    import lightning as L

    from conftest import make_loco
    from locoad.data.datamodule import LocoDataModule

    root = make_loco(tmp_path / "loco")
    shutil.rmtree(root / "widgets" / "validation")
    dm = LocoDataModule(str(root), "widgets", k_shot=4, image_size=64, batch_size=4)
    torch.manual_seed(0)
    module = ULSADModule(tiny_backbone(), **TINY_KW)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    with caplog.at_level("WARNING"):
        trainer.fit(module, datamodule=dm)
        trainer.test(module, datamodule=dm, verbose=False)
    assert bool(module.model.maps_fitted)
    module.model.eval()  # as fit_normalisation scores them
    local, _ = module.model.raw_maps(torch.stack([dm.dataset("train")[i]["image"] for i in range(4)]))
    expected = map_quantiles(local, module.hparams.q_low, module.hparams.q_high)
    assert torch.allclose(module.model.q_local, expected, rtol=1e-4, atol=1e-6)
    said = [r for r in caplog.records if "no validation/good images" in r.getMessage()]
    assert len(said) == 1
    assert module.test_results.table["fused"].notna().all()


def test_ulsad_uses_any_cnn_backbone_config(tmp_path):
    # ULSAD's features come from the backbone group, so another backbone (here EfficientNet-Lite0,
    # random weights) plugs in by name; too wide a feature_dim is a one-line config error.
    from locoad.errors import ConfigError
    from locoad.utils import build

    base = ["model=ulsad", "backbone=efficientnet_lite0", "backbone.pretrained=false", "data.image_size=64",
            "model.hidden_dim=64", "model.global_width=16", "logger=none"]
    with pytest.raises(ConfigError, match=r"model.feature_dim=384 exceeds the backbone's \d+ channels"):
        build(compose_cfg(base, tmp_path / "a").model)
    module = build(compose_cfg([*base, "model.feature_dim=32"], tmp_path / "b").model)
    assert type(module.model.features.backbone).__name__ == "EfficientNetLiteBackbone"
    assert module.model.features(torch.rand(2, 3, 64, 64)).shape == (2, 32, 8, 8)


def test_test_only_with_other_scoring_settings_is_an_error(fitted_run):
    """The checkpoint's quantiles were fitted for its own maps; other map settings at test time
    scored with them silently."""
    from locoad.errors import ConfigError
    from locoad.run import run

    root, out, _ = fitted_run
    cfg = compose_cfg(ulsad_overrides(root) + ["train=false", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
                                               "model.blur_sigma=3.0"], root / "other")
    with pytest.raises(ConfigError, match=r"model.blur_sigma=3.0 \(checkpoint: "):
        run(cfg)


def test_a_resumed_training_fits_its_quantiles_again(fitted_run):
    """A resumed run's checkpoint carries the quantiles of its last epoch; kept as fitted, the
    resumed run's own epoch checkpoints stored them beside weights they were not fitted for."""
    from locoad.utils import build

    root, out, _ = fitted_run
    module = build(compose_cfg(ulsad_overrides(root), root / "probe2").model)
    module.load_state_dict(torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu",
                                      weights_only=False)["state_dict"])
    assert bool(module.model.maps_fitted) and bool(module.model.features.fitted)
    module.on_train_start()
    assert not bool(module.model.maps_fitted)


@pytest.mark.parametrize("low,high", [(0.999, 0.5), (1.5, 0.9), (0.9, 0.9)])
def test_map_quantile_levels_are_checked_before_training(tmp_path, low, high):
    from locoad.errors import ConfigError
    from locoad.utils import build

    cfg = compose_cfg(ulsad_overrides(tmp_path) + [f"model.q_low={low}", f"model.q_high={high}"], tmp_path / "q")
    with pytest.raises(ConfigError, match="0 <= q_low < q_high <= 1"):
        build(cfg.model)


def test_testing_a_ulsad_checkpoint_as_seven_feature_names_the_model(fitted_run, tmp_path):
    """A ULSAD checkpoint given to the seven-feature model (the default ``model``) says which
    model wrote it."""
    from locoad.errors import ConfigError
    from locoad.run import run

    root, out, _ = fitted_run
    overrides = [o for o in ulsad_overrides(root) if not o.startswith(("model=", "trainer.", "+trainer", "backbone"))]
    cfg = compose_cfg(overrides + ["train=false", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"], tmp_path / "as7")
    with pytest.raises(ConfigError, match="model=ulsad"):
        run(cfg)



@pytest.mark.parametrize("override", ["data.k_shot=1", "data.batch_size=1"])
def test_ulsad_with_one_image_batches_only_is_an_error(tmp_path, override):
    """Every one-image batch is skipped (BatchNorm needs two), so k_shot=1 trained nothing and
    tested a random model after one warning."""
    from locoad.errors import ConfigError
    from locoad.run import run

    key = override.split("=")[0]
    cfg = compose_cfg([o for o in ulsad_overrides(tmp_path) if not o.startswith(key)] + [override], tmp_path / "run")
    with pytest.raises(ConfigError, match="two images or more"):
        run(cfg)


def test_a_trailing_batch_of_one_image_is_trained_beside_the_previous_image(tmp_path):
    """Five shots in batches of two end in a batch of one; skipped, the fifth shot (the loader does
    not shuffle: the same one every epoch) was never trained on. It now trains beside the last
    image of the batch before it."""
    import lightning as L

    from conftest import make_loco
    from locoad.data.datamodule import LocoDataModule

    dm = LocoDataModule(str(make_loco(tmp_path / "loco")), "widgets", k_shot=5, image_size=64, batch_size=2)
    torch.manual_seed(0)
    module = ULSADModule(tiny_backbone(), **TINY_KW)
    seen = []
    loss = module.model.loss
    module.model.loss = lambda images: seen.append(images.clone()) or loss(images)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    shots = [dm.dataset("train")[i]["image"] for i in range(5)]
    assert [len(b) for b in seen] == [2, 2, 2]
    assert torch.equal(seen[2][0], shots[3]) and torch.equal(seen[2][1], shots[4])


def test_map_quantiles_are_fitted_at_the_precision_the_test_scores_at(tmp_path):
    """Under trainer.precision=bf16-mixed the test maps come from networks run in bfloat16; the
    quantiles were fitted after training outside autocast, on float32 networks' maps, so every
    normalised test map was off by their difference."""
    import lightning as L

    from conftest import make_loco
    from locoad.data.datamodule import LocoDataModule

    dm = LocoDataModule(str(make_loco(tmp_path / "loco")), "widgets", k_shot=4, image_size=64, batch_size=4)
    torch.manual_seed(0)
    module = ULSADModule(tiny_backbone(), **TINY_KW)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    module.model.eval()
    images = torch.stack([dm.dataset("validation")[i]["image"] for i in range(len(dm.dataset("validation")))])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = map_quantiles(module.model.raw_maps(images)[0], module.hparams.q_low, module.hparams.q_high)
    fp32 = map_quantiles(module.model.raw_maps(images)[0], module.hparams.q_low, module.hparams.q_high)
    assert not torch.allclose(bf16, fp32, rtol=1e-4, atol=1e-6)  # the two precisions' quantiles differ here
    assert torch.allclose(module.model.q_local, bf16, rtol=1e-4, atol=1e-6)
