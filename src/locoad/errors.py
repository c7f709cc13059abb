"""User-facing errors: each message names the problem and the fix; the CLI prints it without a traceback."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path


class LocoadError(Exception):
    """Base class for errors caused by the user's input or setup, not by a bug."""


class ConfigError(LocoadError, ValueError):
    """Config values that cannot work together; the message names the key to change."""


def is_whole_number(value: object, low: int) -> bool:
    """An int (not a bool) >= ``low``: what a count, a size or a radius in the config must be."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


class CheckpointNotFoundError(LocoadError, FileNotFoundError):
    """A model checkpoint file is missing; the message says which file and where to get it."""


class CheckpointMismatchError(LocoadError, RuntimeError):
    """A checkpoint file does not fit the model (missing/unexpected keys, other shapes)."""


class WeightsUnavailableError(LocoadError, RuntimeError):
    """``pretrained=true`` without a checkpoint, and the download failed (e.g. offline)."""


def checkpoint_missing(what: str, path: str, file_name: str, url: str, key: str,
                       official_names: Collection[str] = ()) -> CheckpointNotFoundError:
    """One line naming the missing file, where it is published and the config key to set.
    ``official_names``: the family's published file names; a path named after another of them is
    a variant changed and its path not, so the advice is the path for this variant's file."""
    if Path(path).name in official_names and Path(path).name != file_name:
        return CheckpointNotFoundError(
            f"{what} checkpoint not found: {path}. Download {file_name} from {url} and set "
            f"{key}={Path(path).parent / file_name} (or the path where you put it)."
        )
    return CheckpointNotFoundError(
        f"{what} checkpoint not found: {path}. Download {file_name} from {url} and put it at that "
        f"path, or set {key}=<path to the file>."
    )


def unwrap_user_error(err: BaseException) -> LocoadError | None:
    """The LocoadError behind ``err`` (Hydra wraps a constructor's error in an
    InstantiationException, once per nesting level), or None if there is none."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, LocoadError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def user_message(err: LocoadError) -> str:
    """The one line a user error prints. Raised in a DataLoader worker, it comes back re-raised by
    torch with the worker's traceback as its message ("Caught ... in DataLoader worker process 0.",
    the traceback, then "<module>.<class>: <message>"): that last line's message."""
    lines = str(err).strip().splitlines()
    if len(lines) > 1 and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        prefix = f"{type(err).__module__}.{type(err).__qualname__}: "
        return lines[-1].removeprefix(prefix)
    return str(err)
