"""The cache on disk: where an entry lives, how much space it takes, least-recently-used pruning.

Layout (``root`` is ``${paths.cache_dir}/stages`` by default)::

    <root>/<stage>/<config-hash>/config.json            what produced the entries below
    <root>/<stage>/<config-hash>/<ab>/<image-hash>.pt   features: fp32 (D, h, w) tensor
    <root>/<stage>/<config-hash>/<ab>/<image-hash>.npy  segments: (S, S) int32 label map
    <root>/<stage>/<config-hash>/<ab>/<key>.npz         scores: one test image's feature scores

``<ab>`` is the first two hex digits of the key (keeps folders small). A hit refreshes an
entry's mtime, so the mtime orders eviction.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

STAGES = ("features", "segments", "scores")
EXT = {"features": ".pt", "segments": ".npy", "scores": ".npz"}
STALE_TMP_SECONDS = 3600  # a temporary file this old was left by a killed writer


def entry_path(stage: str, config_dir: Path, key: str) -> Path:
    return config_dir / key[:2] / f"{key}{EXT[stage]}"


def touch(path: Path) -> None:
    """Mark an entry as used; a read-only cache just skips it."""
    try:
        os.utime(path)
    except OSError:
        pass


def files(root: Path):
    for dirpath, _, names in os.walk(root):
        for name in names:
            yield Path(dirpath) / name


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def free_bytes(path: Path) -> int | None:
    """Free bytes on the file system that holds ``path`` (its nearest existing folder), or None
    where that cannot be read."""
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def usage(root: Path | None) -> dict[str, int]:
    """Bytes on disk per stage (entries and their config files)."""
    out = dict.fromkeys(STAGES, 0)
    if root is not None:
        for stage in STAGES:
            out[stage] = sum(size(p) for p in files(root / stage))
    return out


def remove_empty_config_dirs(root: Path) -> None:
    """Remove ``<stage>/<config-hash>`` folders that hold no entry any more (their config.json
    and empty ``<ab>`` folders included)."""
    for stage_dir in (root / s for s in STAGES):
        if not stage_dir.is_dir():
            continue
        for cfg_dir in stage_dir.iterdir():
            if not cfg_dir.is_dir() or any(p.name != "config.json" for p in files(cfg_dir)):
                continue
            # Empty <ab> folders first; an entry another job wrote since the check keeps its
            # folder (rmdir fails) and the description beside it.
            for dirpath, _, _ in os.walk(cfg_dir, topdown=False):
                if Path(dirpath) != cfg_dir:
                    _rmdir(dirpath)
            if [p.name for p in cfg_dir.iterdir()] == ["config.json"]:
                (cfg_dir / "config.json").unlink(missing_ok=True)
                _rmdir(cfg_dir)


def _rmdir(path: str | Path) -> None:
    try:
        os.rmdir(path)
    except OSError:  # not empty (a job wrote into it meanwhile) or gone: keep it
        pass


def prune_lru(root: Path, max_gb: float) -> tuple[int, int]:
    """Delete least recently used entries under ``root`` until it holds at most ``max_gb``; also
    temporary files left by killed writers and config folders left empty. Safe while other jobs
    use the cache: a reader that loses an entry sees a miss. Returns (files deleted, bytes freed)."""
    entries, stale, total = [], [], 0
    now = time.time()
    for path in files(root):
        try:
            st = path.stat()
        except OSError:
            continue
        total += st.st_size
        if path.name.endswith(".tmp"):
            if now - st.st_mtime > STALE_TMP_SECONDS:
                stale.append((st.st_mtime, st.st_size, path))
        elif path.name != "config.json":
            entries.append((st.st_mtime, st.st_size, path))
    budget = int(max_gb * 1e9)
    deleted = freed = 0
    for _, nbytes, path in stale + sorted(entries, key=lambda e: e[0]):
        if total - freed <= budget and not path.name.endswith(".tmp"):
            break
        try:
            path.unlink()
        except FileNotFoundError:  # another job pruned it first: its space is free all the same
            freed += nbytes
            continue
        except OSError:
            continue
        deleted, freed = deleted + 1, freed + nbytes
    if deleted:
        remove_empty_config_dirs(root)
        log.info("stage cache: pruned %d files (%.2f GB) to stay within %.2f GB (%s)",
                 deleted, freed / 1e9, max_gb, root)
    return deleted, freed
