"""A sweep job's use of the stage cache, importable by spawned processes (test_cache.py).

Kept apart from the test module so a spawned job imports only the cache and two weight-free
stages, not the whole runner."""

from __future__ import annotations

import numpy as np
import torch

from locoad.backbones.handcrafted import HandcraftedBackbone
from locoad.cache import StageCache
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

ROUNDS, N_IMAGES = 2, 6


def stage_run(root: str, barrier=None) -> dict:
    """Features for a batch, a label map and a scores entry per image, in rounds of fresh
    configurations, so that every job misses, computes and writes the same entries at the same
    moment. Returns every value the cache handed back."""
    cache = StageCache(root)
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (N_IMAGES, 3, 56, 56), generator=g).float() / 255.0
    rgbs = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(N_IMAGES)]
    out = {}
    for r in range(ROUNDS):
        bb = HandcraftedBackbone(image_size=56, patch_size=14, context=r % 2 == 0)
        seg = FelzenszwalbSegmenter(work_size=64, scale=100.0 + 50 * r)
        sdir = cache.config_dir("scores", {"round": r})
        if barrier is not None:
            barrier.wait(120)  # every job starts the round together
        out[f"features{r}"] = cache.features(bb, imgs).numpy()
        for i, rgb in enumerate(rgbs):
            out[f"segments{r}_{i}"] = cache.segments(seg, rgb)
            name = f"{r:02d}{i:062d}"
            if cache.get("scores", sdir, name) is None:
                cache.put("scores", sdir, name, {"score": np.float64(r + i / 10), "map": out[f"segments{r}_{i}"] * 0.5})
            out[f"scores{r}_{i}"] = cache.get("scores", sdir, name)["map"]
        for _ in range(20):  # read everything back while the other jobs may still be writing it
            np.testing.assert_array_equal(cache.features(bb, imgs).numpy(), out[f"features{r}"])
            for i, rgb in enumerate(rgbs):
                np.testing.assert_array_equal(cache.segments(seg, rgb), out[f"segments{r}_{i}"])
    # a reader never met a partial file, no write failed
    out["errors"] = np.array([sum(s[k] for s in cache.stats.values()) for k in ("corrupt", "write_errors")])
    return out


def stage_job(root: str, barrier, result: str) -> None:
    np.savez(result, **stage_run(root, barrier))


def writer(root: str, seed: int, n: int) -> None:
    """Rewrite one entry ``n`` times with values of its own."""
    cache = StageCache(root)
    d = cache.config_dir("features", {"test": "concurrent"})
    for i in range(n):
        cache.put("features", d, "ab" + "0" * 62, torch.full((64, 16, 16), float(seed * 1000 + i)))
