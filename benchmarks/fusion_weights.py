"""Fused AUROC of fusion-weight settings, recomputed from dumped per-feature scores (no rescoring).

``benchmarks/quality_synthetic.py --dump F.npz`` stores every run's raw test and leave-one-out
scores per feature; this script fits the seed's rule (``fusion=loo``: score / LOO max, summed)
with each weight setting and prints the mean fused AUROC per data set and k, and per category
the AUROC with its logical / structural parts. Choose weights on development dumps only; run
never-tune dumps (``--variant heldout``, generator seed 101) once, to keep or discard a choice.

    .venv/bin/python benchmarks/fusion_weights.py DUMP.npz [DUMP.npz ...] [--settings NAME=f:w,f:w ...]
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import yaml

from locoad.fusion.loo import LeaveOneOutSum
from locoad.metrics import image_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO  # noqa: E402
from quality_synthetic import read_dumps  # noqa: E402

PATCH = ("class_agnostic_patch", "class_aware_patch", "foreground_patch")
_DEFAULT = yaml.safe_load((REPO / "conf/fusion/loo_patch_weighted.yaml").read_text())
DEFAULT_NAME = "default (conf/fusion/loo_patch_weighted.yaml), no histogram"
# name -> per-feature weights (features not named: 1.0)
SETTINGS = {
    "equal (seed)": {},
    "no histogram": {"class_histogram": 0.0},
    "patch x2, no histogram": {"class_histogram": 0.0, **dict.fromkeys(PATCH, 2.0)},
    "patch x3, no histogram": {"class_histogram": 0.0, **dict.fromkeys(PATCH, 3.0)},
    "patch x3, no histogram, no composition": {"class_histogram": 0.0, "composition": 0.0, **dict.fromkeys(PATCH, 3.0)},
    # the default's weights and log features as the config has them, not a copy that could drift
    DEFAULT_NAME: {"class_histogram": 0.0, **_DEFAULT["weights"]},
}
# name -> features entering as weight * log(1 + score / scale) (fusion.log_features)
LOG_FEATURES = {DEFAULT_NAME: _DEFAULT["log_features"]}
# name -> features whose weight grows with the shots (fusion.full_weight_shots)
FULL_WEIGHT_SHOTS = {DEFAULT_NAME: _DEFAULT.get("full_weight_shots", {})}


def load_runs(path: str) -> list[dict]:
    """One entry per (category, k, seed) of a ``quality_synthetic.py --dump`` file."""
    runs, data = read_dumps([path])
    return [dict(category=c, k=k, seed=s, labels=data[c]["labels"], types=data[c]["types"], **r)
            for (c, _aligner, _fusion, k, s), r in sorted(runs.items())]


def fused_metrics(run: dict, weights: dict[str, float], initial_scales: dict[str, float],
                  log_features: list[str] = (), full_weight_shots: dict[str, int] | None = None) -> dict:
    fusion = LeaveOneOutSum(weights=weights, initial_scales=initial_scales, log_features=log_features,
                            full_weight_shots=full_weight_shots).fit(run["loo"], shots=run["k"])
    return image_metrics(fusion.fuse(run["score"]), run["labels"], run["types"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dumps", nargs="+")
    ap.add_argument("--settings", nargs="*", default=None,
                    help="NAME=feature:weight,feature:weight (default: the built-in list)")
    args = ap.parse_args(argv)
    settings = SETTINGS
    if args.settings:
        settings = {s.split("=", 1)[0]: {f: float(w) for f, w in (p.split(":") for p in s.split("=", 1)[1].split(",") if p)}
                    for s in args.settings}
    scales = yaml.safe_load((REPO / "conf/fusion/loo.yaml").read_text())["initial_scales"]
    for path in args.dumps:
        runs = load_runs(path)
        ks = sorted({r["k"] for r in runs})
        cats = sorted({r["category"] for r in runs})
        print(f"\n{path}\n")
        print("| weights | " + " | ".join(f"k={k}" for k in ks) + " | " + " | ".join(cats) + " |")
        print("|---|" + "---|" * (len(ks) + len(cats)))
        for name, weights in settings.items():
            by = collections.defaultdict(list)
            for r in runs:
                m = fused_metrics(r, weights, scales, LOG_FEATURES.get(name, ()), FULL_WEIGHT_SHOTS.get(name))
                by[(r["category"], r["k"])].append((m["auroc"], m["logical"]["auroc"], m["structural"]["auroc"]))
            mean_k = [np.mean([np.mean(by[(c, k)], axis=0)[0] for c in cats if (c, k) in by]) for k in ks]
            k_cat = 4 if 4 in ks else ks[-1]
            per_cat = ["{:.2f} ({:.2f}/{:.2f})".format(*np.mean(by[(c, k_cat)], axis=0)) for c in cats]
            print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in mean_k) + " | " + " | ".join(per_cat) + " |")
        print(f"\nper category: AUROC (logical/structural) at k={k_cat}, mean over seeds")


if __name__ == "__main__":
    main()
