"""The on-disk stage cache, split by concern: :mod:`~locoad.cache.fingerprint` (what keys an
entry), :mod:`~locoad.cache.stage_cache` (the stage API, reads and writes),
:mod:`~locoad.cache.disk` (layout, size, LRU pruning), :mod:`~locoad.cache.stats` (counters and
the summary). The names below are the public API."""

from locoad.cache.disk import STAGES
from locoad.cache.fingerprint import (
    VERSION,
    backbone_key,
    code_fingerprint,
    component_key,
    content_hash,
    fingerprint,
    image_hashes,
    jsonable,
    segmenter_key,
    weights_fingerprint,
)
from locoad.cache.stage_cache import StageCache

__all__ = [
    "STAGES",
    "VERSION",
    "StageCache",
    "backbone_key",
    "code_fingerprint",
    "component_key",
    "content_hash",
    "fingerprint",
    "image_hashes",
    "jsonable",
    "segmenter_key",
    "weights_fingerprint",
]
