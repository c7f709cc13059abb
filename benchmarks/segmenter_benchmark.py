"""Segmenters side by side on synthetic scenes: time per image and foreground IoU.

Foreground IoU = IoU of (label map > 0) against the true part map (part_labels > 0) of
``--scenes`` normal scenes per category, rendered at ``--size`` px. Time per image = median of
``--repeat`` passes over all scenes, divided by their number. Run with OMP_NUM_THREADS=1 for the
one-thread figures: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmenter_benchmark.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import machine, save_json, timeit

from locoad.data.synthetic import CATEGORIES, render_scene, sample_scene
from locoad.segmenters.border_colour import BorderColourSegmenter
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

SEGMENTERS = {"border_colour": BorderColourSegmenter, "felzenszwalb": FelzenszwalbSegmenter}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks; 1 where both are empty (they agree: nothing in either)."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--scenes", type=int, default=20, help="normal scenes per category")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--segmenters", default=",".join(SEGMENTERS))
    args = p.parse_args(argv)
    scenes = {
        c: [
            render_scene(sample_scene(c, np.random.default_rng([7, i, j])), args.size)
            for j in range(args.scenes)
        ]
        for i, c in enumerate(CATEGORIES)
    }
    images = [r.rgb for rs in scenes.values() for r in rs]
    out = {
        "machine": machine(),
        "size": args.size,
        "scenes_per_category": args.scenes,
        "segmenters": {},
    }
    for name in args.segmenters.split(","):
        seg = SEGMENTERS[name]()
        seconds, _ = timeit(lambda seg=seg: [seg(x) for x in images], repeat=args.repeat)
        ious = {c: [iou(seg(r.rgb) > 0, r.part_labels > 0) for r in rs] for c, rs in scenes.items()}
        out["segmenters"][name] = {
            "ms_per_image": 1000 * seconds / len(images),
            "iou_mean": {c: float(np.mean(v)) for c, v in ious.items()},
            "iou_min": {c: float(np.min(v)) for c, v in ious.items()},
        }
        row = "  ".join(f"{c} {np.mean(v):.3f} (min {np.min(v):.3f})" for c, v in ious.items())
        print(f"{name:14s} {1000 * seconds / len(images):7.1f} ms/image  IoU {row}")
    save_json(f"segmenters_{args.size}px.json", out)
    return out


if __name__ == "__main__":
    main()
