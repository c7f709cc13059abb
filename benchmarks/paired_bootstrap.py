"""Is a change's gain in fused AUROC larger than what another draw of test images could give?

A paired bootstrap over the test images. Each pair of ``benchmarks/quality_synthetic.py --dump``
files holds the same runs of the same data (a base run and a candidate run; or one dump twice,
the candidate's fusion given by ``--new-overrides``). Both sides are fused, then every
category's test images are drawn again with replacement, within good / logical / structural
images, ``-B`` times; one draw serves every run (k, seed) of that category and both sides, so
the shots' draw, which the runs already vary, is held fixed and only the test images vary.
Printed per pair and for the mean over the pairs (each resampled independently): the mean fused
AUROC of both sides over the runs, their difference and its 95 % interval, and the share of draws
in which the candidate is higher. A difference whose interval straddles 0 is within the test
images' noise. The same is printed for the *lowest part per seed*: per aligner and shot draw
(k, seed) the lowest logical or structural AUROC of any category, averaged over them (the weakest cell a
single run shows; the project's rules ask that a change not lower it). A side may be several
dumps joined by ``+`` (``BASE.npz+NEW_FEATURE.npz``): a feature scored alone (``quality_synthetic.py
--only <name> --dump``) joins, or replaces, the scores of the dumps before it. ``--per-type``
also prints each category's logical and structural AUROC of both sides (mean over the runs) and
their paired difference with its 95 % interval; ``--floor`` (0.65) counts, per side, the runs whose lower part is below it
(the project's adoption rules ask that a change add none); ``--seeds`` keeps only those shot draws (``--seeds 0``: one draw, as a
single run of ``locoad`` with ``data.seed=0`` sees). Runs pair by category, aligner, k and seed:
two configurations with fusions of their own pair too (``--new-overrides fusion=<its fusion>``).

    .venv/bin/python benchmarks/paired_bootstrap.py BASE.npz NEW.npz [BASE2.npz BASE2.npz+FEATURE2.npz ...]
        [--overrides ...] [--new-overrides ...] [-B 1000] [--seed 0] [--seeds 0 ...] [--floor 0.65] [--per-type]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from locoad.metrics.image import GOOD, TYPES
from locoad.utils import build

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_synthetic import compose_config, read_dumps  # noqa: E402


def fused_runs(path: str, fusion_cfg, seeds: list[int] | None = None) -> tuple[dict[tuple, np.ndarray], dict[str, dict]]:
    """Each run's fused test scores ((category, aligner, k, seed) -> (n,)) and the categories'
    labels and types; ``path``: one dump or several joined by "+" (later ones add or replace
    features); ``seeds``: only the runs of those shot draws. The fusion a dump was run with is
    not part of the key: ``fusion_cfg`` fuses every run, so dumps of two configurations with
    fusions of their own (``experiment=lite0_lite2``) pair run by run."""
    runs, data = read_dumps(path.split("+"))
    runs = {key: run for key, run in runs.items() if seeds is None or key[4] in seeds}
    if not runs:
        raise ValueError(f"{path}: no dumped runs{'' if seeds is None else f' of --seeds {seeds}'}; "
                         "pass a file written by quality_synthetic.py --dump")
    fusions = sorted({key[2] for key in runs})
    if len(fusions) > 1:
        raise ValueError(f"{path} holds runs of several fusions ({', '.join(fusions)}): runs pair without the fusion name; "
                         "dump one fusion per file (quality_synthetic.py --fusions NAME)")
    # shots=k as the model passes it: with model.max_loo below k fewer shots are held out, and a
    # weight that grows with the shots (full_weight_shots) follows k, not the held-out count.
    return {(cat, aligner, k, seed): build(fusion_cfg).fit(run["loo"], shots=k).fuse(run["score"])
            for (cat, aligner, _, k, seed), run in runs.items()}, data


def check_paired(base: tuple, new: tuple, names: tuple[str, str]) -> None:
    """Both sides must hold the same runs of the same test images, or no pairing means anything."""
    (runs_a, data_a), (runs_b, data_b) = base, new
    if set(runs_a) != set(runs_b):
        only = sorted(set(runs_a) ^ set(runs_b))[:3]
        raise ValueError(f"{names[0]} and {names[1]} hold different runs (e.g. {only}); dump both with the "
                         "same --variant, --shots, --seeds and categories")
    for cat in {key[0] for key in runs_a}:
        # the files' checksums where both sides have them (dumps since 2026-12-07), else labels and types
        keys = ["labels", "types", *(k for k in ("images", "train_images") if k in data_a[cat] and k in data_b[cat])]
        if any(not np.array_equal(data_a[cat][k], data_b[cat][k]) for k in keys):
            raise ValueError(f"{names[0]} and {names[1]} differ in {cat}'s images; dump both from the same data")


def auroc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of every row of (B, n) ``scores`` against (B, n) 0/1 ``labels`` (ties count one
    half), from the rank sum of the anomalous images (Mann-Whitney): all draws at once."""
    ranks = rankdata(scores, axis=1)
    n1 = labels.sum(axis=1)
    n0 = labels.shape[1] - n1
    return ((ranks * labels).sum(axis=1) - n1 * (n1 + 1) / 2) / (n0 * n1)


