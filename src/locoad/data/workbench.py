"""WORKBENCH scene family -- NEVER TUNE ON THIS. Report only.

A third LOCO-like data set, written independently of ``locoad.data.synthetic`` and of
``locoad.data.heldout`` (other categories, objects, rules, defects and renderer), to measure how
the method generalises. Nothing here may choose a default, a weight or a threshold: that would
turn it into one more development set.

Categories (native (width, height), none square) and their rules:

* ``bead_tray`` (1300 x 1000): a tray with 3 x 3 round wells, exactly one ring bead per well; the
  beads of a row share a colour, rows teal / magenta / orange from top to bottom.
  Logical: ``missing`` (a well without bead), ``extra`` (two beads in one well),
  ``wrong_colour`` (one bead of another row's colour), ``swapped`` (two rows' colours swapped).
* ``parts_card`` (1450 x 1050): loose parts on a card at random positions and angles: two
  springs of one length, three clips, one rivet. Logical: ``missing`` (any part), ``extra`` (a
  fourth clip), ``wrong_size`` (one spring much shorter or longer), ``swapped`` (a second rivet
  instead of a clip).
* ``led_board`` (1560 x 940): a circuit board with a row of four LEDs of one colour (green or
  amber, drawn per image), a chip whose notch points left, one resistor. Logical:
  ``wrong_colour`` (one LED of the other colour), ``missing`` (an LED, or the resistor),
  ``turned`` (the chip rotated by 180 degrees: notch right).
* ``spice_jar`` (860 x 1320): a jar with a cap and a label; the fill level lies between two
  marks; cap and label share one of three colours. Logical: ``wrong_level`` (filled above the
  upper or below the lower mark), ``wrong_colour`` (label of another variant), ``missing`` (cap).
* ``bento_box`` (1240 x 1160): 2 x 2 compartments: rice top left, two rolls top right, greens
  bottom left, a sauce cup bottom right. Logical: ``misplaced`` (greens and cup traded, or a roll
  on the rice), ``missing`` (a roll, or the sauce cup), ``extra`` (a third roll).

Structural defects, one small local change on one object's visible pixels (at least 8 grey levels
on average over its mask, on a clean render; else drawn again): ``scratch`` (a thin
line), ``dent`` (a shading bump), ``contamination`` (a foreign blob), ``broken`` (a piece bitten
out of the outline: what lies beneath shows), ``discolour`` (a soft patch of another hue).

Ground truth as in LOCO: a pixel value per defect kind (below 255), named in
``defects_config.json``; logical masks cover the edited parts where they are and where they were;
structural masks the changed pixels of the object. ``part_labels/`` holds the part type id per
pixel (0 = background, ids in ``dataset.json``'s ``part_types`` order, from 1).

Renderer: every object is a set of signed-distance shapes (discs, rings, rounded rectangles and
their outlines, capsules, polylines; cut or clipped by others) rasterised with numpy on the pixel
grid, anti-aliased by the pixel coverage the distance implies, shaded from a 3-D normal the shape
implies (domes, tori, tubes, cylinders, flat panels with darker rims, bowls), with a soft drop
shadow and a textured table (low-frequency value noise and fine grain, fixed to the scene).
``capture="photo"``: the camera rotates a few degrees, zooms (+-5 %), shifts and tilts (a slight
perspective), the light is uneven (a gradient and a spot), its colour temperature and exposure
vary, then defocus blur of varying strength, sensor noise and a JPEG round trip.
``capture="clean"``: the same scenes (their random stream does not depend on the capture) with a
still camera and none of that; the sizes stay native x ``size_factor``.

    generate_workbench(root, seed=0, size_factor=0.5)      # MVTec LOCO layout + part_labels/
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from locoad.data.generated import (
    ensure_complete,
    family_params,
    family_splits,
    write_json,
    write_png,
)

FAMILY = "locoad.data.workbench"
VERSION = 2  # 2: every structural defect visible (a dent on a dark part could change ~5 grey levels)
NOTE = "WORKBENCH: never tune on this data (report generalisation only)."

# native (width, height) per category: not LOCO's nor the held-out family's, none square
SIZES = {"bead_tray": (1300, 1000), "parts_card": (1450, 1050), "led_board": (1560, 940),
         "spice_jar": (860, 1320), "bento_box": (1240, 1160)}
CATEGORIES = tuple(SIZES)
TABLES = {"bead_tray": (138, 122, 152), "parts_card": (40, 72, 96), "led_board": (170, 174, 178),
          "spice_jar": (184, 150, 110), "bento_box": (86, 92, 98)}
TYPES = {"bead_tray": ("tray", "well", "bead"), "parts_card": ("card", "spring", "clip", "rivet"),
         "led_board": ("board", "led", "chip", "resistor"), "spice_jar": ("jar", "fill", "label", "cap"),
         "bento_box": ("box", "compartment", "rice", "roll", "greens", "cup")}
# logical edits per category, (edit, defect name); image i of category c gets edit (i + c) % 4
EDITS = {"bead_tray": (("missing", "missing"), ("extra", "extra"), ("recolour", "wrong_colour"),
                       ("swap_rows", "swapped")),
         "parts_card": (("missing", "missing"), ("extra_clip", "extra"), ("spring_length", "wrong_size"),
                        ("rivet_for_clip", "swapped")),
         "led_board": (("led_colour", "wrong_colour"), ("missing_led", "missing"), ("chip_turned", "turned"),
                       ("missing_resistor", "missing")),
         "spice_jar": (("overfilled", "wrong_level"), ("label_colour", "wrong_colour"),
                       ("underfilled", "wrong_level"), ("missing_cap", "missing")),
         "bento_box": (("misplaced", "misplaced"), ("missing_roll", "missing"), ("extra_roll", "extra"),
                       ("missing_cup", "missing"))}
LOGICAL = ("missing", "extra", "swapped", "wrong_colour", "misplaced", "wrong_size", "turned", "wrong_level")
STRUCTURAL = ("scratch", "dent", "contamination", "broken", "discolour")
# LOCO-style ground truth: a pixel value per defect kind, the same in every category
PIXEL_VALUES = {k: 248 - 9 * i for i, k in enumerate(LOGICAL + STRUCTURAL)}

LIGHT = np.array([-0.45, -0.55, 0.70]) / np.linalg.norm([-0.45, -0.55, 0.70])  # towards the lamp
HALF = (LIGHT + [0, 0, 1]) / np.linalg.norm(LIGHT + [0, 0, 1])  # Blinn half vector, viewer above
SHADOW_DIR = -LIGHT[:2] / np.linalg.norm(LIGHT[:2])  # shadows fall away from the lamp
LX, LY, LZ = (float(v) for v in LIGHT)  # Python floats keep the float32 arrays float32
HX, HY, HZ = (float(v) for v in HALF)
F = np.float32


# --- shapes: dicts with a kind, geometry in scene units (1 = the image's shorter side, origin
# at its centre), an rgb colour and a shading style; "clip" / "cut" lists intersect / subtract.
def disc(c, r, rgb, style="dome", **kw) -> dict:
    return {"k": "disc", "c": np.asarray(c, float), "r": float(r), "rgb": rgb, "style": style, **kw}


def ring(c, radius, width, rgb, style="torus", **kw) -> dict:
    return {"k": "ring", "c": np.asarray(c, float), "R": float(radius), "t": float(width), "rgb": rgb,
            "style": style, **kw}


def rrect(c, hx, hy, rad, rgb, ang=0.0, style="panel", **kw) -> dict:
    return {"k": "rrect", "c": np.asarray(c, float), "hx": float(hx), "hy": float(hy), "rad": float(rad),
            "ang": float(ang), "rgb": rgb, "style": style, **kw}


def frame(c, hx, hy, rad, width, rgb, ang=0.0, style="panel", **kw) -> dict:
    """The outline of a rounded rectangle, ``width`` thick."""
    return {**rrect(c, hx, hy, rad, rgb, ang, style, **kw), "k": "frame", "t": float(width)}


def capsule(a, b, r, rgb, style="tube", **kw) -> dict:
    return {"k": "capsule", "a": np.asarray(a, float), "b": np.asarray(b, float), "r": float(r), "rgb": rgb,
            "style": style, **kw}


def polyline(pts, r, rgb, style="tube", **kw) -> dict:
    return {"k": "polyline", "pts": np.asarray(pts, float), "r": float(r), "rgb": rgb, "style": style, **kw}


def below(y) -> dict:
    """The half plane under height ``y`` (y grows downwards), for clipping."""
    return {"k": "below", "y": float(y)}


def part(kind: str, shapes: list, height: float = 0.0, defect: bool = True) -> dict:
    """An object: its type, shapes (drawn in order), shadow height and whether it may get a
    structural defect."""
    return {"type": kind, "shapes": shapes, "height": height, "defect": defect}


def _rot(v, ang: float) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    v = np.asarray(v, float)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], -1)


def _moved(p: dict, d) -> dict:
    """``p`` translated by ``d``."""
    def mv(s: dict) -> dict:
        s = {**s, **{k: s[k] + d for k in ("c", "a", "b", "pts") if k in s}}
        if "y" in s:
            s["y"] += d[1]
        for key in ("clip", "cut"):
            if key in s:
                s[key] = [mv(q) for q in s[key]]
        return s
    d = np.asarray(d, float)
    return {**p, "shapes": [mv(s) for s in p["shapes"]]}


def _recoloured(p: dict, old, new) -> dict:
    return {**p, "shapes": [{**s, "rgb": new} if s["rgb"] == old else s for s in p["shapes"]]}


def _tint(rng: np.random.Generator, rgb, spread: float = 0.04) -> tuple:
    """A colour as a real batch varies: a brightness factor and a little per-channel noise."""
    g = rng.uniform(1 - spread, 1 + spread)
    return tuple(int(v) for v in np.clip(np.asarray(rgb) * g + rng.normal(0, 2.5, 3), 0, 255).round())


def _place(rng, taken: list, r: float, box, tries: int = 200) -> np.ndarray:
    """A centre in ``box`` (x0, y0, x1, y1) whose circle of radius ``r`` keeps clear of ``taken``
    (the best of ``tries`` draws when none does); appended to ``taken``."""
    best, gap = None, -np.inf
    for _ in range(tries):
        c = np.array([rng.uniform(box[0] + r, box[2] - r), rng.uniform(box[1] + r, box[3] - r)])
        g = min((np.hypot(*(c - t[:2])) - r - t[2] for t in taken), default=np.inf)
        if g > gap:
            best, gap = c, g
        if g > 0.01:
            break
    taken.append((*best, r))
    return best


# --- categories: ``build(rng, edit)`` -> (parts, edited parts for the ground truth) ------------
def bead_tray(rng, edit=None):
    c0, ang = rng.uniform(-0.015, 0.015, 2), rng.normal(0, 0.015)
    rows = [_tint(rng, rgb, 0.03) for rgb in ((36, 150, 140), (180, 56, 140), (236, 128, 36))]
    parts = [part("tray", [rrect(c0, 0.355, 0.355, 0.06, _tint(rng, (226, 220, 206)), ang, grain=0.04)], 0.02)]
    wells, beads = [], []
    well_rgb = _tint(rng, (176, 168, 150))
    for r in range(3):
        for c in range(3):
            w = c0 + _rot([(c - 1) * 0.22, (r - 1) * 0.22], ang)
            wells.append(w)
            parts.append(part("well", [disc(w, 0.09, well_rgb, "bowl")]))
    for k, w in enumerate(wells):
        off = _rot([rng.uniform(0, 0.022), 0], rng.uniform(0, 2 * np.pi))
        beads.append(part("bead", [ring(w + off, 0.034, 0.027, rows[k // 3])], 0.01))
    gt: list = []
    k = int(rng.integers(9))
    if edit == "missing":
        gt, beads[k] = [beads[k]], None
    elif edit == "extra":  # a second bead in the well: the two lie side by side, overlapping
        phi = rng.uniform(0, 2 * np.pi)
        d = _rot([0.03, 0], phi)
        pair = [part("bead", [ring(wells[k] - d, 0.034, 0.027, rows[k // 3])], 0.01),
                part("bead", [ring(wells[k] + d, 0.034, 0.027, rows[k // 3])], 0.01)]
        gt = [beads[k], *pair]
        beads[k:k + 1] = pair
    elif edit == "recolour":
        other = (k // 3 + 1 + int(rng.integers(2))) % 3
        beads[k] = _recoloured(beads[k], rows[k // 3], rows[other])
        gt = [beads[k]]
    elif edit == "swap_rows":
        a, b = rng.choice(3, 2, replace=False)
        for j in range(9):
            if j // 3 in (a, b):
                beads[j] = _recoloured(beads[j], rows[j // 3], rows[b if j // 3 == a else a])
                gt.append(beads[j])
    return parts + beads, gt


def _spring(c, length, ang, rgb) -> dict:
    n = 9  # coils
    t = np.linspace(-length / 2 + 0.012, length / 2 - 0.012, 2 * n + 1)
    amp = np.where(np.arange(2 * n + 1) % 2 == 0, -0.02, 0.02)
    amp[0] = amp[-1] = 0.0
    pts = c + _rot(np.stack([t, amp], 1), ang)
    ends = [c + _rot([s * (length / 2 - 0.006), 0], ang) for s in (-1, 1)]
    return part("spring", [polyline(pts, 0.0055, rgb), *(ring(e, 0.009, 0.006, rgb) for e in ends)], 0.006)


def _clip(c, ang, rgb) -> dict:
    return part("clip", [frame(c, 0.06, 0.022, 0.02, 0.008, rgb, ang),
                         frame(c + _rot([0.012, 0], ang), 0.04, 0.011, 0.01, 0.008, rgb, ang)], 0.005)


def _rivet(c, rgb) -> dict:
    dark = tuple(int(v * 0.6) for v in rgb)
    return part("rivet", [disc(c, 0.032, rgb, bulge=0.6), disc(c, 0.008, dark, "bowl")], 0.008)


def parts_card(rng, edit=None):
    c0 = rng.uniform(-0.015, 0.015, 2)
    parts = [part("card", [rrect(c0, 0.55, 0.37, 0.03, _tint(rng, (212, 220, 230)), grain=0.05)], 0.008)]
    steel, clip_rgb, brass = _tint(rng, (168, 172, 180)), _tint(rng, (214, 84, 52)), _tint(rng, (200, 164, 86))
    box = (c0[0] - 0.52, c0[1] - 0.34, c0[0] + 0.52, c0[1] + 0.34)
    taken: list = []
    length = rng.uniform(0.24, 0.27)
    springs = []
    for _ in range(2):
        c, a = _place(rng, taken, length * 0.7 + 0.02, box), rng.uniform(0, np.pi)
        springs.append((c, a))
    clips = [(_place(rng, taken, 0.07, box), rng.uniform(0, np.pi)) for _ in range(3)]
    rivet = _place(rng, taken, 0.04, box)
    loose = [*(_spring(c, length, a, steel) for c, a in springs), *(_clip(c, a, clip_rgb) for c, a in clips),
             _rivet(rivet, brass)]
    gt: list = []
    if edit == "missing":
        k = int(rng.integers(6))
        gt, loose[k] = [loose[k]], None
    elif edit == "extra_clip":
        loose.append(_clip(_place(rng, taken, 0.07, box), rng.uniform(0, np.pi), clip_rgb))
        gt = [loose[-1]]
    elif edit == "spring_length":
        k = int(rng.integers(2))
        c, a = springs[k]
        new = _spring(c, length * (0.6 if rng.random() < 0.5 else 1.4), a, steel)
        gt, loose[k] = [loose[k], new], new
    elif edit == "rivet_for_clip":
        k = 2 + int(rng.integers(3))
        new = _rivet(clips[k - 2][0], brass)
        gt, loose[k] = [loose[k], new], new
    return parts + loose, gt


def _chip(c, turned: bool) -> dict:
    s = -1.0 if turned else 1.0  # turned: the chip rotated by 180 degrees

    def at(x, y):
        return c + [s * x, s * y]
    legs = [rrect(at(x, y), 0.009, 0.022, 0.003, (196, 198, 204))
            for x in np.linspace(-0.135, 0.135, 7) for y in (-0.125, 0.125)]
    body = rrect(c, 0.17, 0.11, 0.01, (34, 34, 40), cut=[disc(at(-0.17, 0.0), 0.028, None)])
    return part("chip", [*legs, body, disc(at(-0.128, -0.068), 0.012, (84, 84, 92), "bowl")], 0.012)


def led_board(rng, edit=None):
    c0 = rng.uniform(-0.012, 0.012, 2)
    trace, pad_rgb = (52, 86, 140), (178, 176, 164)
    leds_at = [c0 + [x, -0.17 + rng.uniform(-0.004, 0.004)] for x in (-0.52, -0.38, -0.24, -0.10)]
    chip_at, res_at = c0 + [0.28, -0.05], c0 + [-0.3, 0.2]
    board = [rrect(c0, 0.68, 0.38, 0.025, _tint(rng, (30, 58, 104)), grain=0.04)]
    board += [capsule(p + [0, 0.05], [p[0], chip_at[1] + 0.13], 0.006, trace, "plain") for p in leds_at]
    board += [capsule([leds_at[0][0], chip_at[1] + 0.13], chip_at + [-0.135, 0.13], 0.006, trace, "plain"),
              capsule(res_at + [0.13, 0], [chip_at[0] - 0.05, res_at[1]], 0.006, trace, "plain"),
              capsule([chip_at[0] - 0.05, res_at[1]], chip_at + [-0.05, 0.13], 0.006, trace, "plain")]
    board += [ring(c0 + [sx * 0.63, sy * 0.33], 0.022, 0.012, pad_rgb, "panel") for sx in (-1, 1) for sy in (-1, 1)]
    board += [frame(c0 + [-0.31, -0.17], 0.28, 0.08, 0.01, 0.004, (206, 214, 224), style="plain")]
    board += [disc(p, 0.052, pad_rgb, "panel") for p in leds_at]
    board += [disc(res_at + [sx * 0.13, 0], 0.016, pad_rgb, "panel") for sx in (-1, 1)]
    colours = [_tint(rng, (70, 200, 90), 0.03), _tint(rng, (244, 160, 30), 0.03)]
    v = int(rng.integers(2))

    def led(p, rgb):
        rim = tuple(int(min(255, 0.5 * x + 120)) for x in rgb)
        return part("led", [ring(p, 0.045, 0.01, rim), disc(p, 0.041, rgb, bulge=0.85)], 0.01)
    leds = [led(p, colours[v]) for p in leds_at]
    body_rgb = _tint(rng, (216, 190, 146))
    resistor = part("resistor", [
        capsule(res_at - [0.13, 0], res_at + [0.13, 0], 0.005, (186, 186, 190)),
        capsule(res_at - [0.065, 0], res_at + [0.065, 0], 0.024, body_rgb),
        *(rrect(res_at + [x, 0], 0.006, 0.03, 0.0, rgb, style="plain",
                clip=[capsule(res_at - [0.065, 0], res_at + [0.065, 0], 0.024, None)])
          for x, rgb in ((-0.04, (110, 60, 30)), (-0.02, (30, 30, 30)), (0.0, (190, 40, 40)), (0.04, (200, 170, 80))))],
        0.008)
    parts = [part("board", board, 0.012), *leds, _chip(chip_at, False), resistor]
    gt: list = []
    k = 1 + int(rng.integers(4))  # an LED
    if edit == "led_colour":
        parts[k] = led(leds_at[k - 1], colours[1 - v])
        gt = [parts[k]]
    elif edit == "missing_led":
        gt, parts[k] = [parts[k]], None
    elif edit == "chip_turned":
        gt, parts[5] = [parts[5], _chip(chip_at, True)], _chip(chip_at, True)
    elif edit == "missing_resistor":
        gt, parts[6] = [parts[6]], None
    return parts, gt


def spice_jar(rng, edit=None):
    cx, cy = rng.uniform(-0.012, 0.012), 0.12 + rng.uniform(-0.01, 0.01)
    variants = [(104, 58, 150), (28, 130, 104), (222, 96, 48)]
    v = int(rng.integers(3))
    glass, spice = _tint(rng, (206, 220, 224), 0.03), _tint(rng, (152, 92, 48))
    jar = part("jar", [rrect([cx, cy], 0.27, 0.44, 0.08, glass, style="cyl"),
                       rrect([cx, cy - 0.46], 0.21, 0.04, 0.012, glass, style="cyl")], 0.02)
    marks_y = (cy - 0.16, cy - 0.02)
    marks = part("jar", [rrect([cx - 0.185, y], 0.05, 0.005, 0.004, (62, 70, 78), style="plain") for y in marks_y])

    def fill(level):
        return part("fill", [rrect([cx, cy], 0.245, 0.415, 0.065, spice, style="cyl", grain=0.16,
                                   clip=[below(level)])])

    def label(rgb):
        lines = [capsule([cx - 0.15, cy + 0.29 + dy], [cx + w, cy + 0.29 + dy], 0.008, (244, 240, 230), "plain")
                 for dy, w in ((-0.045, 0.15), (0.0, 0.08), (0.045, 0.11))]
        return part("label", [rrect([cx, cy + 0.29], 0.28, 0.1, 0.006, rgb, style="cyl",
                                    clip=[rrect([cx, cy], 0.27, 0.44, 0.08, None)]), *lines])

    def cap(rgb):
        ridge = tuple(int(x * 0.72) for x in rgb)
        body = rrect([cx, cy - 0.555], 0.235, 0.065, 0.02, rgb, style="cyl")
        return part("cap", [body, *(rrect([cx + x, cy - 0.555], 0.005, 0.06, 0.003, ridge, style="plain")
                                    for x in np.linspace(-0.2, 0.2, 11))], 0.015)
    colour = _tint(rng, variants[v], 0.03)
    level = rng.uniform(marks_y[0] + 0.02, marks_y[1] - 0.02)
    parts = [jar, fill(level), marks, label(colour), cap(colour)]
    gt: list = []
    if edit in ("overfilled", "underfilled"):
        new = fill(cy - 0.34 + rng.uniform(-0.02, 0.02) if edit == "overfilled" else cy + 0.1 + rng.uniform(-0.015, 0.015))
        gt, parts[1] = [parts[1], new], new
    elif edit == "label_colour":
        parts[3] = label(_tint(rng, variants[(v + 1 + int(rng.integers(2))) % 3], 0.03))
        gt = [parts[3]]
    elif edit == "missing_cap":
        gt, parts[4] = [parts[4]], None
    return parts, gt


def bento_box(rng, edit=None):
    c0 = rng.uniform(-0.012, 0.012, 2)
    comp = {n: c0 + [sx * 0.215, sy * 0.2] for n, sx, sy in (("tl", -1, -1), ("tr", 1, -1), ("bl", -1, 1), ("br", 1, 1))}
    lacquer = _tint(rng, (128, 34, 30))
    parts = [part("box", [rrect(c0, 0.44, 0.41, 0.045, _tint(rng, (36, 32, 34)))], 0.02)]
    parts += [part("compartment", [rrect(c, 0.195, 0.18, 0.025, lacquer, style="bowl_panel")]) for c in comp.values()]
    rice_rgb, nori, salmon = _tint(rng, (240, 238, 228), 0.02), _tint(rng, (36, 52, 40)), _tint(rng, (232, 122, 64))
    tl = comp["tl"] + rng.uniform(-0.01, 0.01, 2)
    rice = part("rice", [rrect(tl, 0.165, 0.145, 0.09, rice_rgb, grain=0.12),
                         disc(tl + rng.uniform(-0.05, 0.05, 2), 0.028, _tint(rng, (176, 36, 60)))], 0.01)

    def roll(c):
        return part("roll", [disc(c, 0.068, nori, bulge=0.4), disc(c, 0.052, rice_rgb, "panel", grain=0.12),
                             disc(c + rng.uniform(-0.006, 0.006, 2), 0.02, salmon, bulge=0.5)], 0.012)
    rolls_at = [comp["tr"] + [sx * 0.085 + rng.uniform(-0.008, 0.008), -0.04 + rng.uniform(-0.01, 0.01)] for sx in (-1, 1)]
    rolls = [roll(c) for c in rolls_at]
    greens_c = comp["bl"] + rng.uniform(-0.01, 0.01, 2)
    leaves = [disc(greens_c + _rot([rng.uniform(0, 0.085), 0], rng.uniform(0, 2 * np.pi)), rng.uniform(0.036, 0.05),
                   _tint(rng, rgb)) for rgb in ((60, 140, 50), (84, 162, 62), (44, 112, 42)) * 2]
    greens = part("greens", leaves, 0.01)
    cup_c = comp["br"] + rng.uniform(-0.01, 0.01, 2)
    cup = part("cup", [disc(cup_c, 0.095, _tint(rng, (232, 234, 236), 0.02), bulge=0.35),
                       disc(cup_c, 0.072, _tint(rng, (70, 36, 22)), "bowl")], 0.015)
    parts += [rice, *rolls, greens, cup]  # 5: rice, 6, 7: rolls, 8: greens, 9: cup
    gt: list = []
    k = 6 + int(rng.integers(2))
    if edit == "misplaced":
        if rng.random() < 0.5:  # greens and sauce cup traded
            new = [_moved(greens, cup_c - greens_c), _moved(cup, greens_c - cup_c)]
            gt, parts[8:10] = [greens, cup, *new], new
        else:  # a roll on the rice
            new = roll(tl + rng.uniform(-0.05, 0.05, 2))
            gt, parts[k] = [parts[k], new], None
            parts.append(new)
    elif edit == "missing_roll":
        gt, parts[k] = [parts[k]], None
    elif edit == "extra_roll":
        parts.append(roll(comp["tr"] + [rng.uniform(-0.01, 0.01), 0.1]))
        gt = [parts[-1]]
    elif edit == "missing_cup":
        gt, parts[9] = [parts[9]], None
    return parts, gt


BUILDERS: dict[str, Callable] = {"bead_tray": bead_tray, "parts_card": parts_card, "led_board": led_board,
                                 "spice_jar": spice_jar, "bento_box": bento_box}


# --- signed distances -----------------------------------------------------------------------------
def _len(x, y):
    return np.sqrt(x * x + y * y)  # np.hypot is several times slower


def _seg(X, Y, a, b):
    """Distance parameter and the offset vector from the nearest point of segment ab."""
    ax, ay, bx, by = float(a[0]), float(a[1]), float(b[0] - a[0]), float(b[1] - a[1])
    t = np.clip(((X - ax) * bx + (Y - ay) * by) / max(bx * bx + by * by, 1e-12), 0, 1)
    return X - (ax + t * bx), Y - (ay + t * by)


def _local(s, X, Y):
    c, sn = math.cos(s["ang"]), math.sin(s["ang"])
    dx, dy = X - float(s["c"][0]), Y - float(s["c"][1])
    return c * dx + sn * dy, -sn * dx + c * dy


def _sdf(s: dict, X, Y):
    k = s["k"]
    if k == "disc":
        d = _len(X - float(s["c"][0]), Y - float(s["c"][1])) - s["r"]
    elif k == "ring":
        d = np.abs(_len(X - float(s["c"][0]), Y - float(s["c"][1])) - s["R"]) - s["t"] / 2
    elif k in ("rrect", "frame"):
        lx, ly = _local(s, X, Y)
        qx, qy = np.abs(lx) - s["hx"] + s["rad"], np.abs(ly) - s["hy"] + s["rad"]
        d = _len(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - s["rad"]
        if k == "frame":
            d = np.abs(d) - s["t"] / 2
    elif k == "capsule":
        d = _len(*_seg(X, Y, s["a"], s["b"])) - s["r"]
    elif k == "polyline":
        p = s["pts"]
        d = np.min([_len(*_seg(X, Y, p[i], p[i + 1])) for i in range(len(p) - 1)], 0) - s["r"]
    elif k == "below":
        d = s["y"] - Y
    else:
        raise ValueError(f"unknown shape kind {k!r}")
    for q in s.get("clip", ()):
        d = np.maximum(d, _sdf(q, X, Y))
    for q in s.get("cut", ()):
        d = np.maximum(d, -_sdf(q, X, Y))
    return d.astype(F, copy=False)


def _bounds(s: dict) -> np.ndarray:
    """(x0, y0, x1, y1) around a shape, in scene units."""
    k = s["k"]
    if k == "disc":
        r, c = s["r"], s["c"]
    elif k == "ring":
        r, c = s["R"] + s["t"] / 2, s["c"]
    elif k in ("rrect", "frame"):
        ca, sa = abs(math.cos(s["ang"])), abs(math.sin(s["ang"]))
        ex = np.array([ca * s["hx"] + sa * s["hy"], sa * s["hx"] + ca * s["hy"]]) + s.get("t", 0) / 2
        return np.concatenate([s["c"] - ex, s["c"] + ex])
    else:
        p = np.stack([s["a"], s["b"]]) if k == "capsule" else s["pts"]
        return np.concatenate([p.min(0) - s["r"], p.max(0) + s["r"]])
    return np.concatenate([c - r, c + r])


def _part_sdf(p: dict, X, Y):
    return np.min([_sdf(s, X, Y) for s in p["shapes"]], 0)


# --- shading ------------------------------------------------------------------------------------
def _normal_light(nx, ny, spec: bool = True):
    """Lambert shade and a specular term for the surface normal (nx, ny, sqrt(1 - nx^2 - ny^2))."""
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0.0, 1.0))
    lam = np.clip(nx * LX + ny * LY + nz * LZ, 0, 1)
    hi = np.clip(nx * HX + ny * HY + nz * HZ, 0, 1) ** 40 * 0.55 if spec else 0.0
    return 0.45 + 0.62 * lam, hi


def _shade(s: dict, X, Y, d, pix: float):
    style, bulge = s["style"], s.get("bulge", 0.8)
    if style == "plain":
        return 1.0, 0.0
    if style in ("dome", "bowl"):
        r = s["r"]
        nx, ny = (X - float(s["c"][0])) / r * bulge, (Y - float(s["c"][1])) / r * bulge
        if style == "bowl":  # concave: lit on the side away from the lamp
            return _normal_light(-nx * 0.6, -ny * 0.6, spec=False)
        return _normal_light(nx, ny)
    if style == "torus":
        dx, dy = X - float(s["c"][0]), Y - float(s["c"][1])
        rr = np.maximum(_len(dx, dy), 1e-6)
        sr = np.clip((rr - s["R"]) / (s["t"] / 2), -1, 1) * bulge
        return _normal_light(sr * dx / rr, sr * dy / rr)
    if style == "tube":
        if s["k"] == "capsule":
            vx, vy = _seg(X, Y, s["a"], s["b"])
        else:  # polyline: the offset from the nearest segment
            p = s["pts"]
            offs = [_seg(X, Y, p[i], p[i + 1]) for i in range(len(p) - 1)]
            best = np.argmin([o[0] * o[0] + o[1] * o[1] for o in offs], 0)
            vx = np.choose(best, [o[0] for o in offs])
            vy = np.choose(best, [o[1] for o in offs])
        return _normal_light(np.clip(vx / s["r"], -1, 1) * bulge, np.clip(vy / s["r"], -1, 1) * bulge)
    if style == "cyl":  # a cylinder standing along the shape's local y axis
        lx, _ = _local(s, X, Y)
        u = np.clip(lx / s["hx"], -1, 1) * 0.92
        return _normal_light(u * math.cos(s["ang"]), u * math.sin(s["ang"]))
    # panel (flat, lit a little more towards the lamp, with a darker rim) / bowl_panel (sunken)
    cx, cy = map(float, s.get("c", (0.0, 0.0)))
    ext = max(s.get("hx", s.get("r", 0.1)), s.get("hy", 0.0), 0.02)
    grad = 1 + 0.07 * ((X - cx) * LX + (Y - cy) * LY) / ext
    rim = np.clip(-d / max(0.012, 2 * pix), 0, 1)
    if style == "bowl_panel":
        return grad * (0.7 + 0.3 * rim), 0.0
    return grad * (0.84 + 0.16 * rim), 0.0


def _noise(grid: np.ndarray, X, Y, freq: float = 1.0):
    """Value noise: ``grid`` (n, n) spread over the scene square [-1, 1]^2 (x ``freq``, wrapped),
    read bilinearly at (X, Y)."""
    n = grid.shape[0] - 1
    u, v = (X * freq + 1) * (n / 2), (Y * freq + 1) * (n / 2)
    u, v = u - n * np.floor(u / n), v - n * np.floor(v / n)  # wrapped (np.mod is much slower)
    u, v = np.minimum(u, n - 1e-3), np.minimum(v, n - 1e-3)  # float32 rounding
    fi, fj = np.floor(u), np.floor(v)
    fu, fv = u - fi, v - fj  # float32: an int32 array would promote them to float64
    i, j = fi.astype(np.int32), fj.astype(np.int32)
    flat, at = grid.ravel(), j * (n + 1) + i
    top = flat.take(at)
    top += (flat.take(at + 1) - top) * fu
    bottom = flat.take(at + n + 1)
    bottom += (flat.take(at + n + 2) - bottom) * fu
    return top + (bottom - top) * fv


def _colour(s: dict, X, Y, d, pix: float, fine: np.ndarray):
    rgb = np.asarray(s["rgb"], F) / 255
    shade, spec = _shade(s, X, Y, d, pix)
    base = rgb[:, None, None] * shade
    if s.get("grain"):
        base = base * (1 + s["grain"] * _noise(fine, X, Y, 2.7))
    if np.isscalar(spec):  # no highlight
        return np.clip(base, 0, 1)
    return np.clip(base + spec * (1 - base), 0, 1)


# --- structural defects: a modifier of one part's layer ------------------------------------------
def _structural(rng, kind: str, parts: list) -> dict:
    """A defect of ``kind`` on a visible spot of a part that may have one."""
    ks = [k for k, p in enumerate(parts) if p is not None and p["defect"]]
    for _ in range(20):
        k = ks[int(rng.integers(len(ks)))]
        b = np.array([_bounds(s) for s in parts[k]["shapes"]])
        pts = rng.uniform(b[:, :2].min(0), b[:, 2:].max(0), (400, 2)).astype(F)
        X, Y = pts[:, 0], pts[:, 1]
        d = _part_sdf(parts[k], X, Y)
        later = [p for p in parts[k + 1:] if p is not None]
        free = np.min([_part_sdf(p, X, Y) for p in later], 0) if later else np.full(len(pts), np.inf, F)
        if kind == "broken":  # on the outline, away from what lies on top
            ok = (np.abs(d) < 0.004) & (free > 0.035)
        else:
            ok = (d < -0.004) & (free > 0.02)
        if ok.any():
            c = pts[np.flatnonzero(ok)[0]].astype(float)
            break
    else:  # nothing visible found: the part's first shape
        c = _bounds(parts[k]["shapes"][0]).reshape(2, 2).mean(0)
    rgb = np.mean([s["rgb"] for s in parts[k]["shapes"] if s["rgb"] is not None], 0)
    lum = float(rgb @ [0.3, 0.59, 0.11]) / 255
    out = {"kind": kind, "part": k, "c": c}
    if kind == "scratch":
        dvec = _rot([rng.uniform(0.03, 0.05), 0], rng.uniform(0, np.pi))
        out["shapes"] = [capsule(c - dvec, c + dvec, rng.uniform(0.003, 0.0045), None)]
        out["rgb"] = (40, 36, 34) if lum > 0.45 else (232, 228, 220)
    elif kind == "dent":
        out["shapes"] = [disc(c, rng.uniform(0.02, 0.032), None)]
    elif kind == "contamination":
        choices = np.array([(58, 44, 30), (110, 130, 40), (238, 236, 226), (150, 40, 160)])
        out["rgb"] = tuple(int(x) for x in choices[np.argmax(np.abs(choices - rgb).sum(1))])
        out["shapes"] = [disc(c + rng.uniform(-0.012, 0.012, 2) * (j > 0), rng.uniform(0.008, 0.016), None)
                         for j in range(int(rng.integers(3, 6)))]
    elif kind == "broken":
        out["shapes"] = [disc(c + rng.uniform(-0.01, 0.01, 2) * (j > 0), rng.uniform(0.016, 0.028), None)
                         for j in range(int(rng.integers(2, 4)))]
    else:  # discolour
        out["shapes"] = [disc(c, rng.uniform(0.024, 0.04), None)]
        out["rgb"] = (0.62, 0.5, 0.3) if lum > 0.35 else (0.74, 0.7, 0.56)
    return out


# a structural defect changes its mask's pixels by at least this much on average (grey levels,
# largest channel; as the development family asks), on a clean render at this scale, in so many tries
VISIBLE_MEAN_CHANGE, VISIBLE_CHECK_SCALE, VISIBLE_TRIES = 8.0, 0.25, 20
OPACITY = {"scratch": 0.85, "contamination": 0.92}  # the defects painted over a part


def _apply(m: dict, X, Y, col, alpha, pix: float):
    """Change a part's layer (colour, coverage) by defect ``m``; return its region (bool)."""
    d = np.min([_sdf(s, X, Y) for s in m["shapes"]], 0)
    cov = np.clip(0.5 - d / pix, 0, 1)
    kind = m["kind"]
    if kind in OPACITY:  # paint over the part: a scratch lets a little of it show, dirt less
        col[:] = col * (1 - OPACITY[kind] * cov) + np.asarray(m["rgb"], F)[:, None, None] / 255 * OPACITY[kind] * cov
    elif kind == "dent":  # a hollow: dark on the lamp's side, bright on the other, darker in the middle
        s = m["shapes"][0]
        qx, qy = (X - float(s["c"][0])) / s["r"], (Y - float(s["c"][1])) / s["r"]
        f = np.clip(1 - (qx * qx + qy * qy), 0, 1)
        shade = 1 - (0.55 * (qx * LX + qy * LY) / 0.71 + 0.2) * f
        col[:] = np.clip(col * shade, 0, 1)
    elif kind == "broken":
        alpha *= 1 - cov
    else:  # discolour: a soft patch
        s = m["shapes"][0]
        f = np.clip((1 - _len(X - float(s["c"][0]), Y - float(s["c"][1])) / s["r"]) / 0.4, 0, 1) * 0.7
        col[:] = col * (1 - f) + np.asarray(m["rgb"], F)[:, None, None] * f
    return d <= 0


