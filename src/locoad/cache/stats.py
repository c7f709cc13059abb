"""Hit/miss counters per stage, the one-line summary, and that summary at interpreter exit for
caches whose run did not log it (a crashed job, a notebook)."""

from __future__ import annotations

import atexit
import logging
import weakref

log = logging.getLogger(__name__)

# Counters the summary line names only when non-zero: something went wrong or was left out.
PROBLEMS = ("corrupt", "write_errors", "skipped_low_disk")
COUNTERS = ("hits", "misses", "writes", *PROBLEMS)


def new_stats(stages: tuple[str, ...]) -> dict[str, dict[str, int]]:
    return {s: dict.fromkeys(COUNTERS, 0) for s in stages}


def summary_line(stats: dict[str, dict[str, int]], where: object) -> str:
    """``stage cache (<where>): features 3/6 hits; segments ...``, problems appended."""
    parts = []
    for stage, s in stats.items():
        n = s["hits"] + s["misses"]
        extra = "".join(f", {s[k]} {k.replace('_', ' ')}" for k in PROBLEMS if s[k])
        parts.append(f"{stage} {s['hits']}/{n} hits{extra}")
    return f"stage cache ({where}): " + "; ".join(parts)


_LIVE: weakref.WeakSet = weakref.WeakSet()


def track(cache: object) -> None:
    """Log ``cache``'s summary at exit unless it was already logged as is."""
    _LIVE.add(cache)


@atexit.register
def _log_live_summaries() -> None:
    for cache in list(_LIVE):
        if cache.lookups and cache.summary() != cache._last_summary:
            cache.log_summary()
