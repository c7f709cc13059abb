"""Which W&B mode a run gets, decided before wandb starts: never a prompt, never a hang.

``WANDB_MODE`` wins, else offline; online also needs credentials (without them wandb would
prompt and hang a batch job) and a reachable server (else the run falls back to offline).
"""

from __future__ import annotations

import netrc
import os
import socket
import warnings
from urllib.parse import urlparse

DEFAULT_BASE_URL = "https://api.wandb.ai"


def has_credentials(base_url: str) -> bool:
    """An API key in the environment or in ~/.netrc for the W&B host (no prompt, no network)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(base_url).hostname or ""
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def reachable(base_url: str, timeout: float) -> bool:
    """TCP connect to the W&B host. Skipped (True) behind a proxy, where only wandb can tell."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    url = urlparse(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)


def resolve_mode(offline: bool, url: str | None = None) -> str:
    """``online`` | ``offline`` | ``disabled``: ``WANDB_MODE`` first, then ``offline``."""
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env == "disabled":
        return "disabled"
    if env in ("offline", "dryrun"):
        return "offline"
    if env != "online" and offline:
        return "offline"
    if not has_credentials(url or base_url()):
        warnings.warn("W&B online mode requested but no API key found (WANDB_API_KEY or "
                      "`wandb login`); logging offline instead", stacklevel=2)
        return "offline"
    return "online"
