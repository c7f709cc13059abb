"""HELD-OUT scene family -- NEVER TUNE ON THIS. Report only.

A second LOCO-like data set, written independently of ``locoad.data.synthetic`` (other
categories, shapes, rules, defects and renderer), to measure how the method generalises beyond
the generator it was developed on. Nothing here may be used to choose a default, a weight or a
threshold: that would turn it into one more development set.

Five categories mirror MVTec LOCO's ideas with other objects: ``pin_box`` (one square pin per
compartment of a 2 x 4 box), ``fastener_bag`` (two bolts, one long one short, two square nuts,
two washers), ``cable_pair`` (two blocks with the same number of teeth, a cable whose colour
names that number), ``flask`` (liquid level, label stripe colour = liquid colour) and
``lunch_tray`` (three cookies left, sandwich top right, cup bottom right). Everything is a
polygon or a thick polyline drawn with PIL at twice the resolution and box-filtered down;
captures are photo-like (non-square native sizes, rotation, shift, zoom, gamma, colour
temperature, a light spot, blur, noise, JPEG artefacts); ``capture="clean"`` renders the same
scenes with a still camera and none of that (the sizes stay native). Structural defects: stain,
crack, chip.
Ground truth as in LOCO: a pixel value per defect kind (below 255), named in defects_config.json.

    generate_heldout(root, seed=0, size_factor=0.5)      # MVTec LOCO layout + part_labels/
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from locoad.data.generated import (
    ensure_complete,
    family_params,
    family_splits,
    write_json,
    write_png,
)

FAMILY = "locoad.data.heldout"
VERSION = 3  # 2: misplaced pins on a wall (were in a compartment); structural masks cover every changed pixel;
# 3: the fastener bag's parts wholly inside the bag in good images (a third had one partly outside: the misplaced defect)
NOTE = "HELD OUT: never tune on this data (report generalisation only)."
SS = 2  # supersampling of the colour image

# native (width, height) per category: not LOCO's, and not square
SIZES = {"pin_box": (1400, 900), "fastener_bag": (1100, 1300), "cable_pair": (1600, 800),
         "flask": (900, 1400), "lunch_tray": (1500, 1100)}
BACKGROUNDS = {"pin_box": (168, 160, 150), "fastener_bag": (52, 60, 70), "cable_pair": (92, 112, 96),
               "flask": (210, 214, 220), "lunch_tray": (120, 84, 60)}
TYPES = {"pin_box": ("box", "cell", "pin"), "fastener_bag": ("bag", "bolt", "nut", "washer"),
         "cable_pair": ("block", "tooth", "cable"), "flask": ("flask", "liquid", "label", "stripe"),
         "lunch_tray": ("tray", "cookie", "sandwich", "cup")}
CATEGORIES = tuple(SIZES)


# --- primitives: every part is a list of ("poly", (N, 2) points) / ("line", points, width) -----
def ellipse(cx: float, cy: float, rx: float, ry: float, ang: float = 0.0, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(ang), math.sin(ang)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def rect(cx: float, cy: float, w: float, h: float, ang: float = 0.0) -> np.ndarray:
    return _rot(np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]]), ang) + [cx, cy]


def _rot(p: np.ndarray, ang: float) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    return p @ np.array([[c, s], [-s, c]])


def part(kind: str, rgb, *prims, **extra) -> dict:
    return {"kind": kind, "rgb": [int(v) for v in rgb], "prims": list(prims), **extra}


def poly(p: np.ndarray) -> tuple:
    return ("poly", np.asarray(p, float))


def line(p: np.ndarray, width: float) -> tuple:
    return ("line", np.asarray(p, float), float(width))


def _jit(rng: np.random.Generator, rgb, amount: int = 8) -> list[int]:
    return [int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb]


def _free(rng, box, r, taken, tries=300, inside=None):
    """A centre in ``box`` whose circle of radius ``r`` clears the circles in ``taken`` and, with
    ``inside``, lies wholly in a container (``inside(c, r)``); failing that, the last centre drawn
    that is inside."""
    fallback = None
    for _ in range(tries):
        c = (rng.uniform(box[0] + r, box[2] - r), rng.uniform(box[1] + r, box[3] - r))
        if inside is not None and not inside(c, r):
            continue
        fallback = c
        if all(math.dist(c, t[:2]) > r + t[2] + 0.01 for t in taken):
            return c
    return c if fallback is None else fallback


# --- categories: a normal scene, or with ``edit`` one logical anomaly. Each returns the parts
# (None = removed) and the primitives the ground truth covers (the edited parts before and after).
def _prims(*ps) -> list:
    return [q for p in ps if p is not None for q in p["prims"]]

def pin_box(rng, index, edit=None):
    parts = [part("box", _jit(rng, (44, 92, 66)), poly(rect(0.5, 0.5, 0.82, 0.5, rng.normal(0, 0.01))))]
    cells = []
    for r in range(2):
        for c in range(4):
            cx, cy = 0.5 + (c - 1.5) * 0.19, 0.5 + (r - 0.5) * 0.22
            cells.append((cx, cy))
            parts.append(part("cell", _jit(rng, (186, 204, 190), 4), poly(rect(cx, cy, 0.165, 0.19))))
    pins = []
    for cx, cy in cells:
        p = (cx + rng.uniform(-0.035, 0.035), cy + rng.uniform(-0.045, 0.045))
        pins.append(part("pin", _jit(rng, (246, 246, 240), 5), poly(rect(*p, 0.05, 0.05, rng.uniform(0, 1.6)))))
    parts += pins
    gt: list = []
    k = len(parts) - 8 + int(rng.integers(8))  # a pin
    if edit == "missing":
        gt, parts[k] = _prims(parts[k]), None
    elif edit == "extra":
        cx, cy = cells[int(rng.integers(8))]
        parts.append(part("pin", _jit(rng, (246, 246, 240), 5), poly(rect(cx + 0.05, cy + 0.06, 0.05, 0.05, 0.3))))
        gt = _prims(parts[-1])
    elif edit == "misplaced":  # on one of the three walls between two compartments side by side
        x = 0.5 + (int(rng.integers(3)) - 1) * 0.19
        new = {**parts[k], "prims": [poly(rect(x, rng.uniform(0.35, 0.65), 0.05, 0.05, 0.7))]}
        gt, parts[k] = _prims(parts[k], new), new
    elif edit == "mismatched":  # a black pin
        parts[k] = {**parts[k], "rgb": [30, 30, 34]}
        gt = _prims(parts[k])
    return parts, gt


def fastener_bag(rng, index, edit=None):
    bag = part("bag", _jit(rng, (170, 196, 222)), poly(ellipse(0.5, 0.5, 0.33, 0.4, 0, 60)))
    parts, taken = [bag], []

    def in_bag(c, r):  # the part's circle wholly inside the bag (version 3; the box's corners are not)
        return ((c[0] - 0.5) / (0.33 - r)) ** 2 + ((c[1] - 0.5) / (0.4 - r)) ** 2 <= 1

    def bolt(length, c=None, ang=None):
        r = length / 2 + 0.03
        c = c or _free(rng, (0.22, 0.16, 0.78, 0.84), r, taken, inside=in_bag)
        ang = rng.uniform(0, np.pi) if ang is None else ang
        taken.append((*c, r))
        axis = np.array([math.cos(ang), math.sin(ang)])
        head = np.array(c) + axis * length / 2
        return part("bolt", _jit(rng, (120, 124, 132)), line([np.array(c) - axis * length / 2, head], 0.032),
                    poly(ellipse(*head, 0.04, 0.04, ang, 6)), length=length)

    def small(kind):
        c = _free(rng, (0.22, 0.16, 0.78, 0.84), 0.05, taken, inside=in_bag)
        taken.append((*c, 0.05))
        if kind == "nut":
            return part("nut", _jit(rng, (196, 170, 60)), poly(rect(*c, 0.07, 0.07, rng.uniform(0, 1.6))))
        return part("washer", _jit(rng, (200, 120, 70)), line(ellipse(*c, 0.033, 0.033, 0, 24)[list(range(24)) + [0]], 0.022))

    long_l, short_l = rng.uniform(0.27, 0.3), rng.uniform(0.15, 0.17)
    parts += [bolt(long_l), bolt(short_l), small("nut"), small("nut"), small("washer"), small("washer")]
    gt: list = []
    if edit == "missing":
        k = 1 + int(rng.integers(6))
        gt, parts[k] = _prims(parts[k]), None
    elif edit == "extra":
        kind = int(rng.integers(3))
        parts.append(bolt(short_l) if kind == 0 else small(("nut", "washer")[kind - 1]))
        gt = _prims(parts[-1])
    elif edit == "misplaced":  # a nut or washer outside the bag
        k = 3 + int(rng.integers(4))
        x = 0.1 if rng.random() < 0.5 else 0.9
        prims = parts[k]["prims"]
        old = np.concatenate([p[1] for p in prims]).mean(0)
        new = {**parts[k], "prims": [(p[0], p[1] - old + [x, rng.uniform(0.3, 0.7)], *p[2:]) for p in prims]}
        gt, parts[k] = _prims(parts[k], new), new
    elif edit == "mismatched":  # two bolts of the same length
        taken[1:2] = []
        new = bolt(long_l)
        gt, parts[2] = _prims(parts[2], new), new
    return parts, gt


def cable_pair(rng, index, edit=None):
    teeth = (2, 4)[index % 2]
    colour = {2: (60, 170, 80), 4: (150, 70, 170)}

    def block(x, side, n, dy=0.0):
        y = 0.5 + rng.uniform(-0.04, 0.04) + dy
        out = [part("block", _jit(rng, (226, 226, 218)), poly(rect(x, y, 0.11, 0.3)))]
        for k in range(n):
            ty = y + (k - (n - 1) / 2) * 0.065
            out.append(part("tooth", _jit(rng, (40, 40, 44)), poly(rect(x + side * 0.075, ty, 0.04, 0.035))))
        return out, (x - side * 0.055, y)

    left, a = block(0.2, -1, teeth)
    right, b = block(0.8, 1, teeth)
    sag = rng.uniform(0.08, 0.16) * (1 if rng.random() < 0.5 else -1)
    t = np.linspace(0, 1, 24)[:, None]
    ctrl = [np.array(a), np.array(a) + [0.2, sag], np.array(b) + [-0.2, sag], np.array(b)]
    pts = sum(math.comb(3, i) * t**i * (1 - t) ** (3 - i) * ctrl[i] for i in range(4))
    cable = part("cable", _jit(rng, colour[teeth]), line(pts, 0.03))
    parts = [cable, *left, *right]
    gt: list = []
    if edit == "missing":  # the cable's middle is cut out
        parts[0] = part("cable", cable["rgb"], line(pts[:8], 0.03), line(pts[16:], 0.03))
        gt = [line(pts[7:17], 0.03)]
    elif edit == "extra":  # the right block gets the other tooth count
        y = right[0]["prims"][0][1].mean(0)[1]
        teeth_new = [part("tooth", _jit(rng, (40, 40, 44)), poly(rect(0.875, y + (k - (5 - teeth) / 2) * 0.065, 0.04, 0.035)))
                     for k in range(6 - teeth)]
        gt = _prims(*right[1:], *teeth_new)
        parts = [cable, *left, right[0], *teeth_new]
    elif edit == "misplaced":  # the right block pulled off the cable
        moved = block(0.8, 1, teeth, dy=0.22 * (1 if rng.random() < 0.5 else -1))[0]
        gt = _prims(*right, *moved)
        parts = [cable, *left, *moved]
    elif edit == "mismatched":  # cable colour of the other tooth count
        parts[0] = {**cable, "rgb": _jit(rng, colour[6 - teeth])}
        gt = _prims(cable)
    return parts, gt


def flask(rng, index, edit=None):
    liquids = [(200, 40, 40), (230, 200, 40), (40, 90, 200)]
    liquid = liquids[index % 3]
    cx, cy, r = 0.5 + rng.uniform(-0.02, 0.02), 0.6, 0.24
    body = ellipse(cx, cy, r, r, 0, 64)
    glass = part("flask", _jit(rng, (236, 240, 244), 4), poly(body), poly(rect(cx, cy - r - 0.08, 0.1, 0.22)))

    def level_poly(level):
        top = cy + r - 2 * r * level
        inner = ellipse(cx, cy, r - 0.015, r - 0.015, 0, 96)
        return poly(inner[inner[:, 1] >= top])

    level = rng.uniform(0.55, 0.65)
    parts = [glass, part("liquid", _jit(rng, liquid), level_poly(level)),
             part("label", _jit(rng, (250, 250, 246), 3), poly(rect(cx, cy + 0.06, 0.22, 0.12))),
             part("stripe", _jit(rng, liquid), poly(rect(cx, cy + 0.06, 0.18, 0.03)))]
    gt: list = []
    if edit == "missing":  # the label, or only its stripe
        gone = [2, 3] if rng.random() < 0.5 else [3]
        gt = _prims(*(parts[i] for i in gone))
        for i in gone:
            parts[i] = None
    elif edit in ("extra", "misplaced"):  # overfilled into the neck, or too little liquid
        new = part("liquid", parts[1]["rgb"], level_poly(0.98), poly(rect(cx, cy - r - 0.02, 0.08, 0.1))) \
            if edit == "extra" else part("liquid", parts[1]["rgb"], level_poly(0.25))
        gt, parts[1] = _prims(parts[1], new), new
    elif edit == "mismatched":  # stripe colour names another liquid
        parts[3] = {**parts[3], "rgb": _jit(rng, liquids[(index + 1) % 3])}
        gt = _prims(parts[3])
    return parts, gt


def lunch_tray(rng, index, edit=None):
    tray = part("tray", _jit(rng, (232, 228, 216)), poly(rect(0.5, 0.5, 0.86, 0.62)))
    d = rng.uniform(0.06, 0.068)

    def cookie(x, y, s=1.0):
        return part("cookie", _jit(rng, (170, 110, 50)), poly(ellipse(x, y, d * s, d * s * 0.95, rng.uniform(0, 3), 20)))

    cookies = [cookie(0.26 + rng.uniform(-0.015, 0.015), 0.3 + k * 0.2 + rng.uniform(-0.015, 0.015)) for k in range(3)]
    sx, sy, cx, cy = 0.68, 0.34, 0.7, 0.66
    sandwich = lambda x, y: part("sandwich", _jit(rng, (236, 200, 120)),  # noqa: E731
                                 poly(_rot(np.array([[-0.11, 0.07], [0.11, 0.07], [0.0, -0.09]]), rng.uniform(-0.2, 0.2)) + [x, y]))
    cup = lambda x, y: part("cup", _jit(rng, (60, 110, 170)),  # noqa: E731
                            line(ellipse(x, y, 0.07, 0.07, 0, 32)[list(range(32)) + [0]], 0.03))
    parts = [tray, *cookies, sandwich(sx, sy), cup(cx, cy)]
    gt: list = []
    k = 1 + int(rng.integers(3))  # a cookie
    if edit == "missing":
        gt, parts[k] = _prims(parts[k]), None
    elif edit == "extra":
        parts.append(cookie(0.45, rng.uniform(0.35, 0.65)))
        gt = _prims(parts[-1])
    elif edit == "misplaced":  # sandwich and cup swapped
        new = [sandwich(cx, cy), cup(sx, sy)]
        gt = _prims(parts[4], parts[5], *new)
        parts[4:6] = new
    elif edit == "mismatched":  # one cookie much smaller
        new = cookie(*parts[k]["prims"][0][1].mean(0), 0.55)
        gt, parts[k] = _prims(parts[k], new), new
    return parts, gt


BUILDERS: dict[str, Callable] = {"pin_box": pin_box, "fastener_bag": fastener_bag,
                                 "cable_pair": cable_pair, "flask": flask, "lunch_tray": lunch_tray}
LOGICAL = ("missing", "extra", "misplaced", "mismatched")
STRUCTURAL = ("stain", "crack", "chip")
# LOCO-style ground truth: a pixel value per defect kind, named in defects_config.json
PIXEL_VALUES = {k: 250 - 10 * i for i, k in enumerate(LOGICAL + STRUCTURAL)}


# --- rendering ---------------------------------------------------------------------------------
def _to_pixels(p: np.ndarray, cam: dict, w: int, h: int, scale: float) -> list[tuple[float, float]]:
    m = min(w, h)
    q = _rot((p - 0.5) * cam["zoom"], cam["angle"]) + 0.5 + cam["shift"]
    q = q * m + [(w - m) / 2, (h - m) / 2]
    return [tuple(v) for v in (q * scale)]


def _draw(draw: ImageDraw.ImageDraw, prims, fill, cam, w, h, scale) -> None:
    m = min(w, h) * scale * cam["zoom"]
    for prim in prims:
        pts = _to_pixels(prim[1], cam, w, h, scale)
        if prim[0] == "poly":
            draw.polygon(pts, fill=fill)
        else:
            draw.line(pts, fill=fill, width=max(1, round(prim[2] * m)), joint="curve")


def _footprint(prims, cam, w, h) -> np.ndarray:
    im = Image.new("L", (w, h), 0)
    _draw(ImageDraw.Draw(im), prims, 255, cam, w, h, 1.0)
    return np.asarray(im) > 0


def _blob(rng, c, r, n=14) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = r * (1 + 0.35 * rng.uniform(-1, 1, n))
    return np.stack([c[0] + rad * np.cos(t), c[1] + rad * np.sin(t)], 1)


def render(category: str, parts: list, cam: dict, defects: list, size: tuple[int, int],
           rng: np.random.Generator, photo: bool = True) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(rgb uint8 (h, w, 3), part labels (h, w) uint8, one mask per defect); ``photo=False``: no
    lighting, blur, noise or JPEG."""
    w, h = size
    types = TYPES[category]
    bg = np.array(BACKGROUNDS[category], float)
    hi = Image.new("RGB", (w * SS, h * SS), tuple(int(v) for v in bg))
    labels = Image.new("L", (w, h), 0)
    dh, dl = ImageDraw.Draw(hi), ImageDraw.Draw(labels)
    for p in parts:
        if p is None:
            continue
        _draw(dh, p["prims"], tuple(p["rgb"]), cam, w, h, SS)
        _draw(dl, p["prims"], types.index(p["kind"]) + 1, cam, w, h, 1.0)
    masks = []
    for d in defects:  # drawn over the parts (the target's neighbours too): the mask is what changed
        _draw(dh, [d["prim"]], tuple(d["rgb"]), cam, w, h, SS)
        mark = _footprint([d["prim"]], cam, w, h)
        if d["kind"] == "chip":  # the bitten-off piece shows the background: no part there
            masks.append(mark & (np.asarray(labels) > 0))  # background painted over itself is unchanged
            _draw(dl, [d["prim"]], 0, cam, w, h, 1.0)
        else:
            masks.append(mark)
    img = np.asarray(hi.resize((w, h), Image.BOX), np.float32) / 255
    if not photo:
        return (img * 255).round().astype(np.uint8), np.asarray(labels), masks
    # lighting: a low-frequency texture, a light spot, colour temperature, gamma
    coarse = rng.normal(0, 1, (6, 8))
    tex = np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((w, h), Image.BICUBIC))
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    sx, sy = rng.uniform(0.2, 0.8) * w / max(w, h), rng.uniform(0.2, 0.8) * h / max(w, h)
    spot = np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * rng.uniform(0.25, 0.5) ** 2))
    light = (1 + 0.03 * tex) * (0.8 + rng.uniform(0.15, 0.35) * spot)
    temp = rng.uniform(-0.08, 0.08)
    img = img * light[..., None] * np.array([1 + temp, 1.0, 1 - temp])
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)
    out = Image.fromarray((img * 255).round().astype(np.uint8))
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.2) * min(w, h) / 900))
    arr = np.asarray(out, np.float32) + rng.normal(0, rng.uniform(1.5, 5.0), (h, w, 3))
    out = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=int(rng.integers(75, 96)))
    return np.asarray(Image.open(buf).convert("RGB")), np.asarray(labels), masks


