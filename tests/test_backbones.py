"""Offline backbone tests: random-init tiny models only, no network access."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import timm
import timm.models._builder
import torch
from omegaconf import OmegaConf

from locoad.backbones.cnn import TimmCNNBackbone
from locoad.backbones.dinov2 import DinoV2Backbone, official_checkpoint_url
from locoad.backbones.registry import create_backbone, list_backbones

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "backbone"
TINY_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2}


def tiny_vit(**kwargs) -> DinoV2Backbone:
    kwargs = {"pretrained": False, "image_size": 56, "model_kwargs": TINY_VIT, **kwargs}
    return DinoV2Backbone(**kwargs)


def tiny_cnn(**kwargs) -> TimmCNNBackbone:
    kwargs = {"model_name": "resnet18", "pretrained": False, "image_size": 112, **kwargs}
    return TimmCNNBackbone(**kwargs)


def images(b: int = 2, h: int = 56, w: int = 56) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(0))


def timm_to_official_dinov2(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Inverse of timm's ``_convert_dinov2``: a timm DINOv2 state dict in facebookresearch layout.

    Official files carry ``mask_token``, name the giant's SwiGLU ``mlp.w12``/``mlp.w3`` (timm:
    ``fc1``/``fc2``) and, with registers, keep ``register_tokens`` plus a CLS slot in
    ``pos_embed`` that timm folds into ``cls_token``. Other keys (``blocks.N.ls1.gamma``,
    ``patch_embed.proj``, ``norm``...) are identical.
    """
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    if "reg_token" in sd:
        cls_pos = torch.randn_like(sd["cls_token"])  # arbitrary: only cls + pos[0] is observable
        out["register_tokens"] = sd.pop("reg_token")
        out["cls_token"] = sd.pop("cls_token") - cls_pos
        out["pos_embed"] = torch.cat([cls_pos, sd.pop("pos_embed")], dim=1)
    swiglu = isinstance(model.blocks[0].mlp, timm.layers.GluMlp)
    for k, v in sd.items():
        if swiglu and ".mlp.fc1." in k:
            k = k.replace(".mlp.fc1.", ".mlp.w12.")
        elif swiglu and ".mlp.fc2." in k:
            k = k.replace(".mlp.fc2.", ".mlp.w3.")
        out[k] = v
    out["mask_token"] = torch.zeros(1, model.embed_dim)
    return out


# --- DINOv2 -----------------------------------------------------------------------------------


def test_dinov2_shapes_and_frozen():
    bb = tiny_vit()
    assert (bb.grid_size, bb.embed_dim) == (4, 32)
    out = bb(images())
    assert out.shape == (2, 32, 4, 4) and out.dtype == torch.float32 and not out.requires_grad
    assert all(not p.requires_grad for p in bb.parameters())
    bb.train()  # e.g. Lightning calling .train() on the parent module
    assert not bb.training and not bb.model.training


def test_dinov2_default_grid_at_518():
    bb = tiny_vit(image_size=518)
    assert bb(images(1, 100, 100)).shape == (1, 32, 37, 37)


@pytest.mark.parametrize("size", [(57, 57), (97, 131), (300, 200)])
def test_odd_input_sizes_are_resized(size):
    assert tiny_vit()(images(1, *size)).shape == (1, 32, 4, 4)
    assert tiny_cnn()(images(1, *size)).shape == (1, 384, 8, 8)


@pytest.mark.parametrize(
    "bad", [torch.rand(3, 56, 56), torch.rand(1, 1, 56, 56), torch.rand(1, 4, 56, 56)]
)
def test_input_validation(bad):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiny_vit()(bad)


