"""W&B logging: offline runs with the per-image table, one run per job, no hang when offline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import compose_cfg
from locoad.loggers import LocoadWandbLogger, resolve_mode
from locoad.run import run

TINY = ["data=mvtec_loco", "data.category=widgets", "data.k_shot=3", "data.num_workers=0",
        "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "logger=wandb"]


def test_offline_run_logs_table_panels_and_finishes(loco_root, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    cfg = compose_cfg(TINY + [f"data.root={loco_root}", "+experiment_name=unit",
                              "callbacks.visualiser.log_per_type=2"], out)
    run(cfg)
    assert wandb.run is None  # finished at the end of the job
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    (table_file,) = (run_dir / "files" / "media" / "table" / "test").glob("scores_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:3] == ["path", "label", "anomaly_type"]
    assert {"class_count", "fused"} <= set(table["columns"]) and len(table["data"]) == 9
    assert list((run_dir / "files" / "media" / "table" / "test").glob("f1_max_by_score*"))
    # The visualiser's panels, 2 per anomaly type: the same files as in the local gallery.
    logged = sorted((run_dir / "files" / "media" / "images" / "test").glob("panels_*.png"))
    assert len(logged) == 6
    local = {np.asarray(Image.open(p)).tobytes() for p in (out / "gallery" / "panels").glob("*.png")}
    assert len(local) == 9 and all(np.asarray(Image.open(p)).tobytes() in local for p in logged)
    record = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert b"widgets-k3-s0-felzenszwalb-hungarian" in record and b"unit" in record  # name, group
    assert b"class_location" in record  # the resolved config went in too
    # the summary (offline: inside the run record) has AU-sPRO@0.05 beside F1-max and AUROC
    assert all(k in record for k in (b"test/fused/f1_max", b"test/fused/auroc", b"test/fused/au_spro_0.05"))


def test_ulsad_run_is_named_and_tagged_after_its_own_groups(tmp_path):
    cfg = compose_cfg(["model=ulsad_tiny", "data.category=juice_bottle", "logger=wandb", "tags=[mine]"],
                      tmp_path / "u")
    wb = cfg.logger.wandb
    assert wb.name == "juice_bottle-k4-s0-ulsad_tiny-resnet18"
    assert list(wb.tags) == ["juice_bottle", "k4", "ulsad_tiny", "resnet18"] and list(wb.extra_tags) == ["mine"]
    lg = LocoadWandbLogger(save_dir=str(tmp_path), name=wb.name, tags=list(wb.tags), extra_tags=["mine", "k4"])
    assert lg._wandb_init["tags"] == ["juice_bottle", "k4", "ulsad_tiny", "resnet18", "mine"]
    seven = compose_cfg(["logger=wandb", "backbone=efficientnet_lite0"], tmp_path / "s").logger.wandb
    assert seven.name.endswith("-felzenszwalb-hungarian-efficientnet_lite0-robust-loo_patch_weighted") and "hungarian" in seven.tags


def test_stale_run_is_finished_not_reused(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    first = LocoadWandbLogger(save_dir=str(tmp_path), name="a")
    run_a = first.experiment  # left open, as a crashed job would leave it
    second = LocoadWandbLogger(save_dir=str(tmp_path), name="b")
    assert second.experiment.id != run_a.id
    second.finish()
    assert wandb.run is None


def test_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert resolve_mode(offline=True) == "offline"
    with pytest.warns(UserWarning, match="no API key"):
        assert resolve_mode(offline=False) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode(offline=False) == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode(offline=False) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(offline=True) == "disabled"


@pytest.mark.parametrize("probe", [True, False], ids=["init-times-out", "probe-refused"])
def test_unreachable_online_wandb_falls_back_to_offline(tmp_path, monkeypatch, probe):
    from locoad.loggers import wandb_mode

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("WANDB_API_KEY", "f" * 40)
    monkeypatch.setenv("WANDB_SILENT", "true")
    if probe:  # pretend the TCP probe passed: wandb.init itself must fail and be caught
        monkeypatch.setattr(wandb_mode, "reachable", lambda url, timeout: True)
    start = time.monotonic()
    lg = LocoadWandbLogger(save_dir=str(tmp_path), name="x", init_timeout=2)
    with pytest.warns(UserWarning, match="logging offline"):
        exp = lg.experiment
    exp.log({"a": 1.0})
    lg.finish()
    assert time.monotonic() - start < 30
    assert list(Path(tmp_path, "wandb").glob("offline-run-*/run-*.wandb"))


def test_a_job_that_fails_closes_its_run_as_failed(loco_root, tmp_path, monkeypatch):
    """The run was finished in a `finally` without an exit code, so W&B recorded a crashed job
    as a finished one."""
    import locoad.run as runner

    codes = []
    monkeypatch.setattr(LocoadWandbLogger, "finish", lambda self, exit_code=0: codes.append(exit_code))

    def crash(*args, **kwargs):
        raise RuntimeError("the job failed")

    monkeypatch.setattr(runner, "fit_and_test", crash)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(RuntimeError, match="the job failed"):
        run(compose_cfg(TINY + [f"data.root={loco_root}"], tmp_path / "run"))
    assert codes == [1]


def test_numpy_metrics_reach_the_summary():
    """A metric computed in numpy float32 is a number too (it was dropped from the run's summary)."""
    from locoad.loggers.wandb_logger import _finite
    from locoad.models.base import flatten_metrics

    assert _finite(np.float32(0.5)) and _finite(np.float64(0.5)) and _finite(3) and _finite(np.int64(3))
    assert not any(_finite(v) for v in (True, np.bool_(True), np.float32("nan"), float("inf"), None, "0.5"))
    # ... and the flattened metrics the summary and Lightning's log read keep them
    assert flatten_metrics({"fused": {"auroc": np.float32(0.5), "n": True}}) == {"test/fused/auroc": 0.5}
