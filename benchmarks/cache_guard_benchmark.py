"""What the stage cache's free-disk guard (``model.cache.min_free_gb``) costs per entry write.

The guard reads the cache disk's free space (one ``statvfs``) before every write. This writes the
same feature entries (Lite0's stride-8 + stride-16 channels on the 37 x 37 grid, float32, as the
default stores them) with the guard off (``min_free_gb=None``) and on (the default, 2 GB),
alternating the two in rounds so that the shared machine's drift falls on both, and reports the
ratio of the median write times. Each round writes into a fresh folder (a new entry, not an
overwrite).

    .venv/bin/python benchmarks/cache_guard_benchmark.py [--entries 200 --rounds 5]

Writes benchmarks/results/cache_guard.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_json  # noqa: E402

from locoad.cache import disk  # noqa: E402
from locoad.cache.stage_cache import StageCache  # noqa: E402

CHANNELS = 40 + 112  # EfficientNet-Lite0's feature stages 2 and 3


def write_times(root: Path, min_free_gb: float | None, entries: int, features: torch.Tensor) -> list[float]:
    """Seconds per ``put`` of ``entries`` new feature entries under ``root``."""
    cache = StageCache(root, min_free_gb=min_free_gb)
    cfg = cache.config_dir("features", {"bench": "guard", "guard": min_free_gb})
    out = []
    for i in range(entries):
        t0 = time.perf_counter()
        cache.put("features", cfg, f"{i:06d}", features)
        out.append(time.perf_counter() - t0)
    if cache.stats["features"]["writes"] != entries:
        raise SystemExit(f"only {cache.stats['features']['writes']} of {entries} entries were written "
                         f"(free disk below the guard's {min_free_gb} GB?): free some disk and run again")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=200, help="entries written per setting and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-free-gb", type=float, default=2.0, help="the guard's setting when on")
    opts = ap.parse_args()

    features = torch.randn(CHANNELS, 37, 37)
    times: dict[str, list[float]] = {"off": [], "on": []}
    statvfs = []
    with tempfile.TemporaryDirectory(prefix="locoad_guard_bench_") as tmp:
        for r in range(opts.rounds):
            for name, setting in (("off", None), ("on", opts.min_free_gb))[:: 1 if r % 2 == 0 else -1]:
                times[name] += write_times(Path(tmp) / f"{name}{r}", setting, opts.entries, features)
            t0 = time.perf_counter()
            for _ in range(opts.entries):
                disk.free_bytes(Path(tmp))
            statvfs.append((time.perf_counter() - t0) / opts.entries)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": machine(),
        "command": "benchmarks/cache_guard_benchmark.py " + " ".join(sys.argv[1:]),
        "entry_bytes": CHANNELS * 37 * 37 * 4,
        "writes_per_setting": len(times["off"]),
        "median_write_s": med,
        "ratio_on_over_off": med["on"] / med["off"],
        "free_bytes_call_s": statistics.median(statvfs),
    }
    save_json("cache_guard.json", result)
    print(f"median write {med['off'] * 1e3:.2f} ms without the guard, {med['on'] * 1e3:.2f} ms with it "
          f"(ratio {result['ratio_on_over_off']:.3f}); one free-space read {result['free_bytes_call_s'] * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
