"""The on-disk stage cache: per-image backbone features and segmentation label maps.

Keyed by the image's content and exactly the configuration that produced the output, so every
job of a sweep that differs only in aligner, features or fusion computes the expensive stages
once, and a change of segmenter or backbone settings (or weights) invalidates the entries.

Layout (``root`` is ``${paths.cache_dir}/stages`` by default)::

    <root>/<stage>/<config-hash>/config.json          what produced the entries below
    <root>/<stage>/<config-hash>/<ab>/<image-hash>.pt  features: fp32 (D, h, w) tensor
    <root>/<stage>/<config-hash>/<ab>/<image-hash>.npy segments: (S, S) int32 label map

``<stage>`` is ``features`` or ``segments``: separate entries, so a sweep over segmenters reuses
the features and a sweep over backbones reuses the label maps. ``<ab>`` is the first two hex
digits of the image hash (keeps folders small).

Safe under parallel jobs: every file is written to a temporary file in its own folder and
renamed over the target (``os.replace``), so readers see the old file or the new one, never a
partial one; two jobs writing the same entry both write valid files and the last rename wins.
An unreadable, truncated or malformed entry is a miss (recomputed and overwritten), never a
crash, and a failed write only logs a warning.

Size: features are (D, 37, 37) float32 per image (2 MB at ViT-S/14, 8 MB at ViT-G/14), so a
backbone sweep over full LOCO reaches tens of GB. ``max_gb`` bounds it: after each run the least
recently used entries (a hit refreshes an entry's mtime) are deleted until the cache fits.
``locoad-cache info|prune|clear`` does the same by hand.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import inspect
import io
import json
import logging
import math
import os
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

# Bump when the code of a stage changes its output for the same configuration (a new
# post-processing rule, a fixed bug): every old entry becomes unreachable.
VERSION = "2"  # 2: CIELAB in torch (locoad.colour), within 1e-4 of scikit-image
STAGES = ("features", "segments", "scores")
_EXT = {"features": ".pt", "segments": ".npy", "scores": ".npz"}
# Keys whose string value, when it names an existing file, is replaced by path + size + mtime.
_FILE_KEYS = ("checkpoint", "ckpt", "weights", "path", "file")
# Backbones with more parameters than this are fingerprinted from a sample of every tensor.
_FULL_HASH_MAX_NUMEL = 32_000_000
_SAMPLE = 512


# -- fingerprints ------------------------------------------------------------------------------


def _file_info(path: str) -> dict | str:
    try:
        st = os.stat(path)
    except OSError:
        return path
    if not os.path.isfile(path):
        return path
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def jsonable(value: Any, key: str = "") -> Any:
    """A stable, JSON-serialisable description of ``value`` (no memory addresses)."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        if any(k in key.lower() for k in _FILE_KEYS):
            return _file_info(value)
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return jsonable(value.item(), key)
    if isinstance(value, Path):
        return jsonable(str(value), key)
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v, str(k)) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v, key) for v in items]
    if isinstance(value, nn.Module):
        return {"module": _qualname(value), "weights": weights_fingerprint(value)}
    if isinstance(value, (np.ndarray, torch.Tensor)):
        arr = _as_numpy(value)
        return {"array": content_hash(arr), "shape": list(arr.shape), "dtype": arr.dtype.str}
    return f"<{_qualname(value)}>"  # an object whose state we cannot describe: its type only


