"""User-facing errors: each message names the problem and the fix; the CLI prints it without a traceback."""


class LocoadError(Exception):
    """Base class for errors caused by the user's input or setup, not by a bug."""


class CheckpointNotFoundError(LocoadError, FileNotFoundError):
    """A model checkpoint file is missing; the message says which file and where to get it."""


def checkpoint_missing(path: str, url: str, key: str) -> CheckpointNotFoundError:
    return CheckpointNotFoundError(
        f"checkpoint {path} not found. Download it from {url} and put it at that path, or set "
        f"{key}=<path to the file>. (Model weights are never downloaded at run time.)"
    )