def _structural(rng, kind: str, parts: list, category: str) -> dict:
    big = [p for p in parts if p is not None and p["kind"] != TYPES[category][0]]
    big = [p for p in big if p["kind"] not in ("tooth", "stripe")] or big
    p = big[int(rng.integers(len(big)))]
    pts = np.concatenate([q[1] for q in p["prims"]])
    c = pts[int(rng.integers(len(pts)))] * 0.35 + pts.mean(0) * 0.65
    if kind == "stain":
        rgb = [(30, 30, 28), (150, 30, 140), (40, 160, 190), (90, 120, 30)][int(rng.integers(4))]
        return {"kind": kind, "rgb": rgb, "prim": poly(_blob(rng, c, rng.uniform(0.025, 0.04)))}
    if kind == "crack":
        a = rng.uniform(0, np.pi)
        t = np.linspace(-1, 1, 7)[:, None]
        zig = np.array([math.cos(a), math.sin(a)]) * t * 0.07
        zig = zig + np.array([-math.sin(a), math.cos(a)]) * rng.uniform(-0.01, 0.01, (7, 1)) + c
        lum = np.mean(p["rgb"])
        return {"kind": kind, "rgb": (25, 25, 25) if lum > 100 else (235, 235, 230),
                "prim": line(zig, 0.009)}
    edge = pts[int(rng.integers(len(pts)))]  # chip: a bite out of the part's outline
    return {"kind": "chip", "rgb": BACKGROUNDS[category],
            "prim": poly(_blob(rng, edge, rng.uniform(0.03, 0.045)))}


