"""A real multirun through the Hydra CLI: 6 jobs, grouped W&B runs, report, resume skips jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from locoad.report import main as report_main

TINY = ["data=mvtec_loco", "data.category=widgets", "data.k_shot=2", "data.num_workers=0", "backbone=handcrafted",
        "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "logger=wandb"]


def _sweep(loco_root: Path, sweep_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "locoad", "-m", "experiment=aligner_x_features",
           "features=all7,competition,logical",  # narrows the preset's feature sets to 3
           *TINY, f"data.root={loco_root}", f"paths.root_dir={sweep_dir.parent}",
           f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_tiny_multirun_wandb_report_and_resume(loco_root, tmp_path):
    sweep = tmp_path / "multiruns" / "tiny"
    _sweep(loco_root, sweep)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == [str(i) for i in range(6)]
    assert all((j / "metrics.json").is_file() for j in jobs)
    runs = [next((j / "wandb").glob("offline-run-*/run-*.wandb")) for j in jobs]
    assert len({r.parent.name for r in runs}) == 6  # six distinct W&B runs, none reused
    for r in runs:  # all in one group (the preset's experiment_name)
        assert b"aligner_x_features" in r.read_bytes()
    names = {f"{a}-handcrafted-{f}" for a in ("hungarian", "nearest") for f in ("all7", "competition", "logical")}
    assert all(any(n.encode() in r.read_bytes() for r in runs) for n in names)

    assert report_main([str(sweep)]) == 0
    summary = (sweep / "report" / "summary.md").read_text()
    assert summary.count("\n| hungarian") + summary.count("\n| nearest") == 6
    assert (sweep / "report" / "plots" / "f1_max_by_aligner.png").stat().st_size > 1000
    assert (sweep / "report" / "plots" / "f1_max_by_features.png").stat().st_size > 1000

    # Resume: an interrupted job (metrics.json missing) reruns, finished ones are skipped.
    before = {j.name: (j / "metrics.json").stat().st_mtime_ns for j in jobs}
    first = json.loads((jobs[4] / "metrics.json").read_text())
    (jobs[4] / "metrics.json").unlink()
    proc = _sweep(loco_root, sweep)
    skipped = [line for line in (proc.stdout + proc.stderr).splitlines() if "skipping" in line]
    assert len(skipped) == 5 and not any(f"/{jobs[4].name}:" in line for line in skipped), skipped
    for j in jobs:
        if j.name != "4":
            assert (j / "metrics.json").stat().st_mtime_ns == before[j.name]
            assert len(list((j / "wandb").glob("offline-run-*"))) == 1  # no second W&B run
    # the rerun job computes again what it computed the first time (fitting is deterministic)
    assert json.loads((jobs[4] / "metrics.json").read_text()) == first


def test_every_sweep_preset_names_its_group_and_resumes():
    """docs/sweeps.md: every preset that sweeps sets experiment_name (the W&B group and sweep
    folder) and skip_if_done (a resumed sweep skips finished jobs); ulsad_ablation set neither."""
    import yaml

    presets = sorted((REPO / "conf" / "experiment").glob("*.yaml"))
    sweeping = [p for p in presets if ((yaml.safe_load(p.read_text()) or {}).get("hydra") or {}).get("sweeper")]
    assert len(sweeping) >= 6
    for p in sweeping:
        cfg = yaml.safe_load(p.read_text())
        assert cfg.get("experiment_name") == p.stem and cfg.get("skip_if_done") is True, p.name


def test_run_and_sweep_folders_of_runs_started_in_one_second_differ():
    """Folders were named to the second: two runs started together (a shell loop with &) wrote
    into one folder, one's metrics under the other's config.yaml. They carry microseconds now."""
    import re

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}"
    presets = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
    for overrides in [[], *([f"experiment={p}"] for p in presets)]:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        run_dir, sweep_dir = (Path(OmegaConf.select(cfg, k)).name for k in ("hydra.run.dir", "hydra.sweep.dir"))
        assert re.fullmatch(stamp + "_.+", run_dir), (overrides, run_dir)
        assert re.match(stamp, sweep_dir), (overrides, sweep_dir)
