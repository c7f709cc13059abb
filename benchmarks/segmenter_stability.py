"""Segmenter stability: does the same scene, captured at two sizes, keep its foreground?

The synthetic families render the same scenes at any ``size_factor`` (native size x this): read
at the backbone's input size and segmented at the work size, as a run does, the two captures
differ by about 0.1 grey level on average. A segmenter whose foreground (label map > 0) moves
between them moves every score that reads it (the foreground and class-aware patch scores, the
class features), so the quality measured at one size does not carry over to another. Per
category: the foreground IoU of each image between the two sizes (mean, min, share of images
below 0.9) and the share of images whose number of segments differs; for a segmenter with a
foreground segmenter (the foreground patch score's own foreground), that one too, as
``<name>/foreground``.

    .venv/bin/python benchmarks/segmenter_stability.py --variant heldout_clean --size-factors 0.5 1.0 \\
        [--segmenters felzenszwalb border_colour] [--generator-seed 0] [--categories ...]
        [--overrides segmenter.scale=100 ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, machine
from quality_synthetic import compose_config, prepare_data
from segmenter_benchmark import iou

from locoad.data.datamodule import LocoDataModule
from locoad.models.seven_feature.torch_model import to_uint8
from locoad.utils import build


def read_split_images(root: str, category: str, image_size: int, work_size: int) -> list[np.ndarray]:
    """Every train and test image of a category as the model's segmenter sees it: read at the
    backbone's input size, then resized to the work size (uint8)."""
    dm = LocoDataModule(root, category, k_shot=None, seed=0, image_size=image_size)
    dm.setup()
    out: list[np.ndarray] = []
    for split in ("train", "test"):
        for batch in torch.utils.data.DataLoader(dm.dataset(split), batch_size=8):
            out += list(to_uint8(batch["image"], work_size))
    return out


def foreground_agreement(a: list[np.ndarray], b: list[np.ndarray]) -> dict:
    """Foreground IoU per image pair of label maps, summarised; and how often the segment counts differ."""
    ious = np.array([iou(x > 0, y > 0) for x, y in zip(a, b, strict=True)])
    counts_differ = np.mean([len(np.unique(x)) != len(np.unique(y)) for x, y in zip(a, b, strict=True)])
    return {"iou_mean": float(ious.mean()), "iou_min": float(ious.min()), "below_0.9": float(np.mean(ious < 0.9)),
            "segment_count_differs": float(counts_differ), "images": len(ious)}


def measured_segmenters(names: list[str], overrides: list[str]) -> dict:
    """Each named segmenter (config group ``segmenter``, with ``overrides``) and, as
    ``<name>/foreground``, its foreground segmenter where it has one: the foreground the
    foreground patch score reads (``segmenter.foreground_strip_width``)."""
    out = {}
    for name in names:
        seg = out[name] = build(compose_config([f"segmenter={name}", *overrides]).model.segmenter)
        fg = seg.foreground_segmenter()
        if fg is not None:
            out[f"{name}/foreground"] = fg
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="heldout_clean", choices=["varied", "heldout", "heldout_clean"])
    ap.add_argument("--generator-seed", type=int, default=0)
    ap.add_argument("--size-factors", nargs=2, type=float, default=[0.5, 1.0])
    ap.add_argument("--segmenters", nargs="*", default=["felzenszwalb", "border_colour"])
    ap.add_argument("--categories", nargs="*", default=None, help="default: every category of the variant")
    ap.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides for every segmenter, e.g. segmenter.scale=100")
    ap.add_argument("--out", default=str(RESULTS / "segmenter_stability.json"))
    args = ap.parse_args(argv)
    cfg = compose_config([])
    image_size, work_size = int(cfg.model.backbone.image_size), int(cfg.model.work_size)
    prepared = [prepare_data(args.variant, args.generator_seed, f) for f in args.size_factors]
    roots, categories = [root for root, _ in prepared], args.categories or prepared[0][1]
    result: dict = {"command": "benchmarks/segmenter_stability.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "variant": args.variant, "generator_seed": args.generator_seed, "size_factors": args.size_factors,
                    "image_size": image_size, "work_size": work_size, "machine": machine(), "segmenters": {}}
    segmenters = measured_segmenters(args.segmenters, args.overrides)
    for category in categories:
        images = [read_split_images(r, category, image_size, work_size) for r in roots]
        for name, seg in segmenters.items():
            row = foreground_agreement(*[[seg(x) for x in imgs] for imgs in images])
            result["segmenters"].setdefault(name, {})[category] = row
            print(f"{name:14s} {category:20s} foreground IoU mean {row['iou_mean']:.3f} min {row['iou_min']:.3f} "
                  f"below 0.9 {row['below_0.9']:.0%}  segment count differs {row['segment_count_differs']:.0%}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
