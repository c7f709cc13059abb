"""Generated data sets kept on disk, category by category (both synthetic scene families).

A category folder is complete when its ``.complete.json`` holds the parameters it was written
with; it is written last, so a killed run leaves a folder that the next run regenerates.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from locoad.errors import ConfigError
from locoad.io import atomic_write_bytes

MARKER = ".complete.json"  # per category folder, written when it is complete


def write_png(path: Path, array: np.ndarray) -> None:
    """An image file, written atomically; not synced one by one (``ensure_complete`` syncs a
    category's files once, before its marker vouches for them)."""
    buf = io.BytesIO()
    # Fast compression: the noisy images barely compress better at higher levels.
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    atomic_write_bytes(path, buf.getvalue(), fsync=False)


def write_json(path: Path, obj) -> None:
    """A JSON file, written atomically (a killed run leaves the old file or none, never half of one)."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=lambda o: o.item())  # numpy scalars
    atomic_write_bytes(path, text.encode(), fsync=False)


def ensure_complete(root: Path, names: Iterable[str], params: dict, owner: tuple[str, str],
                    write_category: Callable[[Path, str], None], overwrite: bool = False) -> Path:
    """Write every category of ``names`` whose marker does not hold ``params`` (all with
    ``overwrite``) by ``write_category(root, name)``, then its marker; return ``root``.

    ``write_category`` writes ``dataset.json`` first; a folder in the way is deleted only if its
    ``dataset.json`` has ``owner`` (key, value), i.e. was written by the same generator.
    """
    names = list(names)
    if overwrite or _missing(root, names, params):
        with _exclusive(root):
            # Parallel sweep jobs that all found the data missing queue here: the first generates
            # it, the others find the markers written when the lock comes free.
            for name in names if overwrite else _missing(root, names, params):
                folder = root / name
                if folder.exists():
                    desc = folder / "dataset.json"
                    key, value = owner
                    if (_read_json(desc) or {}).get(key) != value:
                        raise FileExistsError(f"{folder} exists and was not written by {value}; "
                                              "move it or choose another data root")
                    shutil.rmtree(folder)  # stale images of an earlier or interrupted run
                write_category(root, name)
                # The files on disk before the marker: after a crash a marker must not vouch for
                # images still in the page cache (lost, they would never be regenerated).
                if hasattr(os, "sync"):
                    os.sync()
                write_json(folder / MARKER, params)  # last: complete
    return root


def _read_json(path: Path) -> dict | None:
    """``path`` as a dict; None where it is missing or not a JSON object (then it vouches for nothing)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _missing(root: Path, names: list[str], params: dict) -> list[str]:
    """The categories without a complete folder for ``params``."""
    return [n for n in names if not _marker_matches(root / n, params)]


def _marker_matches(folder: Path, params: dict) -> bool:
    return _read_json(folder / MARKER) == params


@contextlib.contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """An exclusive lock on ``root/.lock`` (flock: released by the OS if the holder dies)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def family_params(family: str, label: str, sizes: dict, categories: Iterable[str] | None, capture: str,
                  size_factor: float, **params) -> tuple[list[str], dict]:
    """Check a scene family's arguments and return (category names, the parameters a complete
    folder records). ``label`` names the family in errors, ``sizes`` its native (w, h) per category;
    ``params``: the rest of what the images depend on (family, version, note, seed, counts)."""
    names = list(categories or sizes)
    unknown = sorted(set(names) - set(sizes))
    if unknown:
        raise ConfigError(f"unknown {label} categories {unknown}; choose from {list(sizes)}")
    if capture not in ("photo", "clean"):
        raise ConfigError(f"{label} capture must be 'photo' or 'clean', got {capture!r}")
    smallest = min(min(sizes[n]) for n in names)
    if not smallest * size_factor >= 64:
        raise ConfigError(f"size_factor={size_factor} makes images smaller than 64 px; "
                         f"use >= {math.ceil(64 / smallest * 100) / 100}")
    return names, {"family": family, **params, "size_factor": float(size_factor), "capture": capture}


def family_splits(params: dict) -> list[tuple[str, str, int]]:
    """(split, kind, image count) of a scene family's category folder, in the order its images are
    drawn (the split's index seeds their random streams, so the order is part of the data)."""
    return [("train", "good", params["n_train"]), ("validation", "good", params["n_validation"]),
            ("test", "good", params["n_test_good"]), ("test", "logical_anomalies", params["n_logical"]),
            ("test", "structural_anomalies", params["n_structural"])]
