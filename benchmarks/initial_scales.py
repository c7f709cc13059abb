"""Measure the fusion's 1-shot initial scales and write them into conf/fusion/{loo,max,gated}.yaml
(``--fusion``: other fusion YAMLs, e.g. a stack with other features).

With k >= 2 shots each feature is divided by its leave-one-out (LOO) maximum: how large the
feature gets on a normal image scored against the other shots. A single shot has no LOO, so the
rule needs a fixed divisor per feature (the seed's "naive initial weights"); the same divisor is
the fallback where the shots agree exactly (LOO max 0). 1-shot test images are scored against a
memory of one normal image, so the matching quantity is the 2-shot LOO maximum (each of two
normal images scored against the other). Measured here on data generated for this purpose and
never on a test split: synthetic *train* images of generator seed 1 (the evaluation data uses
seed 0), disjoint pairs per category, the median over categories and pairs.

The scales depend on the feature extractor (a patch score is a cosine distance in the backbone's
feature space): re-run this after changing the default backbone, segmenter or features.

    .venv/bin/python benchmarks/initial_scales.py            # measure, write the YAMLs and the JSON
    .venv/bin/python benchmarks/initial_scales.py --no-write --pairs 2 --categories pushpins
    .venv/bin/python benchmarks/initial_scales.py --only lite2_class_agnostic_patch \
        lite2_class_aware_patch lite2_foreground_patch --overrides experiment=lite0_lite2
    .venv/bin/python benchmarks/initial_scales.py --only local_patch --overrides features=local_patch
    .venv/bin/python benchmarks/initial_scales.py --overrides experiment=lite0_lite2 --fusion \
        --out benchmarks/results/initial_scales_lite0_lite2.json   # every score of a stack: the JSON only

``--only`` adds (or re-measures) the named features and keeps every other shipped scale as it is,
so a new option does not move the default's 1-shot divisors; the block and the JSON name both
commands.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from locoad.data.dataset import LocoDataset
from locoad.data.layout import category_dir, list_split
from locoad.data.synthetic import CATEGORIES, generate
from locoad.utils import build

FUSIONS = ["loo", "max", "gated"]
BEGIN, END = "# >>> initial_scales", "# <<< initial_scales"


def compose_model(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", "callbacks=none", f"paths.root_dir={REPO}", *overrides])
    return build(cfg.model).model, cfg


def pair_loo_maxima(model, root: Path, category: str, pairs: int) -> dict[str, list[float]]:
    """2-shot LOO maximum of every feature for ``pairs`` disjoint pairs of train/good images."""
    samples = list_split(category_dir(root, category), "train")[: 2 * pairs]
    if len(samples) < 2 * pairs:
        raise ValueError(f"{category}: {pairs} pairs need {2 * pairs} training images, found {len(samples)}")
    data = LocoDataset(samples, model.backbone.image_size)
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    encoded = []
    for batch in loader:
        encoded += model.encode(batch["image"], shots=True, aspects=batch["aspect"])  # as a run encodes shots
    out: dict[str, list[float]] = {n: [] for n in model.features}
    for i in range(pairs):
        model.fit(encoded[2 * i : 2 * i + 2])
        for n, s in model.loo_scores.items():
            out[n].append(float(np.max(s)))
    return out


def measure(root: Path, categories: list[str], pairs: int, overrides: list[str]) -> dict:
    model, _ = compose_model(overrides)
    per_category = {}
    for cat in categories:
        t0 = time.time()
        per_category[cat] = pair_loo_maxima(model, root, cat, pairs)
        print(f"{cat}: {pairs} pairs in {time.time() - t0:.0f}s", flush=True)
    names = list(model.features)
    scales = {n: float(np.median([v for c in per_category.values() for v in c[n]])) for n in names}
    return {"initial_scales": scales, "per_category_median": {
        c: {n: float(np.median(v[n])) for n in names} for c, v in per_category.items()}}


def yaml_block(scales: dict[str, float], source: str) -> str:
    lines = [
        BEGIN + " (written by benchmarks/initial_scales.py; do not edit by hand)",
        "# 1-shot divisors (no leave-one-out), and the fallback where the LOO max is 0: the median",
        f"# 2-shot LOO max on synthetic train images, {source}.",
        "initial_scales:",
        *(f"  {n}: {v:.4g}" for n, v in scales.items()),
        END,
    ]
    return "\n".join(lines)


def write_yaml(path: Path, block: str) -> None:
    """Replace the marked block (or the ``initial_scales:`` line) of a fusion YAML."""
    text = path.read_text()
    marked = re.compile(rf"^{re.escape(BEGIN)}.*?^{re.escape(END)}$", re.S | re.M)
    if marked.search(text):
        text = marked.sub(lambda _: block, text)
    else:
        text, n = re.subn(r"^initial_scales:.*$", lambda _: block, text, flags=re.M)
        if n != 1:
            raise ValueError(f"{path}: no initial_scales line to replace")
    path.write_text(text)


def shipped_scales(fusion: str) -> tuple[dict[str, float], str]:
    """The initial scales in conf/fusion/<fusion>.yaml and their block's source lines."""
    text = (REPO / "conf" / "fusion" / f"{fusion}.yaml").read_text()
    block = re.search(rf"^{re.escape(BEGIN)}.*?^{re.escape(END)}$", text, re.S | re.M)
    if block is None:
        raise SystemExit(f"conf/fusion/{fusion}.yaml has no {BEGIN} block to add to: measure every feature first")
    lines = block.group(0).splitlines()
    at = lines.index("initial_scales:")
    source = "\n".join(lines[2:at]).removeprefix("# 2-shot LOO max on synthetic train images, ").removesuffix(".")
    scales = {str(k): float(v) for k, v in OmegaConf.create(block.group(0)).initial_scales.items()}
    return scales, source


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1, help="generator seed (not 0, the evaluation data)")
    ap.add_argument("--categories", nargs="*", default=list(CATEGORIES))
    ap.add_argument("--pairs", type=int, default=8, help="disjoint pairs of train images per category")
    ap.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides of the stack measured")
    ap.add_argument("--no-write", action="store_true", help="print only; leave conf/ and the JSON alone")
    ap.add_argument("--fusion", nargs="*", default=FUSIONS,
                    help="conf/fusion/<name>.yaml files to write (none named: only the --out JSON)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/initial_scales.json"))
    ap.add_argument("--only", nargs="+", default=None, metavar="FEATURE",
                    help="write only these features' scales, keeping the others shipped")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    if args.seed == 0:
        raise SystemExit("--seed 0 is the evaluation data: measure on another generator seed")
    torch.manual_seed(0)
    root = REPO / f".cache/synthetic/seed{args.seed}_256px_scales"
    # train/good only: no test or tune split is generated, so none can leak into the scales
    generate(root, categories=args.categories, seed=args.seed, image_size=256, n_train=2 * args.pairs,
             n_validation=0, n_test_good=0, n_logical=0, n_structural=0)
    result = measure(root, args.categories, args.pairs, args.overrides)
    stack = " ".join(args.overrides) or "the default configuration"
    command = " ".join(["benchmarks/initial_scales.py", *argv])
    source = (f"generator seed {args.seed}, {len(args.categories)} categories x {args.pairs} pairs,\n"
              f"# {stack}; re-measure with `{command}`")
    if args.only is None:
        blocks = {name: yaml_block(result["initial_scales"], source) for name in args.fusion}
    else:
        missing = sorted(set(args.only) - set(result["initial_scales"]))
        if missing:
            raise SystemExit(f"--only {' '.join(missing)}: not among the measured features; add them with --overrides features=...")
        added = {n: result["initial_scales"][n] for n in args.only}
        label = f"{', '.join(args.only)}: "
        blocks = {}
        for name in args.fusion:
            scales, old_source = shipped_scales(name)
            # a re-measured feature's earlier source goes: one line of provenance per addition
            kept = [part for part in old_source.split(";\n# ") if not part.startswith(label)]
            blocks[name] = yaml_block({**scales, **added}, ";\n# ".join([*kept, label + source]))
    print(next(iter(blocks.values()), None) or yaml_block(result["initial_scales"], source))
    if args.no_write:
        return
    for name, block in blocks.items():
        write_yaml(REPO / "conf" / "fusion" / f"{name}.yaml", block)
    if args.only is None:
        saved = {"command": command, "seed": args.seed, "pairs": args.pairs, "overrides": args.overrides, **result}
    else:
        saved = json.loads(Path(args.out).read_text())
        saved["initial_scales"].update(added)
        saved.setdefault("added", []).append({"command": command, "features": args.only, **result})
    Path(args.out).write_text(json.dumps(saved, indent=1) + "\n")

if __name__ == "__main__":
    main()
