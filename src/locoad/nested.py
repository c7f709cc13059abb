"""Nested dicts (a resolved config, metrics.json) as one flat ``key -> leaf`` map."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def is_number(v: Any) -> bool:
    """A real number, numpy's too (np.float32 is no ``float``), but not a bool: a metric leaf, or a
    numeric setting before its range is checked (YAML's ``true`` is an int to Python)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def flat(tree: dict, sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [2]}`` -> ``{"a.b": 1, "c": [2]}``: every non-dict leaf under its
    joined key path (an empty dict has no leaves)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flat(v, sep, key))
        else:
            out[key] = v
    return out
