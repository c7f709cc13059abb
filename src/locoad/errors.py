"""User-facing errors: each message names the problem and the fix; the CLI prints it without a traceback."""


class LocoadError(Exception):
    """Base class for errors caused by the user's input or setup, not by a bug."""
