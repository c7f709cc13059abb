"""A 2-job sweep through submitit (`+launcher=submitit_local`): the same pickling, submission and
result collection as `+launcher=slurm`, with jobs run as processes on this machine."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs hydra-submitit-launcher")

TINY = ["data=mvtec_loco", "data.category=widgets", "data.k_shot=2", "data.num_workers=0", "backbone=handcrafted",
        "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "logger=wandb",
        "features=all7"]


def _sweep(loco_root: Path, sweep_dir: Path) -> str:
    cmd = [sys.executable, "-m", "locoad", "-m", "+launcher=submitit_local", "aligner=hungarian,nearest",
           "+skip_if_done=true", *TINY, f"data.root={loco_root}", f"paths.root_dir={sweep_dir.parent}",
           f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_two_job_sweep_through_submitit(loco_root, tmp_path):
    sweep = tmp_path / "multiruns" / "submitit"
    log = _sweep(loco_root, sweep)
    assert "Submitit 'local' sweep" in log
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]

    # submitit's own records: one submission folder per job, each holding the pickled JobReturn
    # that Hydra collected; its return value is the job's optimized metric from metrics.json.
    results = sorted((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2
    returned = {}
    for path in results:
        status, job_return = pickle.loads(path.read_bytes())
        assert status == "success"
        returned[Path(job_return.hydra_cfg["hydra"]["runtime"]["output_dir"]).name] = job_return.return_value
    assert set(returned) == {"0", "1"}

    aligners = {}
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert returned[job.name] == metrics["fused"]["f1_max"]
        # the tiny data: logical anomalies lack one of the two discs, a histogram change
        assert metrics["class_histogram"]["logical"]["auroc"] == 1.0
        aligners[job.name] = "hungarian" if "aligner=hungarian" in (job / ".hydra" / "overrides.yaml").read_text() else "nearest"
        run = list((job / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(run) == 1  # one offline W&B run per job, named after the job's own aligner
        assert f"widgets-k2-s0-felzenszwalb-{aligners[job.name]}-handcrafted-all7-loo".encode() in run[0].read_bytes()
    assert sorted(aligners.values()) == ["hungarian", "nearest"]

    # Resume: the same command again through submitit skips both finished jobs.
    before = {j.name: (j / "metrics.json").stat().st_mtime_ns for j in jobs}
    _sweep(loco_root, sweep)
    assert {j.name: (j / "metrics.json").stat().st_mtime_ns for j in jobs} == before
    assert all(len(list((j / "wandb").glob("offline-run-*"))) == 1 for j in jobs)
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 4  # submitted again, skipped