# --- files -------------------------------------------------------------------------------------
def generate_heldout(root: str | os.PathLike, seed: int = 0, size_factor: float = 0.5,
                     categories: list[str] | None = None, n_train: int = 16, n_validation: int = 4,
                     n_test_good: int = 12, n_logical: int = 12, n_structural: int = 12,
                     overwrite: bool = False, capture: str = "photo") -> Path:
    """Write the held-out family under ``root`` (MVTec LOCO layout + part_labels); return root.
    Deterministic in ``seed``; a complete category folder with the same parameters is kept
    (``locoad.data.generated``: one run generates, parallel ones wait for it). ``capture``:
    ``photo`` (camera moves, light, blur, noise, JPEG) or ``clean`` (the same scenes, none of it)."""
    names, params = family_params(FAMILY, "held-out", SIZES, categories, capture, size_factor, version=VERSION,
                                  note=NOTE, seed=seed, n_train=n_train, n_validation=n_validation,
                                  n_test_good=n_test_good, n_logical=n_logical, n_structural=n_structural)
    root = Path(root)
    return ensure_complete(root, names, params, ("family", FAMILY),
                           lambda r, name: _write_category(r, name, params), overwrite)


def _write_category(root: Path, name: str, params: dict) -> None:
    capture = params["capture"]
    seed, ci = params["seed"], CATEGORIES.index(name)  # the random streams do not depend on which others are made
    base = root / name
    base.mkdir(parents=True)
    write_json(base / "dataset.json", {**params, "category": name, "part_types": TYPES[name]})  # first: marks the folder ours
    write_json(base / "defects_config.json",
               [{"defect_name": k, "pixel_value": v, "saturation_threshold": 1.0, "relative_saturation": True}
                for k, v in PIXEL_VALUES.items()])
    size = tuple(round(v * params["size_factor"]) for v in SIZES[name])
    for si, (split, kind, n) in enumerate(family_splits(params)):
        for i in range(n):
            rng = np.random.default_rng([seed, ci, si, i, 4242])
            cam = {"angle": rng.uniform(-0.07, 0.07), "zoom": rng.uniform(0.94, 1.03),
                   "shift": rng.uniform(-0.025, 0.025, 2)}
            if capture == "clean":  # drawn all the same: the scenes stay those of the photo set
                cam = {"angle": 0.0, "zoom": 1.0, "shift": np.zeros(2)}
            edit = LOGICAL[(i + ci) % 4] if kind == "logical_anomalies" else None
            parts, gt = BUILDERS[name](rng, i, edit)
            defects = []
            if kind == "structural_anomalies":
                defects = [_structural(rng, STRUCTURAL[(i + ci) % 3], parts, name)]
            defect_names = [edit] if edit else [d["kind"] for d in defects]
            rgb, labels, masks = render(name, parts, cam, defects, size, rng, photo=capture == "photo")
            if edit is not None:  # where the edited parts are now and where they were
                masks = [_footprint(gt, cam, *size)]
            stem = f"{i:03d}"
            write_png(base / split / kind / f"{stem}.png", rgb)
            write_png(base / "part_labels" / split / kind / f"{stem}.png", labels)
            for j, m in enumerate(masks):
                write_png(base / "ground_truth" / kind / stem / f"{j:03d}.png",
                          m.astype(np.uint8) * np.uint8(PIXEL_VALUES[defect_names[j]]))
