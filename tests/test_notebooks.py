"""The notebooks run headless (nbclient) against a tiny real run and a tiny sweep."""

from __future__ import annotations

import pytest

from conftest import REPO, compose_cfg
from locoad.report import main as report_main
from locoad.run import run

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TINY = ["data=mvtec_loco", "data.category=widgets", "data.k_shot=2", "data.num_workers=0",
        "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "logger=wandb"]


def _execute(name: str, monkeypatch, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_notebooks_run_on_a_tiny_run(loco_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "multi" / "0"
    run(compose_cfg(TINY + [f"data.root={loco_root}"], out))
    text = _execute("inspect_run.ipynb", monkeypatch, LOCOAD_RUN_DIR=str(out))
    assert f"run: {out}" in text and "9 panels" in text

    assert report_main([str(out.parent)]) == 0
    text = _execute("compare_sweep.ipynb", monkeypatch, LOCOAD_SWEEP_DIR=str(out.parent))
    assert "1 finished jobs" in text
