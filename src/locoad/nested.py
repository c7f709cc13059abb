"""Nested dicts (a resolved config, metrics.json) as one flat ``key -> leaf`` map."""

from __future__ import annotations

from typing import Any


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
