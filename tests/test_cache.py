"""The on-disk stage cache: keys, invalidation, robustness, and a sweep reusing the stages."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import compose_cfg
from locoad.backbones.handcrafted import HandcraftedBackbone
from locoad.cache import StageCache, backbone_key, fingerprint, segmenter_key
from locoad.run import run
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter
from stage_jobs import N_IMAGES, ROUNDS, stage_job, stage_run, writer

# one backbone: the stage counts below are per image (an ensemble's members: test_backbone_ensemble.py)
# min_free_gb off: the hit counts below need every write stored, whatever the test machine's free
# disk (the guard itself: test_nearly_full_disk_stops_writes_not_the_run)
TINY = ["data=mvtec_loco", "data.category=widgets", "data.k_shot=3", "data.num_workers=0",
        "backbone=efficientnet_lite0", "backbone.image_size=112", "model.work_size=64", "segmenter.work_size=64", "logger=csv",
        "model.cache.min_free_gb=null"]


def _images(n: int = 3, size: int = 56) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), generator=g).float() / 255.0


def _rgb(size: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_hit_after_put(tmp_path):
    cache = StageCache(tmp_path)
    bb = HandcraftedBackbone(image_size=56, patch_size=14)
    imgs = _images()
    first = cache.features(bb, imgs)
    assert cache.stats["features"] == {"hits": 0, "misses": 3, "corrupt": 0, "writes": 3, "write_errors": 0,
                                       "skipped_low_disk": 0}
    second = cache.features(bb, imgs)
    assert cache.stats["features"]["hits"] == 3
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first, bb(imgs), rtol=0, atol=0)

    seg = FelzenszwalbSegmenter(work_size=64)
    rgb = _rgb()
    a = cache.segments(seg, rgb)
    b = cache.segments(seg, rgb)
    assert cache.stats["segments"]["hits"] == 1 and np.array_equal(a, b) and b.dtype == a.dtype
    # layout: <root>/<stage>/<config-hash>/<ab>/<image-hash>.<ext> with a config.json per config
    cfgs = sorted(tmp_path.glob("*/*/config.json"))
    assert {c.parent.parent.name for c in cfgs} == {"features", "segments"}
    assert json.loads(cfgs[0].read_text())["version"]
    assert len(list(tmp_path.glob("features/*/??/*.pt"))) == 3
    assert len(list(tmp_path.glob("segments/*/??/*.npy"))) == 1
    assert "3/6 hits" in cache.summary()


def test_partial_hits_run_backbone_once_on_misses(tmp_path):
    cache = StageCache(tmp_path)
    bb = HandcraftedBackbone(image_size=56, patch_size=14)
    imgs = _images(4)
    ref = bb(imgs)
    cache.features(bb, imgs[[0, 2]])
    calls, forward = [], bb.forward
    bb.forward = lambda x: (calls.append(len(x)), forward(x))[1]
    out = cache.features(bb, imgs)
    assert calls == [2]  # one batched call on the two misses
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_key_changes_with_config(tmp_path):
    s1, s2 = FelzenszwalbSegmenter(work_size=64), FelzenszwalbSegmenter(work_size=64, scale=100.0)
    assert fingerprint(segmenter_key(s1)) == fingerprint(segmenter_key(FelzenszwalbSegmenter(work_size=64)))
    assert fingerprint(segmenter_key(s1)) != fingerprint(segmenter_key(s2))
    b1 = HandcraftedBackbone(image_size=56, patch_size=14)
    same = HandcraftedBackbone(image_size=56, patch_size=14)
    assert fingerprint(backbone_key(b1)) == fingerprint(backbone_key(same))
    for other in (HandcraftedBackbone(image_size=112, patch_size=14), HandcraftedBackbone(56, 14, context=False)):
        assert fingerprint(backbone_key(b1)) != fingerprint(backbone_key(other))

    # a changed config is a miss, stored under another config folder
    cache = StageCache(tmp_path)
    rgb = _rgb()
    cache.segments(s1, rgb)
    cache.segments(s2, rgb)
    assert cache.stats["segments"]["hits"] == 0 and len(list(tmp_path.glob("segments/*/config.json"))) == 2


def test_backbone_key_sees_weights():
    from locoad.backbones.dinov2 import DinoV2Backbone

    kw = dict(variant="vits14", pretrained=False, image_size=56, model_kwargs={"depth": 1, "embed_dim": 24, "num_heads": 2})
    torch.manual_seed(0)
    a = DinoV2Backbone(**kw)
    torch.manual_seed(0)
    b = DinoV2Backbone(**kw)
    torch.manual_seed(1)
    c = DinoV2Backbone(**kw)
    assert fingerprint(backbone_key(a)) == fingerprint(backbone_key(b))
    assert fingerprint(backbone_key(a)) != fingerprint(backbone_key(c))  # other (random) weights
    kw["model_kwargs"] = {"depth": 2, "embed_dim": 24, "num_heads": 2}
    torch.manual_seed(0)
    assert fingerprint(backbone_key(a)) != fingerprint(backbone_key(DinoV2Backbone(**kw)))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "wrong_shape"])
def test_corrupt_entry_is_a_miss(tmp_path, damage):
    cache = StageCache(tmp_path)
    bb = HandcraftedBackbone(image_size=56, patch_size=14)
    seg = FelzenszwalbSegmenter(work_size=64)
    imgs, rgb = _images(1), _rgb()
    ref_f, ref_s = cache.features(bb, imgs), cache.segments(seg, rgb)
    for path in [*tmp_path.glob("features/*/??/*.pt"), *tmp_path.glob("segments/*/??/*.npy")]:
        data = path.read_bytes()
        if damage == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "garbage":
            path.write_bytes(b"\x00not a cache entry" * 10)
        elif damage == "empty":
            path.write_bytes(b"")
        elif path.suffix == ".pt":
            torch.save(torch.zeros(2, 3), path)
        else:
            np.save(path, np.zeros((3, 3), np.int32))
    f, s = cache.features(bb, imgs), cache.segments(seg, rgb)
    torch.testing.assert_close(f, ref_f, rtol=0, atol=0)
    assert np.array_equal(s, ref_s)
    assert cache.stats["features"]["corrupt"] == 1 and cache.stats["segments"]["corrupt"] == 1
    # overwritten with a good entry: the next read hits
    fresh = StageCache(tmp_path)
    fresh.features(bb, imgs), fresh.segments(seg, rgb)
    assert fresh.hits == 2 and fresh.misses == 0


WRITERS_TIMEOUT_S = 300


def test_concurrent_writers_leave_a_valid_file(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=writer, args=(str(tmp_path), s, 30)) for s in (1, 2)]
    for p in procs:
        p.start()
    # One deadline for both: a healthy writer takes seconds even on 2 loaded cores; only a hang
    # reaches it (and its processes are killed, not left behind).
    deadline = time.monotonic() + WRITERS_TIMEOUT_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [p for p in procs if p.exitcode is None]
    for p in hung:
        p.kill()
    assert not hung, f"{len(hung)} writer(s) still running after {WRITERS_TIMEOUT_S} s"
    assert [p.exitcode for p in procs] == [0, 0]
    cache = StageCache(tmp_path)
    d = cache.config_dir("features", {"test": "concurrent"})
    t = cache.get("features", d, "ab" + "0" * 62)
    assert t is not None and t.shape == (64, 16, 16) and bool((t == t.flatten()[0]).all())
    assert float(t.flatten()[0]) in {1029.0, 2029.0}  # one writer's complete last value
    assert not list(tmp_path.rglob("*.tmp"))  # no temp files left behind


def test_disabled_writes_nothing(tmp_path):
    for cache in (StageCache(tmp_path / "off", enabled=False), StageCache(None)):
        bb = HandcraftedBackbone(image_size=56, patch_size=14)
        imgs = _images(2)
        torch.testing.assert_close(cache.features(bb, imgs), bb(imgs), rtol=0, atol=0)
        cache.segments(FelzenszwalbSegmenter(work_size=64), _rgb())
        assert cache.lookups == 0
    assert not (tmp_path / "off").exists()


def _model_cache_and_counters(monkeypatch):
    """Record every SevenFeatureModule's cache and count backbone/segmenter work (the stages
    themselves, inside the stored-stage wrappers)."""
    from locoad.models.seven_feature import lightning_model

    seen = {"caches": [], "backbone_images": 0, "segmenter_images": 0}
    orig_init = lightning_model.SevenFeatureModule.__init__

    def init(self, *args, **kwargs):
        backbone, seg_call = kwargs["backbone"], kwargs["segmenter"]
        bb_forward = backbone.forward

        def bb(x):
            seen["backbone_images"] += len(x)
            return bb_forward(x)

        def seg(rgb):
            seen["segmenter_images"] += 1
            return seg_call(rgb)

        seg.cache_key = seg_call.cache_key
        seg.foreground_segmenter = seg_call.foreground_segmenter  # its label maps are stored too
        backbone.forward = bb
        kwargs["segmenter"] = seg
        orig_init(self, *args, **kwargs)
        seen["caches"].append(kwargs.get("cache"))

    monkeypatch.setattr(lightning_model.SevenFeatureModule, "__init__", init)
    return seen


def test_sweep_reuses_stages_and_matches_uncached(loco_root, tmp_path, monkeypatch):
    seen = _model_cache_and_counters(monkeypatch)
    # no rotated shot copies: the counts below are per image (their keys: test_patch_robust.py)
    # the foreground patch score's own foreground (segmenter.foreground_strip_width) is stored too
    base = TINY + [f"data.root={loco_root}", "model.shot_augment=null", "segmenter.foreground_strip_width=0"]
    n_images = 3 + 9  # k shots + test images
    maps = 2  # label maps per image: the parts and the foreground

    cfg = compose_cfg(base + ["model.cache.enabled=false"], tmp_path / "off")
    run(cfg)
    assert not (tmp_path / ".cache" / "stages").exists()
    assert seen["caches"][-1] is not None and not seen["caches"][-1].enabled
    assert seen["backbone_images"] == n_images and seen["segmenter_images"] == n_images

    cfg = compose_cfg(base, tmp_path / "on")
    run(cfg)
    cache = seen["caches"][-1]
    assert cache.enabled and cache.root == tmp_path / ".cache" / "stages"
    stage_misses = lambda c: c.stats["features"]["misses"] + c.stats["segments"]["misses"]  # noqa: E731
    assert stage_misses(cache) == (1 + maps) * n_images and cache.hits == 0
    assert cache.stats["scores"]["misses"] == 1 + 9  # leave-one-out scores and each test image
    assert seen["backbone_images"] == 2 * n_images

    off = pd.read_csv(tmp_path / "off" / "scores.csv")
    pd.testing.assert_frame_equal(off, pd.read_csv(tmp_path / "on" / "scores.csv"))

    def job(name: str, overrides: list[str]) -> StageCache:
        run(compose_cfg(base + overrides, tmp_path / name))
        return seen["caches"][-1]

    def assert_same_as_uncached(name: str, overrides: list[str]) -> None:
        job(f"{name}_off", overrides + ["model.cache.enabled=false"])
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name / "scores.csv"),
                                      pd.read_csv(tmp_path / f"{name}_off" / "scores.csv"))

    # other aligner and fusion: every image of both stages is a hit, nothing recomputed
    cache = job("other", ["aligner=nearest", "fusion=gated"])
    assert cache.stats["features"]["hits"] == n_images and cache.stats["segments"]["hits"] == maps * n_images
    assert stage_misses(cache) == 0 and cache.stats["scores"]["hits"] == 0  # another aligner: rescored
    assert seen["backbone_images"] == 2 * n_images and seen["segmenter_images"] == 2 * n_images
    assert_same_as_uncached("other", ["aligner=nearest", "fusion=gated"])

    # only the fusion differs: the scores themselves are read back, the fused score is new
    cache = job("fusion_only", ["fusion=gated"])
    assert cache.stats["scores"]["hits"] == 1 + 9 and cache.misses == 0
    assert_same_as_uncached("fusion_only", ["fusion=gated"])

    # another segmenter setting: the segments miss (invalidated), the features still hit
    cfg = compose_cfg(base + ["segmenter.scale=150"], tmp_path / "seg")
    run(cfg)
    cache = seen["caches"][-1]
    assert cache.stats["segments"]["misses"] == maps * n_images and cache.stats["features"]["hits"] == n_images

    # a size limit: the run still completes from the cache, then trims it to the limit
    stages = tmp_path / ".cache" / "stages"
    assert len([p for p in stages.rglob("*") if p.is_file()]) > 3 * n_images
    cache = job("limited", ["model.cache.max_gb=1e-9"])
    assert cache.stats["features"]["hits"] == n_images
    assert [p for p in stages.rglob("*") if p.is_file()] == []


def test_scores_stage_keys_on_fit_features_and_code(loco_root, tmp_path, monkeypatch):
    """Stored scores are reused only by a fit with the same shots, aligner, features and code."""
    from locoad.aligners.hungarian import HungarianAligner
    from locoad.backbones.handcrafted import HandcraftedBackbone
    from locoad.data.datamodule import LocoDataModule
    from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
    from locoad.features.class_histogram import ClassHistogramScore
    from locoad.fusion.loo import LeaveOneOutSum
    from locoad.fusion.simple import MaxNormalised
    from locoad.models.seven_feature import stored, torch_model
    from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter

    dm = LocoDataModule(str(loco_root), "widgets", k_shot=3, image_size=112)
    dm.setup()
    images = next(iter(dm.train_dataloader()))["image"]
    cache = StageCache(tmp_path / "stages")

    def scored(top_percent=2.0, fusion=None):
        feats = {"class_agnostic_patch": ClassAgnosticPatchScore(top_percent=top_percent), "class_histogram": ClassHistogramScore()}
        m = torch_model.SevenFeatureModel(FelzenszwalbSegmenter(work_size=64), HungarianAligner(), HandcraftedBackbone(image_size=112),
                                          feats, fusion or LeaveOneOutSum(), work_size=64)
        scorer = stored.StoredScores(m, cache)
        enc = m.encode(images)
        cache.reset_stats()
        scorer.fit(enc[:2])
        return scorer.score(enc[2:])[0], dict(cache.stats["scores"])

    first, st = scored()
    assert st["hits"] == 0 and st["writes"] == 2  # leave-one-out + one test image
    again, st = scored(fusion=MaxNormalised())
    assert st["hits"] == 2 and st["misses"] == 0
    assert all(np.array_equal(first[n], again[n]) for n in first)
    _, st = scored(top_percent=5.0)
    assert st["hits"] == 0
    monkeypatch.setattr(stored, "code_fingerprint", lambda: "edited")
    _, st = scored()
    assert st["hits"] == 0


# -- size limit -------------------------------------------------------------------------------


def _age(paths, seconds_ago: float) -> None:
    import os
    import time

    t = time.time() - seconds_ago
    for p in paths:
        os.utime(p, (t, t))


def test_prune_deletes_least_recently_used_first(tmp_path):
    cache = StageCache(tmp_path)
    bb = HandcraftedBackbone(image_size=56, patch_size=14)
    imgs = _images(4)
    cache.features(bb, imgs)
    entries = sorted(tmp_path.glob("features/*/??/*.pt"))
    size = entries[0].stat().st_size
    for i, p in enumerate(entries):  # entry i was last used i+1 hours ago... then one is read again
        _age([p], 3600 * (i + 1))
    oldest = entries[-1]
    key = oldest.stem
    d = oldest.parent.parent
    assert cache.get("features", d, key) is not None  # a hit makes the oldest the newest
    config_size = (d / "config.json").stat().st_size
    budget_gb = (2.5 * size + config_size) / 1e9
    deleted, freed = StageCache(tmp_path, max_gb=budget_gb).prune()
    left = sorted(tmp_path.glob("features/*/??/*.pt"))
    assert deleted == 2 and freed == 2 * size
    assert oldest in left and entries[0] in left  # the re-read one and the most recent survive
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) <= budget_gb * 1e9
    assert StageCache(tmp_path).prune() == (0, 0)  # no limit set: nothing happens


def test_prune_clears_stale_temp_files_and_empty_config_dirs(tmp_path):
    cache = StageCache(tmp_path)
    cache.segments(FelzenszwalbSegmenter(work_size=64), _rgb())
    cfg_dir = next(tmp_path.glob("segments/*"))
    stale = cfg_dir / "ab" / ".x.npy.tmp"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half-written by a killed job")
    fresh = cfg_dir / "ab" / ".y.npy.tmp"
    fresh.write_bytes(b"being written right now")
    _age([stale], 7200)
    cache.prune(max_gb=1.0)  # everything fits: only the stale temp file goes
    assert not stale.exists() and fresh.exists() and len(list(cfg_dir.glob("??/*.npy"))) == 1
    fresh.unlink()
    cache.prune(max_gb=1e-9)  # nothing fits: entries go, then the empty config folder
    assert not cfg_dir.exists()
    cache.segments(FelzenszwalbSegmenter(work_size=64), _rgb())  # and the cache still works
    assert (next(tmp_path.glob("segments/*")) / "config.json").is_file()


def test_max_gb_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="model.cache.max_gb must be a positive"):
        StageCache(tmp_path, max_gb=0)


@pytest.mark.parametrize("size", ["0", "-1", "nan", "inf"])  # inf failed converting to bytes
def test_cache_cli_refuses_a_size_that_is_not_positive_and_deletes_nothing(tmp_path, capsys, size):
    from locoad.cache_cli import main

    StageCache(tmp_path).segments(FelzenszwalbSegmenter(work_size=64), _rgb())
    with pytest.raises(SystemExit) as exc:
        main(["--root", str(tmp_path), "prune", "--max-gb", size])
    assert exc.value.code == 2
    assert "--max-gb must be a positive, finite size in GB" in capsys.readouterr().err  # the flag, not the config key
    assert sum(StageCache(tmp_path).usage().values()) > 0


def test_cache_cli_info_prune_clear(tmp_path, capsys):
    from locoad.cache_cli import main

    cache = StageCache(tmp_path)
    cache.features(HandcraftedBackbone(image_size=56, patch_size=14), _images(3))
    cache.segments(FelzenszwalbSegmenter(work_size=64), _rgb())
    assert main(["--root", str(tmp_path), "info"]) == 0
    out = capsys.readouterr().out
    assert "HandcraftedBackbone" in out and "FelzenszwalbSegmenter" in out and "total: 4 entries" in out
    assert main(["--root", str(tmp_path), "prune", "--max-gb", "1e-9"]) == 0
    assert "deleted 4 files" in capsys.readouterr().out
    cache.segments(FelzenszwalbSegmenter(work_size=64), _rgb())
    assert main(["--root", str(tmp_path), "clear", "--stage", "segments"]) == 0
    assert not (tmp_path / "segments").exists()
    with pytest.raises(SystemExit) as exc:
        main(["--root", str(tmp_path / "nowhere"), "info"])
    assert exc.value.code == 1
    assert "no cache at" in capsys.readouterr().err


def _run_through(cache: StageCache, caplog) -> None:
    """Three images' features and one label map through ``cache``, warnings captured; the
    features must be what the backbone computes, stored or not."""
    bb = HandcraftedBackbone(image_size=56, patch_size=14)
    imgs = _images(3)
    with caplog.at_level("WARNING", logger="locoad.cache"):
        out = cache.features(bb, imgs)
        cache.segments(FelzenszwalbSegmenter(work_size=64), _rgb())
    torch.testing.assert_close(out, bb(imgs), rtol=0, atol=0)


def test_unwritable_cache_warns_once_and_runs_on(tmp_path, caplog):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")  # root cannot be created, even as root
    cache = StageCache(blocker / "stages")
    _run_through(cache, caplog)
    assert cache.stats["features"]["write_errors"] >= 3 and cache.stats["features"]["writes"] == 0
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
    assert "write errors" in cache.summary()


def test_nearly_full_disk_stops_writes_not_the_run(tmp_path, caplog, monkeypatch):
    """Below ``min_free_gb`` free, entries are computed and returned but not stored (one warning
    naming the setting); with room again, writes resume."""
    from locoad.cache import disk

    free = {"bytes": int(1.5e9)}
    monkeypatch.setattr(disk, "free_bytes", lambda path: free["bytes"])
    cache = StageCache(tmp_path, min_free_gb=2)
    _run_through(cache, caplog)
    assert not list(tmp_path.glob("*/*/??/*"))
    assert cache.stats["features"]["skipped_low_disk"] == 3 and cache.stats["segments"]["skipped_low_disk"] == 1
    warnings = [r.getMessage() for r in caplog.records if "min_free_gb" in r.getMessage()]
    assert len(warnings) == 1 and "1.50 GB free" in warnings[0]
    assert "skipped low disk" in cache.summary()
    free["bytes"] = int(3e9)
    cache.features(HandcraftedBackbone(image_size=56, patch_size=14), _images(3))
    assert len(list(tmp_path.glob("features/*/??/*.pt"))) == 3


def test_free_bytes_reads_the_nearest_existing_folder(tmp_path):
    from locoad.cache import disk

    assert disk.free_bytes(tmp_path / "not" / "yet" / "made") == disk.free_bytes(tmp_path) > 0


def test_min_free_gb_must_be_a_size(tmp_path):
    with pytest.raises(ValueError, match="min_free_gb"):
        StageCache(tmp_path, min_free_gb=-1)


# -- several sweep jobs filling one cache at once ------------------------------------------------


def _entries(root) -> dict:
    """Every file under a cache root, decoded, by its path relative to the root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        stage = p.relative_to(root).parts[0]
        if p.name == "config.json":
            out[str(p.relative_to(root))] = json.loads(p.read_text())
        else:
            v = StageCache._read(stage, p)  # raises on an unreadable entry
            out[str(p.relative_to(root))] = {k: np.asarray(x) for k, x in v.items()} if stage == "scores" else np.asarray(v)
    return out


