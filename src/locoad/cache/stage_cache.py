"""The stage cache: per-image backbone features, segmentation label maps and feature scores on disk.

Every job of a sweep that differs only in aligner, features or fusion computes the expensive
stages once; a change of segmenter or backbone settings (or weights) invalidates the entries
(keys: :mod:`locoad.cache.fingerprint`; layout and pruning: :mod:`locoad.cache.disk`).
``features`` and ``segments`` are separate stages, so a sweep over segmenters reuses the
features and a sweep over backbones reuses the label maps.

Safe under parallel jobs: every file is written to a temporary file in its own folder and
renamed over the target (:func:`locoad.io.atomic_write_bytes`), so readers see the old file or
the new one, never a partial one; two jobs writing the same entry both write valid files and
the last rename wins. An unreadable, truncated or malformed entry is a miss (recomputed and
overwritten), never a crash, and a failed write only logs a warning.

Size: features are (D, 37, 37) float32 per image (2 MB at ViT-S/14, 8 MB at ViT-G/14), so a
backbone sweep over full LOCO reaches tens of GB. ``max_gb`` bounds it: after each run the least
recently used entries are deleted until the cache fits. ``min_free_gb`` guards the disk during a
run: no entry is written that would leave less free space than that (a sweep otherwise fills a
disk before its end-of-run prune). ``locoad-cache info|prune|clear`` does the same by hand.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from locoad.cache import disk, stats
from locoad.cache.fingerprint import (
    backbone_key,
    content_hash,
    fingerprint,
    image_hashes,
    segmenter_key,
)
from locoad.errors import ConfigError
from locoad.io import atomic_write_bytes

log = logging.getLogger(__name__)


def _atomic_write(path: Path, data: bytes) -> None:
    """No fsync: a cache entry truncated by a power cut is just a miss."""
    atomic_write_bytes(path, data, fsync=False)


class StageCache:
    """Per-image stage outputs on disk. ``root=None`` or ``enabled=False`` turns it off (nothing
    is read or written). ``feature_dtype="float16"`` halves the feature files (loads as fp32;
    results then differ slightly from an uncached run). ``scores`` also stores each test
    image's feature scores under the fitted model's key (shots, aligner, features and the
    code), so jobs that differ only in the fusion rule skip scoring. ``max_gb`` (None: no
    limit) is enforced by :meth:`prune`, which the entry point calls after every run;
    ``min_free_gb`` (None: no check) skips any write that would leave less free disk than that."""

    def __init__(
        self,
        root: str | os.PathLike | None,
        enabled: bool = True,
        feature_dtype: str = "float32",
        scores: bool = True,
        max_gb: float | None = None,
        min_free_gb: float | None = None,
    ):
        if feature_dtype not in ("float32", "float16"):
            raise ConfigError(f"feature_dtype must be float32 or float16, got {feature_dtype!r}")
        if max_gb is not None and not max_gb > 0:
            raise ConfigError(f"model.cache.max_gb must be a positive size in GB or null (no limit), got {max_gb!r}")
        if min_free_gb is not None and not min_free_gb >= 0:
            raise ConfigError(f"model.cache.min_free_gb must be a size in GB >= 0 or null (no check), got {min_free_gb!r}")
        self.max_gb = max_gb
        self.min_free_gb = min_free_gb
        self.root = Path(root).expanduser() if root else None
        self.enabled = bool(enabled) and self.root is not None
        self.feature_dtype = feature_dtype
        self.scores = bool(scores)
        self.stats = stats.new_stats(disk.STAGES)
        self._config_dirs: set[str] = set()
        self._warned_write = False
        self._warned_disk = False
        self._last_summary = ""
        stats.track(self)

    def __repr__(self) -> str:
        return f"StageCache(root={str(self.root)!r}, enabled={self.enabled})"

    # counters -----------------------------------------------------------------------------
    @property
    def hits(self) -> int:
        return sum(s["hits"] for s in self.stats.values())

    @property
    def misses(self) -> int:
        return sum(s["misses"] for s in self.stats.values())

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    def reset_stats(self) -> None:
        for s in self.stats.values():
            for k in s:
                s[k] = 0

    def summary(self) -> str:
        return stats.summary_line(self.stats, self.root if self.enabled else "disabled")

    def log_summary(self, level: int = logging.INFO) -> str:
        line = self.summary()
        log.log(level, line)
        self._last_summary = line
        return line

    # paths -------------------------------------------------------------------------------
    def config_dir(self, stage: str, key: dict) -> Path:
        """``<root>/<stage>/<config-hash>``; writes its ``config.json`` on first use."""
        assert self.root is not None
        d = self.root / stage / fingerprint(key)
        if str(d) not in self._config_dirs:
            cfg = d / "config.json"
            if not cfg.is_file():
                try:
                    _atomic_write(cfg, (json.dumps({"stage": stage, **key}, indent=2, sort_keys=True) + "\n").encode())
                except OSError as err:
                    self._write_failed(stage, cfg, err)
            self._config_dirs.add(str(d))
        return d

    def entry_path(self, stage: str, config_dir: Path, image_key: str) -> Path:
        return disk.entry_path(stage, config_dir, image_key)

    # raw get / put -------------------------------------------------------------------------
    def get(self, stage: str, config_dir: Path, image_key: str, check: Callable[[Any], bool] | None = None) -> Any:
        """The stored value, or None (a miss) if absent, unreadable or failing ``check``."""
        if not self.enabled:
            return None
        path = self.entry_path(stage, config_dir, image_key)
        value = None
        if path.is_file():
            try:
                value = self._read(stage, path)
                if check is not None and not check(value):
                    raise ValueError("unexpected shape or dtype")
                disk.touch(path)
            except FileNotFoundError:  # pruned by another job between the check and the read
                value = None
            except Exception as err:  # truncated zip, bad npy header, wrong content: a miss
                log.warning("stage cache: ignoring unreadable entry %s (%s: %s)", path, type(err).__name__, err)
                self.stats[stage]["corrupt"] += 1
                value = None
        self.stats[stage]["hits" if value is not None else "misses"] += 1
        return value

    def put(self, stage: str, config_dir: Path, image_key: str, value: Any) -> None:
        if not self.enabled:
            return
        path = self.entry_path(stage, config_dir, image_key)
        data = self._encode(stage, value)
        if not self._room_for(stage, len(data)):
            return
        try:
            _atomic_write(path, data)
            self.stats[stage]["writes"] += 1
        except OSError as err:
            self._write_failed(stage, path, err)

    def _room_for(self, stage: str, nbytes: int) -> bool:
        """Whether writing ``nbytes`` leaves at least ``min_free_gb`` free; warns once when not."""
        if self.min_free_gb is None:
            return True
        free = disk.free_bytes(self.root)
        if free is None or free - nbytes >= self.min_free_gb * 1e9:
            return True
        self.stats[stage]["skipped_low_disk"] += 1
        if not self._warned_disk:
            log.warning("stage cache: only %.2f GB free under %s, below model.cache.min_free_gb=%g; going on "
                        "without storing (free space, run `locoad-cache --root %s prune --max-gb N`, or lower "
                        "model.cache.min_free_gb)", free / 1e9, self.root, self.min_free_gb, self.root)
            self._warned_disk = True
        return False

    def _write_failed(self, stage: str, path: Path, err: OSError) -> None:
        self.stats[stage]["write_errors"] += 1
        if not self._warned_write:
            log.warning("stage cache: cannot write %s (%s); going on without storing", path, err)
            self._warned_write = True

    def _encode(self, stage: str, value: Any) -> bytes:
        buf = io.BytesIO()
        if stage == "features":
            t = value.detach().to("cpu", torch.float16 if self.feature_dtype == "float16" else torch.float32)
            torch.save(t.contiguous().clone(), buf)
        elif stage == "scores":
            np.savez(buf, **{k: np.asarray(v) for k, v in value.items()})  # ascontiguousarray makes 0-d 1-d
        else:
            np.save(buf, np.ascontiguousarray(value), allow_pickle=False)
        return buf.getvalue()

    @staticmethod
    def _read(stage: str, path: Path) -> Any:
        if stage == "features":
            t = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"not a tensor: {type(t).__name__}")
            return t.float()
        if stage == "scores":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        return np.load(path, allow_pickle=False)

    # size ----------------------------------------------------------------------------------
    def usage(self) -> dict[str, int]:
        """Bytes on disk per stage (entries and their config files)."""
        return disk.usage(self.root)

    def prune(self, max_gb: float | None = None) -> tuple[int, int]:
        """Delete least recently used entries until the cache holds at most ``max_gb`` (default:
        the cache's own ``max_gb``; nothing happens when both are None); see
        :func:`locoad.cache.disk.prune_lru`. Returns (files deleted, bytes freed)."""
        limit = self.max_gb if max_gb is None else max_gb
        if self.root is None or limit is None or not self.root.is_dir():
            return 0, 0
        deleted, freed = disk.prune_lru(self.root, limit)
        if deleted:
            self._config_dirs.clear()  # a folder removed there gets its config.json again on reuse
        return deleted, freed

    # the stages ---------------------------------------------------------------------------
    def features(self, backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """``backbone(images)`` with cached rows; the backbone runs once, batched, on the misses."""
        if not self.enabled:
            return backbone(images)
        # What else moves the stored values: their storage dtype, and the precision the backbone
        # runs at (Lightning's mixed precision autocasts on the CPU too; a bf16 backbone runs
        # reduced only on CUDA).
        device = images.device.type
        autocast = torch.is_autocast_enabled(device) if device in ("cpu", "cuda") else False
        d = self.config_dir("features", {
            **backbone_key(backbone), "stored_dtype": self.feature_dtype, "device_type": device,
            "autocast": str(torch.get_autocast_dtype(device)) if autocast else None})
        keys = image_hashes(images)
        grid = getattr(backbone, "grid_size", None)

        def ok(t: torch.Tensor) -> bool:
            return t.ndim == 3 and (grid is None or tuple(t.shape[-2:]) == (grid, grid))

        out: list[torch.Tensor | None] = [self.get("features", d, k, ok) for k in keys]
        miss = [i for i, t in enumerate(out) if t is None]
        if miss:
            computed = backbone(images if len(miss) == len(keys) else images[miss])
            for i, f in zip(miss, computed):
                if self.enabled and self.feature_dtype == "float16":
                    # as a later hit will read it: else the first run and every rerun differ
                    f = f.to(torch.float16).to(f.dtype)
                out[i] = f
                self.put("features", d, keys[i], f)
            device = computed.device
        else:
            device = images.device
        return torch.stack([t.to(device) for t in out])  # type: ignore[union-attr]

    def segments(self, segmenter: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray) -> np.ndarray:
        """``segmenter(rgb)`` for one (S, S, 3) uint8 image, from the cache when possible."""
        if not self.enabled:
            return segmenter(rgb)
        d = self.config_dir("segments", segmenter_key(segmenter))
        key = content_hash(rgb)
        seg = self.get("segments", d, key, lambda a: a.shape == rgb.shape[:2] and a.dtype.kind in "iu")
        if seg is None:
            seg = segmenter(rgb)
            self.put("segments", d, key, seg)
        return seg