def _qualname(obj: Any) -> str:
    t = obj if isinstance(obj, type) else type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _as_numpy(a: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach()
        if a.dtype == torch.bfloat16:
            a = a.float()
        a = a.cpu().numpy()
    return np.ascontiguousarray(a)


def content_hash(a: np.ndarray | torch.Tensor) -> str:
    """sha256 of an array's bytes, dtype and shape."""
    arr = _as_numpy(a)
    h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def image_hash(image: np.ndarray | torch.Tensor) -> str:
    """Content hash of one image; see :func:`image_hashes`."""
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        return image_hashes(image[None])[0]
    return content_hash(image)


def image_hashes(images: torch.Tensor) -> list[str]:
    """Content hashes of a (B, 3, H, W) float batch. An image in [0, 1] that is exactly a uint8
    image divided by 255 (what the data module yields) is hashed as those uint8 bytes; any other
    image by its float32 bytes, so two different inputs never share a key."""
    x = images.detach().float().cpu()
    k = x.mul(255).round_()
    flat = k.flatten(1)
    exact = (k.div(255) == x).flatten(1).all(1) & (flat.amin(1) >= 0) & (flat.amax(1) <= 255)
    u8 = k.to(torch.uint8)
    return [content_hash(u8[i] if bool(exact[i]) else x[i]) for i in range(len(x))]


_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weights_fingerprint(module: nn.Module) -> str:
    """Hash of every parameter and buffer (name, shape, dtype, values). Modules over
    ``_FULL_HASH_MAX_NUMEL`` values are hashed from ``_SAMPLE`` evenly strided values per tensor
    (any real change of weights, random init or a checkpoint, changes them). Memoised per module."""
    if module in _WEIGHTS:
        return _WEIGHTS[module]
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    full = sum(t.numel() for _, t in tensors) <= _FULL_HASH_MAX_NUMEL
    h = hashlib.sha256(b"full" if full else b"sampled")
    for name, t in tensors:
        t = t.detach()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        flat = t.reshape(-1)
        if not full and flat.numel() > _SAMPLE:
            flat = flat[:: max(1, flat.numel() // _SAMPLE)][:_SAMPLE]
        arr = _as_numpy(flat)
        h.update(memoryview(arr).cast("B"))
    fp = h.hexdigest()
    _WEIGHTS[module] = fp
    return fp


def segmenter_key(segmenter: Any) -> dict:
    """What determines a segmenter's label maps: its ``cache_key()`` (or its public attributes)."""
    key = segmenter.cache_key() if callable(getattr(segmenter, "cache_key", None)) else _public_state(segmenter)
    return {"class": _qualname(segmenter), "key": jsonable(key), "version": VERSION}


def backbone_key(backbone: nn.Module) -> dict:
    """What determines a backbone's features: its class, the init arguments it keeps as
    attributes, its input size and grid, and a fingerprint of its weights (covers a checkpoint,
    hub weights, random init and ``model_kwargs`` alike). A backbone may define ``cache_key()``
    to describe itself instead; the weights fingerprint is added either way."""
    if callable(getattr(backbone, "cache_key", None)):
        key = dict(backbone.cache_key())
    else:
        key = _public_state(backbone)
        for name in ("image_size", "patch_size", "normalize", "embed_dim", "grid_size"):
            if hasattr(backbone, name):
                key[name] = getattr(backbone, name)
    key = jsonable(key)
    return {"class": _qualname(backbone), "key": key, "weights": weights_fingerprint(backbone), "version": VERSION}


@functools.cache
def code_fingerprint() -> str:
    """Hash of the locoad package's source. Feature scores are what researchers edit, so the
    ``scores`` stage is keyed by the code too: any edit makes every stored score unreachable."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def component_key(obj: Any) -> dict:
    """What determines a pipeline component's output: its class, public state and the weights
    of every network it holds (built ones included, e.g. an aligner's lazily loaded model)."""
    modules = {k: weights_fingerprint(v) for k, v in sorted(vars(obj).items()) if isinstance(v, nn.Module)}
    return {"class": _qualname(obj), "state": jsonable(_public_state(obj)), "modules": modules}


def _public_state(obj: Any) -> dict:
    """Public, non-module attributes, plus any ``__init__`` argument kept under the same name."""
    state = {k: v for k, v in vars(obj).items() if not k.startswith("_") and k != "training"}
    try:
        params = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        params = {}
    for name in params:
        if name != "self" and name not in state and hasattr(obj, name):
            state[name] = getattr(obj, name)
    return {k: v for k, v in state.items() if not isinstance(v, nn.Module) and not callable(v)}


def fingerprint(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


# -- the cache ---------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, then ``os.replace``. No fsync: a file truncated by a power
    cut is just a miss."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _touch(path: Path) -> None:
    """Mark an entry as used (its mtime orders eviction); a read-only cache just skips it."""
    try:
        os.utime(path)
    except OSError:
        pass


def _files(root: Path):
    for dirpath, _, names in os.walk(root):
        for name in names:
            yield Path(dirpath) / name


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _remove_empty_config_dirs(root: Path) -> None:
    """Remove ``<stage>/<config-hash>`` folders that hold no entry any more (their config.json
    and empty ``<ab>`` folders included)."""
    for stage_dir in (root / s for s in STAGES):
        if not stage_dir.is_dir():
            continue
        for cfg_dir in stage_dir.iterdir():
            if not cfg_dir.is_dir() or any(p.name != "config.json" for p in _files(cfg_dir)):
                continue
            for dirpath, _, names in os.walk(cfg_dir, topdown=False):
                for name in names:
                    Path(dirpath, name).unlink(missing_ok=True)
                try:
                    os.rmdir(dirpath)
                except OSError:  # a job wrote into it meanwhile: keep it
                    pass


_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _log_live_summaries() -> None:
    for cache in list(_LIVE):
        if cache.lookups and cache.summary() != cache._last_summary:  # not already logged as is
            cache.log_summary()


class StageCache:
    """Per-image stage outputs on disk. ``root=None`` or ``enabled=False`` turns it off (nothing
    is read or written). ``feature_dtype="float16"`` halves the feature files (loads as fp32;
    results then differ slightly from an uncached run). ``scores`` also stores each test
    image's feature scores under the fitted model's key (shots, aligner, features and the
    code), so jobs that differ only in the fusion rule skip scoring. ``max_gb`` (None: no
    limit) is enforced by :meth:`prune`, which the entry point calls after every run."""

    def __init__(
        self,
        root: str | os.PathLike | None,
        enabled: bool = True,
        feature_dtype: str = "float32",
        scores: bool = True,
        max_gb: float | None = None,
    ):
        if feature_dtype not in ("float32", "float16"):
            raise ValueError(f"feature_dtype must be float32 or float16, got {feature_dtype!r}")
        if max_gb is not None and not max_gb > 0:
            raise ValueError(f"max_gb must be a positive size in GB or null (no limit), got {max_gb!r}")
        self.max_gb = max_gb
        self.root = Path(root).expanduser() if root else None
        self.enabled = bool(enabled) and self.root is not None
        self.feature_dtype = feature_dtype
        self.scores = bool(scores)
        self.stats = {s: {"hits": 0, "misses": 0, "corrupt": 0, "writes": 0, "write_errors": 0} for s in STAGES}
        self._config_dirs: set[str] = set()
        self._warned_write = False
        self._last_summary = ""
        _LIVE.add(self)

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
        parts = []
        for stage, s in self.stats.items():
            n = s["hits"] + s["misses"]
            extra = "".join(f", {s[k]} {k.replace('_', ' ')}" for k in ("corrupt", "write_errors") if s[k])
            parts.append(f"{stage} {s['hits']}/{n} hits{extra}")
        where = self.root if self.enabled else "disabled"
        return f"stage cache ({where}): " + "; ".join(parts)

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
        return config_dir / image_key[:2] / f"{image_key}{_EXT[stage]}"

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
                _touch(path)
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
        try:
            _atomic_write(path, self._encode(stage, value))
            self.stats[stage]["writes"] += 1
        except OSError as err:
            self._write_failed(stage, path, err)

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
        out = dict.fromkeys(STAGES, 0)
        if self.root is None:
            return out
        for stage in STAGES:
            for path in _files(self.root / stage):
                out[stage] += _size(path)
        return out

    def prune(self, max_gb: float | None = None) -> tuple[int, int]:
        """Delete least recently used entries until the cache holds at most ``max_gb`` (default:
        the cache's own ``max_gb``; nothing happens when both are None). Also removes temporary
        files older than an hour (left by killed writers) and config folders left empty. Safe
        while other jobs use the cache: a reader that loses an entry sees a miss. Returns
        (files deleted, bytes freed)."""
        limit = self.max_gb if max_gb is None else max_gb
        if self.root is None or limit is None or not self.root.is_dir():
            return 0, 0
        entries, stale, total = [], [], 0
        now = time.time()
        for path in _files(self.root):
            try:
                st = path.stat()
            except OSError:
                continue
            total += st.st_size
            if path.name.endswith(".tmp"):
                if now - st.st_mtime > 3600:
                    stale.append((st.st_mtime, st.st_size, path))
            elif path.name != "config.json":
                entries.append((st.st_mtime, st.st_size, path))
        budget = int(limit * 1e9)
        deleted = freed = 0
        for _, size, path in stale + sorted(entries, key=lambda e: e[0]):
            if total - freed <= budget and not path.name.endswith(".tmp"):
                break
            try:
                path.unlink()
            except OSError:
                continue
            deleted, freed = deleted + 1, freed + size
        if deleted:
            _remove_empty_config_dirs(self.root)
            self._config_dirs.clear()  # a folder removed here gets its config.json again on reuse
            log.info("stage cache: pruned %d files (%.2f GB) to stay within %.2f GB (%s)",
                     deleted, freed / 1e9, limit, self.root)
        return deleted, freed

    # the stages ---------------------------------------------------------------------------
    def features(self, backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """``backbone(images)`` with cached rows; the backbone runs once, batched, on the misses."""
        if not self.enabled:
            return backbone(images)
        d = self.config_dir("features", backbone_key(backbone))
        keys = image_hashes(images)
        grid = getattr(backbone, "grid_size", None)

        def ok(t: torch.Tensor) -> bool:
            return t.ndim == 3 and (grid is None or tuple(t.shape[-2:]) == (grid, grid))

        out: list[torch.Tensor | None] = [self.get("features", d, k, ok) for k in keys]
        miss = [i for i, t in enumerate(out) if t is None]
        if miss:
            computed = backbone(images if len(miss) == len(keys) else images[miss])
            for i, f in zip(miss, computed):
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