N_JOBS = 3


def test_concurrent_jobs_fill_one_cache_as_a_serial_run_does(tmp_path):
    """Several processes (sweep jobs on several nodes) fill the same entries at once: every entry
    is readable, the entries are exactly those of a serial run with the same values, and every
    job got the values a serial run computes."""
    serial = stage_run(str(tmp_path / "serial"))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_JOBS)
    results = [tmp_path / f"job{j}.npz" for j in range(N_JOBS)]
    procs = [ctx.Process(target=stage_job, args=(str(tmp_path / "shared"), barrier, str(r))) for r in results]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    for r in results:
        with np.load(r) as got:
            assert set(got.files) == set(serial)
            for k, v in serial.items():
                np.testing.assert_array_equal(got[k], v, err_msg=k)

    shared, alone = _entries(tmp_path / "shared"), _entries(tmp_path / "serial")
    assert set(shared) == set(alone)  # no entry duplicated under another name, none missing
    assert len([k for k in alone if not k.endswith("config.json")]) == ROUNDS * 3 * N_IMAGES
    for k, v in alone.items():
        if isinstance(v, dict) and "score" in v:
            assert set(shared[k]) == set(v) and all(np.array_equal(shared[k][n], v[n]) for n in v), k
        elif isinstance(v, np.ndarray):
            np.testing.assert_array_equal(shared[k], v, err_msg=k)
        else:
            assert shared[k] == v, k
    assert not list((tmp_path / "shared").rglob("*.tmp"))  # no temp file left behind


