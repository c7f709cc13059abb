"""Fingerprints: what determines a stage's output, as a stable hash.

Images are keyed by their content, segmenters and backbones by their configuration and the
weights they hold, feature scores by the package's source, so a changed input, setting,
checkpoint or edited feature never gets a stale entry.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

# Bump when the code of a stage changes its output for the same configuration (a new
# post-processing rule, a fixed bug): every old entry becomes unreachable.
VERSION = "2"  # 2: CIELAB in torch (locoad.colour), within 1e-4 of scikit-image
# Keys whose string value, when it names an existing file, is replaced by path + size + mtime.
_FILE_KEYS = ("checkpoint", "ckpt", "weights", "path", "file")
# Backbones with more parameters than this are fingerprinted from a sample of every tensor.
_FULL_HASH_MAX_NUMEL = 32_000_000
_SAMPLE = 512


def _file_info(path: str) -> dict | str:
    try:
        st = os.stat(path)
    except OSError:
        return path
    if not os.path.isfile(path):
        return path
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# How deep plain objects are described by their state (a feature's settings object, its
# settings' own parts); deeper ones by their type only.
_OBJECT_DEPTH = 4


def jsonable(value: Any, key: str = "", depth: int = 0) -> Any:
    """A stable, JSON-serialisable description of ``value`` (no memory addresses). Objects are
    described by their public state (a feature's colour kinds and capture jitter settings
    included): a setting held one object down must still change the key."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        if any(k in key.lower() for k in _FILE_KEYS):
            return _file_info(value)
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return jsonable(value.item(), key, depth)
    if isinstance(value, Path):
        return jsonable(str(value), key, depth)
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if OmegaConf.is_config(value):  # a DictConfig / ListConfig (hydra.utils.instantiate without _convert_)
        return jsonable(OmegaConf.to_container(value, resolve=True), key, depth)
    if isinstance(value, dict):
        return {str(k): jsonable(v, str(k), depth) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v, key, depth) for v in items]
    if isinstance(value, nn.Module):
        return {"module": _qualname(value), "weights": weights_fingerprint(value)}
    if isinstance(value, (np.ndarray, torch.Tensor)):
        arr = _as_numpy(value)
        return {"array": content_hash(arr), "shape": list(arr.shape), "dtype": arr.dtype.str}
    if depth < _OBJECT_DEPTH and not isinstance(value, type) and not inspect.isroutine(value) and (
            hasattr(value, "__dict__") or dataclasses.is_dataclass(value)):
        return {"object": _qualname(value), "state": jsonable(_public_state(value), key, depth + 1)}
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
    root = Path(__file__).resolve().parents[1]  # src/locoad, not just this package
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
    """Public, non-module attributes (dataclass fields too, slotted ones included), plus any
    ``__init__`` argument kept under the same name. Functions and classes are left out; callable
    objects (a settings dataclass with ``__call__``) are state like any other."""
    state = {k: v for k, v in getattr(obj, "__dict__", {}).items() if not k.startswith("_") and k != "training"}
    if dataclasses.is_dataclass(obj):
        state.update({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.name.startswith("_")})
    try:
        params = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        params = {}
    for name in params:
        if name != "self" and name not in state and hasattr(obj, name):
            state[name] = getattr(obj, name)
    return {k: v for k, v in state.items()
            if not isinstance(v, (nn.Module, type)) and not inspect.isroutine(v) and not isinstance(v, functools.partial)}


def fingerprint(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]