def drawn_auroc(scores: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(b + 1,) AUROC of one run's (n,) ``scores`` on each row of drawn test image indices."""
    return auroc_rows(scores[idx], (np.asarray(labels)[idx] != 0).astype(int))


def draws(types: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """(b + 1, n) indices of the test images: row 0 as they are, then ``b`` resamples with
    replacement within each image type."""
    strata = [np.flatnonzero(types == t) for t in np.unique(types)]
    drawn = np.concatenate([rng.choice(idx, size=(b, len(idx))) for idx in strata], axis=1)
    return np.concatenate([np.concatenate(strata)[None], drawn])


def part_masks(types: np.ndarray) -> dict[str, np.ndarray]:
    """Per anomaly type present in ``types`` ("logical" / "structural"): the bool mask of the good
    images and that type's, the images a part's AUROC is measured on."""
    return {short: (types == GOOD) | (types == folder) for short, folder in TYPES.items() if (types == folder).any()}


def bootstrap(pairs: list[tuple[tuple, tuple]], b: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{"mean": mean AUROC over the runs, "lowest": lowest part per seed}, each (b + 1, pairs, 2)
    for base and candidate per pair: row 0 on the test images as they are, then ``b`` paired
    resamples (one per category for every run, both types and both sides). The lowest part per
    seed: per aligner and shot draw (k, seed) the lowest logical or structural AUROC of any
    category, averaged over them."""
    rng = np.random.default_rng(seed)
    out = {stat: np.empty((b + 1, len(pairs), 2)) for stat in ("mean", "lowest")}
    for j, ((runs_a, data), (runs_b, _)) in enumerate(pairs):
        idx = {cat: draws(np.asarray(d["types"]), b, rng) for cat, d in sorted(data.items())}
        # Each type's drawn images with the good ones: every row of a draw has the same strata.
        typed = {}
        for cat, rows in idx.items():
            typed[cat] = [rows[:, mask] for mask in part_masks(np.asarray(data[cat]["types"])[rows[0]]).values()]
        for side, runs in enumerate((runs_a, runs_b)):
            out["mean"][:, j, side] = np.mean([drawn_auroc(score, data[key[0]]["labels"], idx[key[0]])
                                               for key, score in runs.items()], axis=0)
            # (aligner, k, seed) -> (b + 1,) lowest part so far: two aligners are two configurations
            lowest: dict[tuple, np.ndarray] = {}
            for (cat, *draw), score in runs.items():
                for rows in typed[cat]:
                    a = drawn_auroc(score, data[cat]["labels"], rows)
                    lowest[tuple(draw)] = np.minimum(lowest.get(tuple(draw), a), a)
            out["lowest"][:, j, side] = np.mean(list(lowest.values()), axis=0)
    return out


def per_type(sides: list[dict[tuple, np.ndarray]], data: dict[str, dict], b: int,
             rng: np.random.Generator) -> dict[tuple[str, str], np.ndarray]:
    """(category, "logical" / "structural") -> (b + 1, sides) mean AUROC over the category's runs of
    that type against the good images, row 0 as measured, then ``b`` resamples, each drawn once
    for every side (paired: their difference's interval holds only the test images' noise)."""
    out = {}
    for cat in sorted({key[0] for key in sides[0]}):
        t = np.asarray(data[cat]["types"])
        for short, mask in part_masks(t).items():
            keep = np.flatnonzero(mask)
            idx = keep[draws(t[keep], b, rng)]
            out[cat, short] = np.stack([np.mean([drawn_auroc(score, data[cat]["labels"], idx)
                                                 for key, score in runs.items() if key[0] == cat], axis=0)
                                        for runs in sides], axis=1)
    return out


def cells_below(runs: dict[tuple, np.ndarray], data: dict[str, dict], floor: float) -> list[str]:
    """The runs (category, aligner, k, seed) whose lower part, logical or structural AUROC on the test
    images as they are, is below ``floor``: "category/aligner/k/seed: AUROC" each."""
    out = []
    for (cat, *draw), score in sorted(runs.items()):
        parts = [drawn_auroc(score, data[cat]["labels"], np.flatnonzero(mask)[None])[0]
                 for mask in part_masks(np.asarray(data[cat]["types"])).values()]
        if parts and min(parts) < floor:
            out.append(f"{'/'.join(map(str, (cat, *draw)))}: {min(parts):.2f}")
    return out


def summary(means: np.ndarray) -> str:
    """One line from (B + 1, 2) base / candidate means (row 0 as measured)."""
    diff = means[1:, 1] - means[1:, 0]
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return (f"base {means[0, 0]:.4f}  new {means[0, 1]:.4f}  difference {means[0, 1] - means[0, 0]:+.4f}"
            f"  95 % interval [{lo:+.4f}, {hi:+.4f}]  new higher in {np.mean(diff > 0):.0%} of draws")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dumps", nargs="+", help="BASE NEW [BASE NEW ...]")
    ap.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides that pick both sides' fusion")
    ap.add_argument("--new-overrides", nargs="*", default=[], help="and the candidate's, after --overrides")
    ap.add_argument("-B", type=int, default=1000, help="number of resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="only the runs of these shot draws (data.seed)")
    ap.add_argument("--floor", type=float, default=0.65,
                    help="count the runs whose lower part (logical or structural AUROC) is below this (default 0.65)")
    ap.add_argument("--per-type", action="store_true", help="also each category's logical / structural AUROC and the paired difference's interval")
    args = ap.parse_args(argv)
    if len(args.dumps) % 2:
        ap.error(f"got {len(args.dumps)} dump files: pass them in pairs, BASE NEW [BASE NEW ...]")
    if args.B < 1:
        ap.error(f"-B must be at least 1, got {args.B}")
    cfg_a = compose_config(args.overrides).model.fusion
    cfg_b = compose_config([*args.overrides, *args.new_overrides]).model.fusion
    pairs = []
    for base, new in zip(args.dumps[::2], args.dumps[1::2]):
        sides = fused_runs(base, cfg_a, args.seeds), fused_runs(new, cfg_b, args.seeds)
        check_paired(*sides, (base, new))
        pairs.append(sides)
    stats = bootstrap(pairs, args.B, args.seed)
    below = [[cells_below(runs, data, args.floor) for runs, data in sides] for sides in pairs]
    for j, (base, new) in enumerate(zip(args.dumps[::2], args.dumps[1::2])):
        print(f"{base} -> {new}: {summary(stats['mean'][:, j])}")
        print(f"  lowest part per seed: {summary(stats['lowest'][:, j])}")
        print(f"  runs with a part below {args.floor}: base {len(below[j][0])}, new {len(below[j][1])}"
              + "".join(f"\n    {side}: {', '.join(cells)}" for side, cells in zip(("base", "new"), below[j]) if cells))
    if len(pairs) > 1:
        print(f"mean over the {len(pairs)} pairs: {summary(stats['mean'].mean(axis=1))}")
        print(f"  lowest part per seed: {summary(stats['lowest'].mean(axis=1))}")
        print(f"  runs with a part below {args.floor}: base {sum(len(b[0]) for b in below)}, "
              f"new {sum(len(b[1]) for b in below)}")
    if args.per_type:
        rng = np.random.default_rng(args.seed)
        for (base, new), ((runs_a, data), (runs_b, _)) in zip(zip(args.dumps[::2], args.dumps[1::2]), pairs):
            print(f"{base} -> {new}, per category and type (mean AUROC, paired difference and its 95 % interval):")
            for (cat, short), v in per_type([runs_a, runs_b], data, args.B, rng).items():
                diff = v[1:, 1] - v[1:, 0]
                lo, hi = np.percentile(diff, [2.5, 97.5])
                print(f"  {cat:22s} {short:10s} base {v[0, 0]:.3f}  new {v[0, 1]:.3f}  "
                      f"difference {v[0, 1] - v[0, 0]:+.3f} [{lo:+.3f}, {hi:+.3f}]")


if __name__ == "__main__":
    main()
