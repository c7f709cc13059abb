"""Atomic file writes: a killed run never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas only for the type: the stage cache writes through here, spawned
    import pandas as pd  # workers should not pay for importing it


# The process umask, read once at import: os.umask can only be read by setting it, which would
# race with other threads creating files.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    ``fsync=False`` skips flushing to the disk: for files that are cheap to recompute (cache
    entries, gallery panels), where a file truncated by a power cut is just a miss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # The mode an ordinary open() would give, so other users and web servers can read outputs.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> Path:
    # NaN is written as null so every JSON reader accepts the file.
    def clean(o: object) -> object:
        if isinstance(o, float) and o != o:
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    return atomic_write_text(path, json.dumps(clean(obj), indent=2, sort_keys=False) + "\n")


def atomic_write_csv(path: str | Path, df: pd.DataFrame) -> Path:
    return atomic_write_text(path, df.to_csv(index=False))
