"""The demo run on the CPU and on another trainer (the GPU), compared image by image.

Both runs read the same generated data with the stage cache off, so each computes its own
features. Reports each score column's largest relative difference per image, and the largest
difference of the image-level and of the pixel-level metrics; exits 1 when a score column differs
by more than ``--rtol`` (the ``gpu`` tests' tolerance).

    python benchmarks/demo_devices.py --trainer gpu           # on a GPU machine (gpu_suite.sh)
    python benchmarks/demo_devices.py --trainer cpu           # checks the script: all zeros

Writes benchmarks/results/demo_devices.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from locoad.models.base import flatten_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_cli, save_json  # noqa: E402

NOT_SCORES = ("path", "label", "anomaly_type")


def compare(a: Path, b: Path) -> dict:
    """Run directory ``b`` against the reference ``a``: per score column the largest relative
    difference per image; the largest absolute difference of image and pixel metrics."""
    sa, sb = pd.read_csv(a / "scores.csv"), pd.read_csv(b / "scores.csv")
    if list(sa["path"]) != list(sb["path"]):
        raise SystemExit("the two runs scored different images")
    columns = {}
    for c in (c for c in sa.columns if c not in NOT_SCORES and not c.startswith("extra/")):
        x, y = sa[c].to_numpy(float), sb[c].to_numpy(float)
        columns[c] = float((np.abs(y - x) / np.maximum(np.abs(x), 1e-12)).max())
    ma, mb = (flatten_metrics(json.loads((d / "metrics.json").read_text()), prefix="") for d in (a, b))
    common = sorted(set(ma) & set(mb))
    # fusion/scales are the fitted divisors, not metrics
    pixel = [k for k in common if "/pixel" in k or k.startswith("pixel")]
    image = [k for k in common if k not in pixel and not k.startswith("fusion/")]
    diff = {k: abs(mb[k] - ma[k]) for k in common}
    return {
        "score_max_rel_diff": columns,
        "image_metrics": len(image),
        "image_metric_max_abs_diff": max((diff[k] for k in image), default=0.0),
        "pixel_metric_max_abs_diff": max((diff[k] for k in pixel), default=0.0),
        "fused": {"cpu": {m: ma.get(f"fused/{m}") for m in ("f1_max", "auroc")},
                  "other": {m: mb.get(f"fused/{m}") for m in ("f1_max", "auroc")}},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trainer", default="gpu", help="the trainer compared with trainer=cpu")
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--out", default="demo_devices.json", help="file name under benchmarks/results/")
    ap.add_argument("overrides", nargs="*", help="extra overrides for both runs")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs, seconds = {}, {}
        for name, trainer in (("cpu", "cpu"), ("other", opts.trainer)):
            runs[name] = Path(tmp) / name
            seconds[name] = run_cli(["experiment=demo", f"trainer={trainer}", "logger=csv", "model.cache.enabled=false",
                                     *opts.overrides, f"hydra.run.dir={runs[name]}"])
        report = {"machine": machine(), "trainer": opts.trainer, "overrides": opts.overrides,
                  "wall_s": seconds, **compare(runs["cpu"], runs["other"])}
    worst = max(report["score_max_rel_diff"].values())
    report["ok"] = bool(worst <= opts.rtol)
    path = save_json(opts.out, report)
    print(f"wrote {path}: trainer={opts.trainer} vs cpu, largest score difference {worst:.2e} relative "
          f"(tolerance {opts.rtol:g}); image metrics {report['image_metric_max_abs_diff']:.2e}, "
          f"pixel metrics {report['pixel_metric_max_abs_diff']:.2e} apart")
    raise SystemExit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