def test_the_default_cache_is_bounded(tmp_path):
    """Unbounded, a sweep's cache fills the disk; the default prunes to a finite size."""
    from hydra.utils import instantiate

    cache = instantiate(compose_cfg([], tmp_path).model.cache)
    assert cache.max_gb is not None and 0 < cache.max_gb < float("inf")
    assert cache.min_free_gb is not None and cache.min_free_gb > 0  # and it stops writing before the disk is full


def _feature_dirs(cache: StageCache, backbone, images: torch.Tensor) -> set[str]:
    cache.features(backbone, images)
    return {p.parent.name for p in cache.root.glob("features/*/config.json")}


def test_features_are_keyed_by_their_stored_dtype_and_the_precision_they_ran_at(tmp_path):
    """A float16 store and a bf16-mixed run (Lightning autocasts on the CPU too) wrote rounded
    features under the key float32 runs read from."""
    bb, x = HandcraftedBackbone(image_size=56, patch_size=14), _images()
    plain = _feature_dirs(StageCache(tmp_path / "a", min_free_gb=None), bb, x)
    half = _feature_dirs(StageCache(tmp_path / "a", feature_dtype="float16", min_free_gb=None), bb, x)
    cache = StageCache(tmp_path / "a", min_free_gb=None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = _feature_dirs(cache, bb, x)
    assert len(plain) == 1 and len(half) == 2 and len(mixed) == 3
    assert cache.stats["features"]["hits"] == 0


def test_a_float16_store_gives_the_same_features_on_a_miss_and_a_hit(tmp_path):
    """A miss returned the backbone's float32 features and stored float16 ones, so a first run and
    its rerun (or a checkpoint reloaded on a warm cache) scored different features."""
    bb, x = HandcraftedBackbone(image_size=56, patch_size=14), _images()
    cache = StageCache(tmp_path / "a", feature_dtype="float16", min_free_gb=None)
    first, again = cache.features(bb, x), cache.features(bb, x)
    assert cache.stats["features"]["hits"] == len(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, bb(x))  # rounded: the store is float16


def test_keys_see_the_contents_of_omegaconf_containers():
    """A DictConfig is no dict: its values were left out of the key (two aligners with other
    weights shared stored scores) where a component is instantiated without _convert_."""
    from omegaconf import DictConfig

    from locoad.aligners.hungarian import HungarianAligner
    from locoad.cache.fingerprint import component_key

    a, b = (HungarianAligner(weights=DictConfig({"colour": w})) for w in (1.0, 9.0))
    assert fingerprint(component_key(a)) != fingerprint(component_key(b))
    assert fingerprint(component_key(a)) == fingerprint(component_key(HungarianAligner(weights={"colour": 1.0})))


def test_keys_see_settings_held_one_object_down_and_cnn_stages(tmp_path):
    """Composition keeps its colour settings in a ColourKinds object and its capture jitter in a
    callable dataclass, which the key reduced to their type names; a CNN's stages (layers) were
    not kept, so two stage sets of equal width shared stored features."""
    from locoad.backbones.cnn import TimmCNNBackbone
    from locoad.cache.fingerprint import component_key
    from locoad.features.composition import CompositionScore

    def key(f):
        return fingerprint(component_key(f))

    assert key(CompositionScore()) == key(CompositionScore())
    assert key(CompositionScore()) != key(CompositionScore(white_balance="none"))
    assert key(CompositionScore(dark_chroma=30.0)) != key(CompositionScore())
    assert key(CompositionScore(capture_copies=2)) != key(CompositionScore(capture_copies=2, capture_jitter={"rotation": 1.0}))
    torch.manual_seed(0)
    a = TimmCNNBackbone("resnet18", layers=[2, 3], pretrained=False, image_size=64, patch_size=8)
    torch.manual_seed(0)
    b = TimmCNNBackbone("resnet18", layers=[0, 1, 3], pretrained=False, image_size=64, patch_size=8)
    assert a.embed_dim == b.embed_dim == 384  # 128 + 256 = 64 + 64 + 256: the width cannot tell them apart
    assert fingerprint(backbone_key(a)) != fingerprint(backbone_key(b))


def test_stored_scores_are_keyed_by_the_capture_s_aspect_too():
    """Two encodings of one squeezed image from captures of other shapes shared a scores key."""
    from locoad.models.seven_feature.stored import encoded_key
    from locoad.models.seven_feature.torch_model import Encoded

    rgb, seg, feats = _rgb(), np.zeros((64, 64), np.int32), torch.zeros(4, 3, 3)
    assert encoded_key(Encoded(rgb, seg, feats, aspect=1.0)) == encoded_key(Encoded(rgb, seg, feats, aspect=1.0))
    assert encoded_key(Encoded(rgb, seg, feats, aspect=1.0)) != encoded_key(Encoded(rgb, seg, feats, aspect=0.6875))


def test_prune_counts_a_file_another_job_removed_first_as_freed(tmp_path, monkeypatch):
    """Two jobs pruning one cache: a file the other removed first was not counted as freed, so
    this job went on deleting newer entries for space that was already free."""
    from pathlib import Path

    from locoad.cache.disk import prune_lru

    d = tmp_path / "features" / "cfg" / "ab"
    d.mkdir(parents=True)
    files = []
    for i in range(4):
        f = d / f"ab{i}.pt"
        f.write_bytes(b"x" * 1000)
        files.append(f)
    for i, f in enumerate(files):
        _age([f], 400 - 100 * i)  # ab0 the oldest
    unlink = Path.unlink

    def raced(self, *args, **kwargs):
        if self.name == "ab0.pt":  # the other job got there first
            unlink(self)
            raise FileNotFoundError(self)
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", raced)
    prune_lru(tmp_path, 3000 / 1e9)
    assert sorted(p.name for p in d.iterdir()) == ["ab1.pt", "ab2.pt", "ab3.pt"]


def test_an_entry_written_while_empty_folders_are_removed_stays(tmp_path, monkeypatch):
    """Another job may write into a config folder between the check that it holds no entry and its
    removal: that entry (and the folder holding it) must stay."""
    from locoad.cache import disk

    cfg = tmp_path / "features" / "abc"
    (cfg / "ab").mkdir(parents=True)
    (cfg / "config.json").write_text("{}")
    entry = cfg / "ab" / "entry.pt"
    entry.write_bytes(b"x")
    real = disk.files
    monkeypatch.setattr(disk, "files", lambda root: (p for p in real(root) if p != entry))  # the check saw no entry
    disk.remove_empty_config_dirs(tmp_path)
    assert entry.is_file() and (cfg / "config.json").is_file()  # the entry and its description
    (cfg / "ab" / "entry.pt").unlink()
    disk.remove_empty_config_dirs(tmp_path)  # now empty: removed
    assert not cfg.exists()
