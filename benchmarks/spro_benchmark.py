"""sPRO benchmark: the in-run LOCO evaluation of a 100-image category at native LOCO size.

Writes a LOCO-layout category to a temporary folder: 100 test images at 1600 x 1100 px
(34 good, 33 logical, 33 structural), ground-truth PNGs whose pixel values name defects in a
``defects_config.json`` (logical regions 3-15 % of the image, structural 0.1-1 %, some images
with two regions), and one 37 x 37 anomaly map per image (the seven-feature model's patch grid).
It then times what a run does after testing: read the ground truth, resize every map to
1600 x 1100 and compute AU-sPRO of logical and structural (``locoad.metrics.loco.loco_au_spro``),
once for the first map (ground truth read from disk) and once more (ground truth cached, as for
every further score's map in the same run); then ``--maps`` maps, as a run evaluates the fused map
and each score's, one at a time and side by side (``loco_au_spro_maps``, ``--threads`` at once).

    .venv/bin/python benchmarks/spro_benchmark.py            # --threads 2 --size 1100 1600
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, max_rss_gib, save_json  # noqa: E402

from locoad.data.ground_truth import LocoGroundTruth  # noqa: E402
from locoad.data.layout import list_split  # noqa: E402
from locoad.metrics.loco import loco_au_spro, loco_au_spro_maps  # noqa: E402

DEFECTS = [
    {"defect_name": "missing_part", "pixel_value": 255, "saturation_threshold": 1.0, "relative_saturation": True},
    {"defect_name": "misplaced_part", "pixel_value": 254, "saturation_threshold": 0.5, "relative_saturation": True},
    {"defect_name": "scratch", "pixel_value": 253, "saturation_threshold": 2000, "relative_saturation": False},
    {"defect_name": "contamination", "pixel_value": 252, "saturation_threshold": 1.0, "relative_saturation": True},
]


def _ellipse(shape: tuple[int, int], rng: np.random.Generator, frac: float) -> np.ndarray:
    h, w = shape
    ry = np.sqrt(frac * h * w / np.pi) * rng.uniform(0.7, 1.3)
    rx = frac * h * w / (np.pi * ry)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    yy, xx = np.ogrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def make_category(root: Path, shape: tuple[int, int], n: tuple[int, int, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    cdir = root / "bench"
    (cdir / "train" / "good").mkdir(parents=True)
    (cdir / "defects_config.json").write_text(json.dumps(DEFECTS))
    image = Image.new("L", shape[::-1])
    for kind, count in zip(("good", "logical_anomalies", "structural_anomalies"), n):
        for i in range(count):
            stem = f"{i:03d}"
            (cdir / "test" / kind).mkdir(parents=True, exist_ok=True)
            image.save(cdir / "test" / kind / f"{stem}.png")
            if kind == "good":
                continue
            values = (255, 254) if kind == "logical_anomalies" else (253, 252)
            fracs = (0.03, 0.15) if kind == "logical_anomalies" else (0.001, 0.01)
            for j in range(1 + int(rng.random() < 0.3)):
                mask = _ellipse(shape, rng, rng.uniform(*fracs))
                (cdir / "ground_truth" / kind / stem).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * values[j % 2]).save(
                    cdir / "ground_truth" / kind / stem / f"{j:03d}.png")
    return cdir


def maps_for(gt: LocoGroundTruth, grid: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Noisy grid maps that are higher, on average, over each image's regions."""
    out = []
    for i in range(len(gt)):
        amap = rng.normal(0, 1, (grid, grid)).astype(np.float32)
        for r in gt.regions(i):
            small = np.asarray(Image.fromarray(r.mask.astype(np.uint8) * 255).resize((grid, grid), Image.BILINEAR))
            amap += 2.0 * small / 255.0
        out.append(amap)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=(1100, 1600), metavar=("H", "W"))
    p.add_argument("--images", type=int, nargs=3, default=(34, 33, 33), metavar=("GOOD", "LOGICAL", "STRUCT"))
    p.add_argument("--grid", type=int, default=37)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--maps", type=int, default=4, help="maps of one run (the fused map and three patch scores')")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cdir = make_category(Path(tmp), shape, tuple(args.images))
        setup = time.perf_counter() - t0
        samples = list_split(cdir, "test")
        maps = maps_for(LocoGroundTruth(samples, cdir), args.grid, np.random.default_rng(1))
        gt = LocoGroundTruth(samples, cdir)  # fresh: the first evaluation reads the PNGs
        t0, c0 = time.perf_counter(), time.process_time()
        first = loco_au_spro(maps, gt)
        t_first, c_first = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        loco_au_spro([m * 1.01 + 0.1 for m in maps], gt)
        t_again, c_again = time.perf_counter() - t0, time.process_time() - c0
        several = {f"map{j}": [m * (1 + 0.01 * j) for m in maps] for j in range(args.maps)}
        t0 = time.perf_counter()
        loco_au_spro_maps(several, gt, workers=1)
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        loco_au_spro_maps(several, gt, workers=args.threads)
        t_side = time.perf_counter() - t0
        n_region_pixels = sum(int(r.mask.sum()) for i in range(len(gt)) for r in gt.regions(i))
    payload = {
        "machine": machine(),
        "images": len(samples), "size_hw": list(shape), "map_grid": args.grid, "threads": args.threads,
        "region_pixels": n_region_pixels, "setup_s": round(setup, 1),
        "first_map_s": round(t_first, 2), "further_map_s": round(t_again, 2),
        # CPU seconds of this process (all its threads): the wall time minus waiting for the
        # other jobs on a shared machine
        "first_map_cpu_s": round(c_first, 2), "further_map_cpu_s": round(c_again, 2),
        f"{args.maps}_maps_one_at_a_time_s": round(t_serial, 2),
        f"{args.maps}_maps_side_by_side_s": round(t_side, 2),
        "side_by_side_speedup": round(t_serial / t_side, 2),
        "peak_rss_gib": round(max_rss_gib(), 2),
        "au_spro_0.05": {k: round(v["0.05"], 4) for k, v in first.items()},
    }
    print(json.dumps(payload, indent=1))
    save_json("spro_benchmark.json", payload)


if __name__ == "__main__":
    main()
