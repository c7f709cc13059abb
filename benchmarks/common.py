"""Shared helpers of the benchmarks: timers, peak memory, machine description, test images."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU (if any), torch version and load: what a timing depends on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        info["load_avg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timeit(fn: Callable[[], Any], repeat: int = 3, warmup: int = 1) -> tuple[float, Any]:
    """Median wall seconds of ``repeat`` calls after ``warmup`` calls; also the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def max_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic_images(root: Path, category: str | None = None, n: int = 12, size: int = 256) -> list[np.ndarray]:
    """``n`` RGB uint8 images of the built-in synthetic data (train/good first, then test)."""
    from locoad.data.synthetic import CATEGORIES, generate

    category = category or next(iter(CATEGORIES))
    generate(root, categories=[category], seed=0, image_size=size)
    cdir = root / category
    paths = sorted((cdir / "train" / "good").glob("*.png")) + sorted((cdir / "test").glob("*/*.png"))
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths[:n]]


def to_tensor(images: list[np.ndarray], size: int) -> torch.Tensor:
    """uint8 HWC images -> (B, 3, size, size) float in [0, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def save_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def run_cli(args: list[str], env: dict | None = None) -> float:
    """Run ``python -m locoad <args>`` in the repository; its wall time in seconds. A failure
    prints the end of its output and stops the benchmark."""
    cmd = [sys.executable, "-m", "locoad", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return wall