def test_dinov2_intermediate_layers():
    x = images()
    bb = tiny_vit(layers=[0, -1], layer_agg="concat")
    assert bb.embed_dim == 64 and bb(x).shape == (2, 64, 4, 4)
    mean = tiny_vit(layers=[0, 1])
    mean.load_state_dict(bb.state_dict())
    torch.testing.assert_close(mean(x), 0.5 * (bb(x)[:, :32] + bb(x)[:, 32:]))
    # the last block through forward_intermediates(norm=True) == the default forward_features path
    last = tiny_vit(layers=[-1])
    last.load_state_dict(bb.state_dict())
    default = tiny_vit()
    default.load_state_dict(bb.state_dict())
    torch.testing.assert_close(last(x), default(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variant": "vitx14"}, "unknown DINOv2 variant"),
        ({"image_size": 60}, "multiple of 14"),
        ({"layers": [5]}, "block indices"),
        ({"layer_agg": "max"}, "layer_agg"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_dinov2_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_vit(**kwargs)


def test_dinov2_reduced_precision_is_cuda_only():
    # bf16 is accepted everywhere, but autocast only kicks in on CUDA: CPU output stays exact fp32.
    ref = tiny_vit()
    bb = tiny_vit(dtype="bf16")
    bb.load_state_dict(ref.state_dict())
    torch.testing.assert_close(bb(images()), ref(images()))


@pytest.mark.parametrize("variant", ["vits14", "vitg14", "vits14_reg4"])
def test_dinov2_official_checkpoint_roundtrip(tmp_path, variant):
    """A file in the official layout (at the official 518 px pos_embed grid) loads exactly."""
    src = tiny_vit(variant=variant, image_size=518)
    path = tmp_path / f"dinov2_{variant}_pretrain.pth"
    torch.save(timm_to_official_dinov2(src.model), path)

    loaded = tiny_vit(variant=variant, image_size=518, checkpoint=str(path))
    x = images(1, 518, 518)
    torch.testing.assert_close(loaded(x), src(x), rtol=0, atol=0)

    # At another resolution timm's filter resamples the 37x37 pos_embed (bicubic, antialiased),
    # exactly what the source model does on the fly with dynamic_img_size.
    small = tiny_vit(variant=variant, image_size=112, checkpoint=str(path))
    dynamic = tiny_vit(
        variant=variant, image_size=518, model_kwargs={**TINY_VIT, "dynamic_img_size": True}
    )
    dynamic.load_state_dict(src.state_dict())
    x = images(1, 112, 112)
    expected = dynamic.model.forward_features(_norm(x))
    expected = expected[:, dynamic.model.num_prefix_tokens :].transpose(1, 2).reshape(1, 32, 8, 8)
    torch.testing.assert_close(small(x), expected, rtol=1e-4, atol=1e-4)


def _norm(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_dinov2_checkpoint_wrong_architecture(tmp_path):
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(timm_to_official_dinov2(tiny_vit(model_kwargs={**TINY_VIT, "depth": 3}).model), path)
    with pytest.raises(RuntimeError, match=r"unexpected keys: blocks\.2\."):
        tiny_vit(checkpoint=str(path))
    torch.save(
        timm_to_official_dinov2(tiny_vit(model_kwargs={**TINY_VIT, "embed_dim": 64}).model), path
    )
    with pytest.raises(RuntimeError, match="shape mismatches"):
        tiny_vit(checkpoint=str(path))


def test_dinov2_checkpoint_of_another_patch_size_is_refused(tmp_path):
    """timm's checkpoint filter resamples another patch size's kernel (and the position grid), so
    a ViT/16 file loaded into the ViT/14 without a word."""
    from locoad.errors import CheckpointMismatchError

    other = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, patch_size=16,
                              num_classes=0, **TINY_VIT)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(timm_to_official_dinov2(other), path)
    with pytest.raises(CheckpointMismatchError, match="16 x 16 px patches, DINOv2 vits14 14 x 14.*dinov2_vits14_pretrain.pth"):
        tiny_vit(checkpoint=str(path))


def test_dinov2_missing_checkpoint(tmp_path):
    path = tmp_path / "weights" / "dinov2_vits14_pretrain.pth"
    with pytest.raises(FileNotFoundError) as info:
        tiny_vit(checkpoint=str(path))
    msg = str(info.value)
    url = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"
    assert str(path) in msg and url in msg and official_checkpoint_url("vits14") == url


@pytest.fixture
def offline(monkeypatch):
    """Make every timm pretrained-weight download fail like a machine without network."""

    def fail(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' (offline)")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", fail)


def test_dinov2_pretrained_offline_error(offline):
    with pytest.raises(RuntimeError) as info:
        tiny_vit(pretrained=True)
    msg = str(info.value)
    assert "offline" in msg and "checkpoint=" in msg and "pretrained=false" in msg
    assert official_checkpoint_url("vits14") in msg


# --- CNN --------------------------------------------------------------------------------------


def test_cnn_shapes_and_frozen():
    bb = tiny_cnn()
    assert bb.grid_size == 8 and bb.embed_dim == 128 + 256  # resnet18 layer2 + layer3
    out = bb(images(2, 112, 112))
    assert out.shape == (2, 384, 8, 8) and not out.requires_grad
    assert all(not p.requires_grad for p in bb.parameters())
    bb.train()
    assert not bb.model.training  # BatchNorm statistics must not update
    assert tiny_cnn(layers=(1,), pool_size=1)(images(1, 112, 112)).shape == (1, 64, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        tiny_cnn(pool_size=2)


def test_cnn_checkpoint_roundtrip(tmp_path):
    src = timm.create_model("resnet18", pretrained=False)
    for m in src.modules():  # non-trivial BN statistics, so a skipped buffer would be noticed
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)

    bb = tiny_cnn(checkpoint=str(path))
    source = src.state_dict()
    for k, v in bb.model.state_dict().items():
        torch.testing.assert_close(v, source[k], rtol=0, atol=0)

    truncated = {k: v for k, v in source.items() if not k.startswith("layer2.0.")}
    torch.save(truncated, path)
    with pytest.raises(RuntimeError, match=r"missing keys: layer2\.0\."):
        tiny_cnn(checkpoint=str(path))


def test_cnn_missing_checkpoint(tmp_path):
    path = tmp_path / "wrn50.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        TimmCNNBackbone(checkpoint=str(path))
    msg = str(info.value)
    assert str(path) in msg and "wide_resnet50_2" in msg and "huggingface.co/timm/" in msg


def test_cnn_pretrained_offline_error(offline):
    with pytest.raises(RuntimeError, match="pretrained=false"):
        tiny_cnn(pretrained=True)


# --- registry and configs ---------------------------------------------------------------------


def test_registry():
    names = list_backbones()
    for name in [
        "dinov2_vits14",
        "dinov2_vitb14",
        "dinov2_vitl14",
        "dinov2_vitg14",
        "wide_resnet50",
        "handcrafted",
    ]:
        assert name in names
    assert list_backbones("dinov2*") == [
        "dinov2_vitb14",
        "dinov2_vitg14",
        "dinov2_vitl14",
        "dinov2_vits14",
    ]
    bb = create_backbone("dinov2_vits14", pretrained=False, image_size=56, model_kwargs=TINY_VIT)
    assert isinstance(bb, DinoV2Backbone) and bb.variant == "vits14"
    assert isinstance(
        create_backbone("wide_resnet50", model_name="resnet18", pretrained=False), TimmCNNBackbone
    )
    with pytest.raises(ValueError, match="unknown backbone 'nope'.*dinov2_vits14.*wide_resnet50"):
        create_backbone("nope")


@pytest.mark.parametrize(
    "name",
    [
        "dinov2_vits14",
        "dinov2_vitb14",
        "dinov2_vitl14",
        "dinov2_vitg14",
        "wide_resnet50",
        "vit_tiny",
    ],
)
def test_configs_match_constructors(name):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{name}.yaml"))
    module, cls_name = cfg.pop("_target_").rsplit(".", 1)
    cls = {"DinoV2Backbone": DinoV2Backbone, "TimmCNNBackbone": TimmCNNBackbone}[cls_name]
    assert module == cls.__module__
    assert set(cfg) <= set(inspect.signature(cls.__init__).parameters)


def test_vit_tiny_config_instantiates():
    from hydra.utils import instantiate

    bb = instantiate(OmegaConf.load(CONF_DIR / "vit_tiny.yaml"))
    assert isinstance(bb, DinoV2Backbone)
    assert bb(images(1, 64, 64)).shape == (1, bb.embed_dim, 8, 8)
