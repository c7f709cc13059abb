"""Check quality result files against a mean and a per-part floor, one shot draw at a time.

The project's targets are stated per shot draw: at k shots and one ``data.seed``, the mean fused
AUROC over the categories must reach ``--mean`` and no category's logical or structural fused
AUROC may fall below ``--floor``. Averages over seeds hide a draw that misses, so this reports
every (file, aligner, fusion, k, seed) draw, whether it passes, and how many of them pass. Run it on
result files of fresh data (``quality_synthetic.py --generator-seed N``, one file per draw) to
estimate how often data never seen would pass. ``--parts`` adds, per category and part, the mean,
standard deviation and lowest fused AUROC over the draws and how many fall below the floor: how
far one weak part spreads from draw to draw.

    .venv/bin/python benchmarks/target_check.py benchmarks/results/<file>.json ... \\
        [--shots 4] [--seeds 0] [--mean M] [--floor F] [--parts]

(defaults: the clean captures' targets, ``--mean 0.85 --floor 0.70``; the photo-like ones are
``--mean 0.80 --floor 0.65``)
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

PARTS = ("logical", "structural")


def draws(grid: dict, shots: set[int] | None = None, seeds: set[int] | None = None) -> list[dict]:
    """One summary per (aligner, fusion, k, seed) of a result file: the mean fused AUROC over its
    categories and its lowest part (category, part, AUROC)."""
    groups: dict[tuple, list[dict]] = {}
    for row in grid["results"]:
        if (shots is None or row["k"] in shots) and (seeds is None or row["seed"] in seeds):
            groups.setdefault((row["aligner"], row["fusion"], row["k"], row["seed"]), []).append(row)
    out = []
    for (aligner, fusion, k, seed), rows in sorted(groups.items()):
        parts = []
        for r in rows:
            for p in PARTS:
                auroc = (r["metrics"]["fused"].get(p) or {}).get("auroc")
                if auroc is None or auroc != auroc:  # absent, or NaN (no image of that type)
                    # judged on its other part alone, a category could pass the floor unseen
                    raise ValueError(f"{r['category']} ({aligner}/{fusion} k={k} seed={seed}) has no {p} fused "
                                     "AUROC; a draw is judged on both parts of every category: re-run "
                                     "quality_synthetic.py on data with both anomaly types")
                parts.append((auroc, r["category"], p))
        low = min(parts)
        out.append({"aligner": aligner, "fusion": fusion, "k": k, "seed": seed, "categories": len(rows),
                    "mean": sum(r["metrics"]["fused"]["auroc"] for r in rows) / len(rows),
                    "lowest": {"auroc": low[0], "category": low[1], "part": low[2]},
                    "parts": {(c, p): a for a, c, p in parts}})
    return out


def part_spread(found: list[dict], floor: float) -> list[str]:
    """Per (category, part) over the draws: mean, standard deviation (n - 1; 0 for one draw),
    lowest fused AUROC, and the draws below ``floor``."""
    values: dict[tuple[str, str], list[float]] = {}
    for d in found:
        for key, auroc in d["parts"].items():
            values.setdefault(key, []).append(auroc)
    lines = []
    for (category, part), v in sorted(values.items()):
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        below = sum(a < floor for a in v)
        lines.append(f"{category:20s} {part:10s} {len(v):3d} draws  mean {statistics.fmean(v):.3f}  sd {sd:.3f}  "
                     f"lowest {min(v):.2f}  below {floor}: {below}")
    return lines


def passes(draw: dict, mean: float, floor: float) -> bool:
    return draw["mean"] >= mean and draw["lowest"]["auroc"] >= floor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="quality_synthetic.py result files (.json)")
    ap.add_argument("--shots", nargs="*", type=int, default=[4], help="k to check (default 4; none given: every k)")
    ap.add_argument("--seeds", nargs="*", type=int, default=None, help="data.seed values (default: every seed)")
    ap.add_argument("--mean", type=float, default=0.85, help="target for the mean fused AUROC over categories")
    ap.add_argument("--floor", type=float, default=0.70, help="target for every logical / structural fused AUROC")
    ap.add_argument("--parts", action="store_true",
                    help="also each category's logical / structural AUROC over the draws: mean, sd, lowest, below the floor")
    args = ap.parse_args(argv)
    shots = set(args.shots) if args.shots else None
    seeds = None if args.seeds is None else set(args.seeds)
    n = ok = 0
    every: list[dict] = []
    for f in args.files:
        path = Path(f)
        if not path.is_file():
            ap.error(f"{f}: no such result file (quality_synthetic.py --out writes them)")
        try:
            found = draws(json.loads(path.read_text()), shots, seeds)
        except (ValueError, KeyError) as err:  # not JSON, no "results", or rows without anomaly types
            ap.error(f"{f}: not a quality_synthetic.py result file with fused logical / structural AUROCs ({err})")
        every += found
        for d in found:
            good = passes(d, args.mean, args.floor)
            n, ok = n + 1, ok + good
            low = d["lowest"]
            # three decimals: at two, a part of 0.646 reads as the floor 0.65 beside MISS
            print(f"{path.name:40s} {d['aligner']:>9s} {d['fusion']} k={d['k']} seed={d['seed']}  {d['categories']} "
                  f"categories  mean {d['mean']:.3f}  lowest {low['auroc']:.3f} {low['category']} {low['part']}  "
                  f"{'pass' if good else 'MISS'}")
    if not n:
        ap.error("no rows match --shots / --seeds in these files")
    print(f"{ok} of {n} draws pass (mean >= {args.mean}, every part >= {args.floor})")
    if args.parts:
        print("\n".join(part_spread(every, args.floor)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