# --- rendering ----------------------------------------------------------------------------------
ALL = slice(None)  # images are channel-first while rendered: (3, h, w) broadcasts fast
STILL = {"angle": 0.0, "zoom": 1.0, "shift": np.zeros(2), "tilt": np.zeros(2)}


class _Camera:
    """Pixel grid <-> scene: rotation, zoom and shift, then a perspective tilt."""

    def __init__(self, cam: dict, w: int, h: int):
        self.cam, self.w, self.h, self.m = cam, w, h, min(w, h)
        self.pix = 1.0 / (self.m * cam["zoom"])  # scene units per pixel
        u = (np.arange(w, dtype=F) + 0.5 - w / 2) / self.m
        v = (np.arange(h, dtype=F) + 0.5 - h / 2) / self.m
        X, Y = np.meshgrid(u, v)
        if cam is not STILL:
            (tx, ty), (sx, sy) = (map(float, cam[k]) for k in ("tilt", "shift"))
            den = 1 - (tx * X + ty * Y)
            X, Y = X / den - sx, Y / den - sy
            c, s = math.cos(cam["angle"]), math.sin(cam["angle"])
            X, Y = (c * X + s * Y) / cam["zoom"], (-s * X + c * Y) / cam["zoom"]
        self.X, self.Y = X.astype(F), Y.astype(F)

    def box(self, b, pad: float = 0.0):
        """The pixel slices covering scene box ``b`` (x0, y0, x1, y1) + ``pad``; None if outside."""
        cam = self.cam
        corners = np.array([[b[0] - pad, b[1] - pad], [b[2] + pad, b[1] - pad],
                            [b[0] - pad, b[3] + pad], [b[2] + pad, b[3] + pad]])
        q = cam["zoom"] * _rot(corners, cam["angle"]) + cam["shift"]
        q = q / (1 + q @ cam["tilt"])[:, None]
        px = q * self.m + [self.w / 2 - 0.5, self.h / 2 - 0.5]
        x0, y0 = np.floor(px.min(0)).astype(int) - 2
        x1, y1 = np.ceil(px.max(0)).astype(int) + 3
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
        return (slice(y0, y1), slice(x0, x1)) if x1 > x0 and y1 > y0 else None

    def centre_pixel(self, c) -> tuple[int, int]:
        b = self.box([c[0], c[1], c[0], c[1]])
        return ((b[0].start + b[0].stop) // 2, (b[1].start + b[1].stop) // 2) if b else (self.h // 2, self.w // 2)


def _sub(outer, inner):
    """``inner`` (slices in the image) relative to ``outer``, clipped to it; None if disjoint."""
    ys = slice(max(inner[0].start, outer[0].start), min(inner[0].stop, outer[0].stop))
    xs = slice(max(inner[1].start, outer[1].start), min(inner[1].stop, outer[1].stop))
    if ys.stop <= ys.start or xs.stop <= xs.start:
        return None
    return (slice(ys.start - outer[0].start, ys.stop - outer[0].start),
            slice(xs.start - outer[1].start, xs.stop - outer[1].start))


def _footprint(parts: list, cam: _Camera) -> np.ndarray:
    """Where the shapes of ``parts`` are (the ground truth of a logical edit)."""
    out = np.zeros((cam.h, cam.w), bool)
    for p in parts:
        for s in p["shapes"]:
            sl = cam.box(_bounds(s))
            if sl is not None:
                out[sl] |= _sdf(s, cam.X[sl], cam.Y[sl]) <= 0
    if not out.any():  # too small to cover a pixel centre: the pixel under the first part
        out[cam.centre_pixel(_bounds(parts[0]["shapes"][0]).reshape(2, 2).mean(0))] = True
    return out


def render(category: str, scene: dict, cm: _Camera) -> tuple[np.ndarray, np.ndarray, list]:
    """(rgb float32 (3, h, w) in [0, 1], part labels (h, w) uint8, one mask per structural
    defect) of ``scene`` seen by ``cm`` (``_Camera(STILL, w, h)``: the clean capture)."""
    w, h = cm.w, cm.h
    X, Y, pix = cm.X, cm.Y, cm.pix
    texture, fine = scene["noise"]
    img = np.asarray(TABLES[category], F)[:, None, None] / 255 * (1 + _noise(texture, X, Y))  # (3, h, w)
    labels = np.zeros((h, w), np.uint8)
    owner = np.full((h, w), -1, np.int16)
    types = TYPES[category]
    defects = scene["defects"]
    regions = [np.zeros((h, w), bool) for _ in defects]
    for k, p in enumerate(scene["parts"]):
        if p is None:
            continue
        bounds = np.array([_bounds(s) for s in p["shapes"]])
        box = np.concatenate([bounds[:, :2].min(0), bounds[:, 2:].max(0)])
        if p["height"]:  # a soft shadow, offset away from the lamp
            off = SHADOW_DIR * p["height"]
            ox, oy = float(off[0]), float(off[1])
            soft = 0.5 * p["height"] + 2 * pix
            sl = cm.box(box + np.tile(off, 2), soft)
            if sl is not None:
                d = np.full(X[sl].shape, np.inf, F)
                for s in p["shapes"]:  # each shape on its own box only
                    sub = _sub(sl, cm.box(_bounds(s) + np.tile(off, 2), soft) or (slice(0, 0), slice(0, 0)))
                    if sub is not None:
                        d[sub] = np.minimum(d[sub], _sdf(s, X[sl][sub] - ox, Y[sl][sub] - oy))
                a = np.clip(0.5 - d / soft, 0, 1)
                img[(ALL, *sl)] *= 1 - 0.4 * a * a * (3 - 2 * a)
        sl = cm.box(box)
        if sl is None:
            continue
        Xc, Yc = X[sl], Y[sl]
        shape_hw = Xc.shape
        pm, alpha = np.zeros((3, *shape_hw), F), np.zeros(shape_hw, F)  # premultiplied colour, coverage
        for s in p["shapes"]:
            sub = _sub(sl, cm.box(_bounds(s)) or (slice(0, 0), slice(0, 0)))
            if sub is None:
                continue
            Xs, Ys = Xc[sub], Yc[sub]
            d = _sdf(s, Xs, Ys)
            a = np.clip(0.5 - d / pix, 0, 1)
            if not a.any():
                continue
            col = _colour(s, Xs, Ys, d, pix, fine)
            pm[(ALL, *sub)] = col * a + pm[(ALL, *sub)] * (1 - a)
            alpha[sub] = a + alpha[sub] * (1 - a)
        col = pm / np.maximum(alpha, 1e-6)
        whole = alpha >= 0.5
        for j, m in enumerate(defects):
            if m["part"] == k:
                regions[j][sl] = _apply(m, Xc, Yc, col, alpha, pix) & whole
        img[(ALL, *sl)] = img[(ALL, *sl)] * (1 - alpha) + col * alpha
        inside = alpha >= 0.5
        labels[sl][inside] = types.index(p["type"]) + 1
        owner[sl][inside] = k
    masks = []
    for m, r in zip(defects, regions):
        # visible pixels only: covered by a later part, a defect is not seen (a broken piece
        # shows what lies beneath it, so only later parts hide it)
        r &= (owner <= m["part"]) if m["kind"] == "broken" else (owner == m["part"])
        if not r.any():
            r[cm.centre_pixel(m["c"])] = True
        masks.append(r)
    return np.clip(img, 0, 1), labels, masks


def _to_hwc(img: np.ndarray) -> np.ndarray:
    """A channel-first float image in [0, 255] -> uint8 (h, w, 3) (truncating: add 0.5 first)."""
    return np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 0))


