"""Synthetic LOCO-like data: scenes with part constraints, logical and structural anomalies.

``generate(root)`` writes the MVTec LOCO AD layout (plus true part label maps and scene
metadata); ``check_constraints(meta, category)`` lists the rules a scene breaks.
"""

from .categories import CATEGORIES, LOGICAL_KINDS, check_constraints
from .generator import STRUCTURAL_KINDS, Rendered, generate, render_scene, sample_scene

__all__ = [
    "CATEGORIES",
    "LOGICAL_KINDS",
    "STRUCTURAL_KINDS",
    "Rendered",
    "check_constraints",
    "generate",
    "render_scene",
    "sample_scene",
]
