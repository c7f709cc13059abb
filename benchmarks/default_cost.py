"""Cost of the default configuration: seconds per test image at 4 shots (encode + score, no
stage cache), the wall time of the demo on a fresh checkout (no synthetic data, no cache) and,
with ``--full-run CATEGORY``, of a whole run on LOCO-sized images.

The targets (issue 13): under 2 s per image at 4 shots on 2 CPU cores, ``make demo`` under 3
minutes. The machine's load average is recorded next to the times: on a shared machine they
are upper bounds. The timed runs are new processes that find their imports' bytecode written (as
any run after the first one does; one import writes it first): where PYTHONDONTWRITEBYTECODE is
set, every process compiles ~5,000 modules again, about 13 s that a user's runs do not pay.

    .venv/bin/python benchmarks/default_cost.py [--overrides backbone=handcrafted ...] [--no-demo] [--full-run fastener_bag]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_json  # noqa: E402
from quality_synthetic import REPO, compose_model, prepare_data  # noqa: E402

from locoad.data.datamodule import LocoDataModule, select_shots  # noqa: E402
from locoad.data.synthetic import generate  # noqa: E402


def per_image(category: str, overrides: list[str], root: Path, n_test: int) -> dict:
    """Encode (backbone + segmenter) and score ``n_test`` test images against 4 shots, uncached."""
    model = compose_model(["model.cache.enabled=false", *overrides])
    # The data is read at the backbone's input size, as ``data.image_size`` does in a run.
    dm = LocoDataModule(str(root), category, k_shot=None, seed=0, image_size=getattr(model.backbone, "image_size", 518))
    dm.setup()
    train = dm.dataset("train")
    idx = select_shots(list(range(len(train))), 4, 0)
    t0 = time.perf_counter()
    shots = model.encode(torch.stack([train[i]["image"] for i in idx]), shots=True,
                         aspects=[train[i]["aspect"] for i in idx])
    model.fit(shots)
    t_fit = time.perf_counter() - t0
    test = dm.dataset("test")
    images = torch.stack([test[i]["image"] for i in range(min(n_test, len(test)))])
    t0 = time.perf_counter()
    enc = []
    for i in range(len(images)):  # one image at a time, as a line would see them
        enc += model.encode(images[i : i + 1])
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.score(enc)
    t_score = time.perf_counter() - t0
    n = len(images)
    return {"category": category, "n_test": n, "fit_4_shots_s": round(t_fit, 2),
            "encode_s_per_image": round(t_enc / n, 3), "score_s_per_image": round(t_score / n, 3),
            "total_s_per_image": round((t_enc + t_score) / n, 3)}


def run_env() -> dict[str, str]:
    """The timed runs' environment: bytecode written and read as on a user's machine, W&B offline."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def write_bytecode() -> None:
    """One import of the run's modules, so the timed runs read their bytecode instead of compiling."""
    subprocess.run([sys.executable, "-c", "import locoad.__main__, locoad.run"], cwd=REPO, env=run_env(), check=True)


def demo_wall(overrides: list[str]) -> float:
    """``python -m locoad experiment=demo`` with an empty cache dir (data generated, nothing cached)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = run_env()
        cmd = [sys.executable, "-m", "locoad", "experiment=demo", f"paths.cache_dir={tmp}/cache",
               f"paths.log_dir={tmp}/outputs", f"hydra.run.dir={tmp}/run", *overrides]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


def full_run(category: str, overrides: list[str]) -> dict:
    """A whole ``locoad data=mvtec_loco ...`` run, as a user's first run on MVTec LOCO: 4 shots fitted,
    every test image scored, the official evaluation (every score's sPRO at the ground truth's
    resolution) and the gallery, stage cache off, on one category of the held-out family's
    photo-like captures at native size (800-1700 px, not square)."""
    root, _ = prepare_data("heldout", 0, 1.0)
    n_test = sum(1 for p in (Path(root) / category / "test").rglob("*.png"))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "locoad", "data=mvtec_loco", f"data.root={root}", f"data.category={category}",
               "data.k_shot=4", "data.seed=0", "model.cache.enabled=false", "logger=none",
               f"paths.log_dir={tmp}/outputs", f"hydra.run.dir={tmp}/run", *overrides]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=run_env(), check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    return {"category": category, "data": f"{root} (held-out photo-like, native size)", "n_test": n_test,
            "wall_s": round(wall, 1), "wall_s_per_test_image": round(wall / n_test, 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--categories", nargs="*", default=["pushpins", "screw_bag"])
    ap.add_argument("--n-test", type=int, default=12)
    ap.add_argument("--overrides", nargs="*", default=[])
    ap.add_argument("--no-demo", action="store_true")
    ap.add_argument("--full-run", nargs="*", default=[], metavar="CATEGORY",
                    help="also time whole runs on these held-out categories at native size (e.g. fastener_bag)")
    ap.add_argument("--out", default="default_cost.json", help="file name under benchmarks/results/")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    root = REPO / ".cache/synthetic/seed0_256px"
    generate(root, seed=0, image_size=256)
    rows = [per_image(c, args.overrides, root, args.n_test) for c in args.categories]
    for r in rows:
        print(r, flush=True)
    out = {"overrides": args.overrides, "per_image": rows, "machine": machine()}
    if not args.no_demo or args.full_run:
        write_bytecode()
        out["bytecode"] = "written before the timed runs"
    if not args.no_demo:
        out["demo_wall_s"] = round(demo_wall(args.overrides), 1)
        print(f"demo (fresh cache): {out['demo_wall_s']} s", flush=True)
    if args.full_run:
        out["full_run"] = [full_run(c, args.overrides) for c in args.full_run]
        for r in out["full_run"]:
            print(r, flush=True)
    out["machine_after"] = machine()
    print(save_json(args.out, out))


if __name__ == "__main__":
    main()