def photo(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The camera's and sensor's share: uneven light, colour temperature, exposure, defocus,
    noise, JPEG. ``img`` float (3, h, w) in [0, 1] -> uint8 (h, w, 3)."""
    h, w = img.shape[1:]
    m = min(w, h)
    xx = ((np.arange(w, dtype=F) + 0.5) / m - w / m / 2)[None, :]  # broadcast: (1, w) and (h, 1)
    yy = ((np.arange(h, dtype=F) + 0.5) / m - h / m / 2)[:, None]
    phi = rng.uniform(0, 2 * np.pi)
    grad = 1 + rng.uniform(0.04, 0.14) * (xx * math.cos(phi) + yy * math.sin(phi))
    sx, sy, sr = rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35), rng.uniform(0.25, 0.5)
    spot = rng.uniform(0.05, 0.2) * np.exp(-(xx - sx) ** 2 / (2 * sr * sr)) * np.exp(-(yy - sy) ** 2 / (2 * sr * sr))
    vignette = 1 - rng.uniform(0.05, 0.15) * (xx * xx + yy * yy)
    temp = rng.uniform(-0.07, 0.07)
    light = grad * (0.92 + spot) * vignette * rng.uniform(0.9, 1.06)
    img = img * (light * np.array([255 * (1 + temp), 255.0, 255 * (1 - temp)], F)[:, None, None])
    np.clip(img, 0, 255, out=img)
    out = Image.fromarray(_to_hwc(img + 0.5))
    sigma = rng.uniform(0.1, 1.6) * m / 500  # defocus
    out = out.filter(ImageFilter.GaussianBlur(sigma))
    arr = np.array(out, F)
    sd = rng.uniform(1.0, 3.5)
    # read + shot noise (uniform, of the same deviation: a third of the time of normal draws)
    arr += (rng.random(arr.shape, dtype=F) - 0.5) * (3.4641 * (sd + 0.012 * arr))
    np.clip(arr, 0, 255, out=arr)
    buf = io.BytesIO()
    Image.fromarray((arr + 0.5).astype(np.uint8)).save(buf, format="JPEG", quality=int(rng.integers(80, 96)))
    return np.asarray(Image.open(buf).convert("RGB"))


# --- files --------------------------------------------------------------------------------------
def scene_of(category: str, seed: int, split_index: int, i: int, kind: str) -> tuple[dict, str | None]:
    """The scene of one image (independent of the capture and of which other categories are
    made) and its logical edit's defect name (None if none)."""
    ci = CATEGORIES.index(category)
    rng = np.random.default_rng([seed, ci, split_index, i, 6271])
    edit = name = None
    if kind == "logical_anomalies":
        edit, name = EDITS[category][(i + ci) % len(EDITS[category])]
    parts, gt = BUILDERS[category](rng, edit)
    coarse, fine = rng.normal(0, 1, (8, 8)).astype(F), rng.normal(0, 1, (257, 257)).astype(F)
    g = np.linspace(-1, 1, 257, dtype=F)
    table = 0.09 * _noise(coarse, *np.meshgrid(g, g)) + 0.045 * fine  # the table: both scales at once
    noise = (table, fine)
    scene = {"parts": parts, "gt": gt, "noise": noise, "defects": []}
    if kind == "structural_anomalies":
        defect_kind = STRUCTURAL[(i + ci) % len(STRUCTURAL)]
        # A defect must show: a dent's shading on a dark part can change a few grey levels only.
        # Checked on a small clean render, so every capture and size gets the same scene.
        check = _Camera(STILL, *(round(v * VISIBLE_CHECK_SCALE) for v in SIZES[category]))
        plain = render(category, scene, check)[0]
        for _ in range(VISIBLE_TRIES):
            scene["defects"] = [_structural(rng, defect_kind, parts)]
            shown, _, (mask,) = render(category, scene, check)
            if np.abs(shown - plain).max(0)[mask].mean() * 255 >= VISIBLE_MEAN_CHANGE:
                break
    return scene, name


def camera_of(category: str, seed: int, split_index: int, i: int) -> tuple[dict, np.random.Generator]:
    """The photo camera of one image and the random stream of its light and sensor."""
    rng = np.random.default_rng([seed, CATEGORIES.index(category), split_index, i, 6272])
    cam = {"angle": math.radians(rng.uniform(-4, 4)), "zoom": rng.uniform(0.95, 1.05),
           "shift": rng.uniform(-0.02, 0.02, 2), "tilt": rng.uniform(-0.05, 0.05, 2)}
    return cam, rng


def generate_workbench(root: str | os.PathLike, seed: int = 0, size_factor: float = 0.5,
                       categories: list[str] | None = None, n_train: int = 16, n_validation: int = 4,
                       n_test_good: int = 12, n_logical: int = 12, n_structural: int = 12,
                       overwrite: bool = False, capture: str = "photo") -> Path:
    """Write the workbench family under ``root`` (MVTec LOCO layout + part_labels); return root.
    Deterministic in ``seed``; a complete category folder with the same parameters is kept
    (``locoad.data.generated``: one run generates, parallel ones wait for it). ``capture``:
    ``photo`` (camera moves, light, blur, noise, JPEG) or ``clean`` (the same scenes, none of it)."""
    names, params = family_params(FAMILY, "workbench", SIZES, categories, capture, size_factor, version=VERSION,
                                  note=NOTE, seed=seed, n_train=n_train, n_validation=n_validation,
                                  n_test_good=n_test_good, n_logical=n_logical, n_structural=n_structural)
    root = Path(root)
    return ensure_complete(root, names, params, ("family", FAMILY),
                           lambda r, name: _write_category(r, name, params), overwrite)


def defect_names(category: str) -> list[str]:
    """The defect kinds a category's test set can hold (logical first)."""
    logical = sorted({n for _, n in EDITS[category]}, key=LOGICAL.index)
    return [*logical, *STRUCTURAL]


def _write_category(root: Path, name: str, params: dict) -> None:
    seed = params["seed"]
    base = root / name
    base.mkdir(parents=True)
    write_json(base / "dataset.json", {**params, "category": name, "part_types": TYPES[name],
                                       "defects": defect_names(name)})  # first: marks the folder ours
    write_json(base / "defects_config.json",
               [{"defect_name": k, "pixel_value": PIXEL_VALUES[k], "saturation_threshold": 1.0,
                 "relative_saturation": True} for k in defect_names(name)])
    size = tuple(round(v * params["size_factor"]) for v in SIZES[name])
    for si, (split, kind, n) in enumerate(family_splits(params)):
        for i in range(n):
            scene, edit = scene_of(name, seed, si, i, kind)
            cam, light = camera_of(name, seed, si, i)
            if params["capture"] == "clean":
                cam = STILL
            cm = _Camera(cam, *size)
            img, labels, masks = render(name, scene, cm)
            rgb = photo(img, light) if params["capture"] == "photo" else _to_hwc(img * 255 + 0.5)
            named = [(m, d["kind"]) for m, d in zip(masks, scene["defects"])]
            if edit is not None:  # where the edited parts are now and where they were
                named = [(_footprint([p for p in scene["gt"] if p is not None], cm), edit)]
            stem = f"{i:03d}"
            write_png(base / split / kind / f"{stem}.png", rgb)
            write_png(base / "part_labels" / split / kind / f"{stem}.png", labels)
            for j, (m, defect) in enumerate(named):
                write_png(base / "ground_truth" / kind / stem / f"{j:03d}.png",
                          m.astype(np.uint8) * np.uint8(PIXEL_VALUES[defect]))
