"""Missing or unreachable weights: one clean line naming the file, where it is published and the
key to set, raised as locoad's own error, not as a Hydra instantiate error (issue 12)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import timm.models._builder
from hydra.errors import InstantiationException

from conftest import REPO, compose_cfg
from locoad.backbones.dinov2 import DinoV2Backbone, official_checkpoint_url
from locoad.errors import CheckpointNotFoundError, LocoadError, WeightsUnavailableError
from locoad.utils import build

URL = official_checkpoint_url("vits14")


def test_missing_checkpoint_is_locoad_error_not_hydra_wrapper(tmp_path):
    cfg = compose_cfg(["backbone=dinov2_vits14", "backbone.checkpoint=/nope.pth", "logger=none"], tmp_path / "run")
    try:
        build(cfg.model)  # the backbone is instantiated nested in the model, wrapped twice by Hydra
    except InstantiationException as err:
        pytest.fail(f"Hydra's wrapper reached the user: {err}")
    except CheckpointNotFoundError as err:
        msg = str(err)
        assert "\n" not in msg and "Error in call to target" not in msg
        assert "/nope.pth" in msg and "dinov2_vits14_pretrain.pth" in msg and URL in msg
        assert "backbone.checkpoint=" in msg
    else:
        pytest.fail("no error for a missing checkpoint")


def run_cli(cmd: list[str]) -> subprocess.CompletedProcess:
    """``cmd`` from the repository, W&B offline, user errors as their one line (no traceback)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}
    env.pop("LOCOAD_TRACEBACK", None)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def cli_error_line(loco_root, *overrides: str) -> str:
    """Run ``python -m locoad`` on the tiny data with ``overrides``; assert it stops with exit
    code 2 and exactly one [ERROR] line, no Hydra wrapper and no traceback; return that line."""
    cmd = [sys.executable, "-m", "locoad", "data=mvtec_loco", f"data.root={loco_root}", "data.category=widgets",
           "data.k_shot=2", "logger=none", *overrides, f"paths.root_dir={loco_root.parent}",
           f"hydra.run.dir={loco_root.parent / 'run'}"]
    proc = run_cli(cmd)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out and "Error in call to target" not in out and "Error executing job" not in out
    errors = [line for line in out.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


def test_cli_prints_one_clean_line(loco_root):
    assert cli_error_line(loco_root, "backbone=dinov2_vits14", "backbone.checkpoint=/nope.pth").endswith(
        f"DINOv2 checkpoint not found: /nope.pth. Download dinov2_vits14_pretrain.pth from {URL} and put it "
        "at that path, or set backbone.checkpoint=<path to the file>."
    )


def test_pretrained_offline_says_what_it_downloads_and_the_offline_fix(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nto load this file (offline)")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        DinoV2Backbone(pretrained=True, image_size=56, model_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2})
    msg = str(info.value)
    assert isinstance(info.value, LocoadError) and "\n" not in msg
    # online, pretrained=true downloads through timm (Hugging Face hub): the message says from where
    assert msg.startswith("pretrained=true downloads the weights of 'vit_small_patch14_dinov2.lvd142m' from ")
    assert "huggingface.co/timm/vit_small_patch14_dinov2.lvd142m" in msg and "couldn't connect" in msg
    # offline: the official file, its URL and the key
    assert "dinov2_vits14_pretrain.pth" in msg and URL in msg and "backbone.checkpoint=" in msg
    assert "backbone.pretrained=false" in msg


def test_cli_prints_one_clean_line_for_a_bad_value(loco_root):
    """A bad value in a component's config (raised while Hydra builds the model). Input checks
    raise locoad's ConfigError (a ValueError); run-time ones are covered by test_device's
    ConfigError checks."""
    assert cli_error_line(loco_root, "features.foreground_patch.expected=2").endswith(
        "foreground_patch expected must be in (0, 1] (the fraction of shots) or null, got 2")


def test_an_unreadable_image_read_in_a_dataloader_worker_prints_one_clean_line(loco_root):
    """torch re-raises a worker's error with the worker's traceback as its message: the CLI still
    prints the error's own line (data.num_workers: 2 in data=mvtec_loco)."""
    bad = sorted((loco_root / "widgets" / "test" / "good").glob("*.png"))[0]
    bad.write_bytes(b"")
    line = cli_error_line(loco_root, "data.num_workers=1", "backbone.image_size=112", "model.work_size=64",
                          "segmenter.work_size=64", "model.cache.enabled=false")
    assert line.endswith(f"cannot read image {bad}: cannot identify image file '{bad}'. Replace or delete the file "
                         "(re-export it as PNG/JPEG).")


def test_a_worker_error_s_message_is_its_own_line_again():
    from torch._utils import ExceptionWrapper

    from locoad.data.image_io import ImageReadError
    from locoad.errors import user_message

    try:
        raise ImageReadError("cannot read image a.png: truncated. Replace or delete the file.")
    except ImageReadError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(ImageReadError) as info:
        wrapped.reraise()
    assert "Traceback" in str(info.value)  # what torch makes of it
    assert user_message(info.value) == "cannot read image a.png: truncated. Replace or delete the file."
    assert user_message(ImageReadError("one line")) == "one line"


def test_a_user_error_in_one_job_of_a_multirun_does_not_stop_the_others(loco_root):
    """The one-line exit (SystemExit) ended a whole sweep at its first bad job; in a multirun the
    job is marked failed (its line is said) and the next job runs."""
    sweep = loco_root.parent / "sweep"
    cmd = [sys.executable, "-m", "locoad", "-m", "data=mvtec_loco", f"data.root={loco_root}",
           "data.category=widgets", "data.k_shot=0,2", "logger=none", "backbone=handcrafted",
           "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "features=all7",
           "fusion=loo", "data.num_workers=0", f"paths.root_dir={loco_root.parent}", f"hydra.sweep.dir={sweep}"]
    proc = run_cli(cmd)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0  # the sweep still says it had a failed job
    assert [line for line in out.splitlines() if "[ERROR]" in line][0].endswith("got 0")
    assert "Traceback" not in out  # the sweep's closing report of the failed job is its line too
    assert not (sweep / "0" / "metrics.json").exists()
    assert (sweep / "1" / "metrics.json").is_file(), out[-3000:]


@pytest.mark.parametrize("backbone", ["dinov2_vits14", "cnn"])
@pytest.mark.parametrize("damage", ["cut_short", "not_a_checkpoint"])
def test_a_checkpoint_file_that_cannot_be_read_is_one_line_naming_it(tmp_path, backbone, damage):
    """A download cut short, or another file given as backbone.checkpoint, reached the user as
    Hydra's 'Error in call to target' around torch's pickle or zip error, never naming the file."""
    import torch

    from locoad.errors import CheckpointMismatchError

    path = tmp_path / "weights.pth"
    if damage == "cut_short":
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:1500])
    else:
        path.write_text('{"name": "not weights"}')
    overrides = ([f"backbone={backbone}"] if backbone != "cnn" else
                 ["model=ulsad_tiny"]) + [f"backbone.checkpoint={path}", "logger=none"]
    cfg = compose_cfg(overrides, tmp_path / "run")
    with pytest.raises(CheckpointMismatchError) as info:
        build(cfg.model)
    msg = str(info.value)
    assert str(path) in msg and "cannot be read" in msg and "\n" not in msg
