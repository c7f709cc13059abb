"""Render synthetic LOCO-like scenes, inject anomalies and write the MVTec LOCO AD layout.

Every image is fully described by its scene metadata (parts, pose, lighting, noise seed and
structural defects): :func:`render_scene` turns such a dict back into the exact same pixels,
which is what the tests use to compare an anomaly with its defect-free twin.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from locoad.data.generated import ensure_complete, write_json, write_png
from locoad.errors import ConfigError

from .categories import CATEGORIES, COLOURS, LOGICAL_KINDS, REGISTRY, Category, Part

GENERATOR = "locoad.data.synthetic"
VERSION = 6  # 2: normal variants in rotation (balanced splits); 3: defect pixel values + defects_config.json;
# 4: screw-bag nuts and washers touch in some scenes; 5: varied captures add a light spot, a tone
# curve and a JPEG round trip (clean captures unchanged); 6: a defect's least area is of the
# scene's square, not the varied canvas (wide canvases had no extra or missing levers; clean unchanged)
STRUCTURAL_KINDS: tuple[str, ...] = ("scratch", "contamination", "break", "dent")
# Each ground-truth PNG is one region; its pixel value names the defect kind, as MVTec LOCO AD's
# <category>/defects_config.json does. A misplaced part's mask covers where it was and where it
# is: finding either half shows the defect, so it saturates at half its area (relative 0.5).
DEFECT_PIXEL_VALUES: dict[str, int] = {k: 255 - i for i, k in enumerate(LOGICAL_KINDS + STRUCTURAL_KINDS)}
RELATIVE_SATURATION: dict[str, float] = {"misplaced": 0.5}
# (split, type) in LOCO order, then the optional labelled tuning split (not in MVTec LOCO AD);
# the index seeds the per-image random generator, so every (split, type) is its own random
# stream: adding tune images never changes a train, validation or test image.
SPLITS: tuple[tuple[str, str], ...] = (
    ("train", "good"), ("validation", "good"), ("test", "good"),
    ("test", "logical_anomalies"), ("test", "structural_anomalies"),
    ("tune", "good"), ("tune", "logical_anomalies"), ("tune", "structural_anomalies"))
COUNT_KEYS = ("n_train", "n_validation", "n_test_good", "n_logical", "n_structural",
              "n_tune_good", "n_tune_logical", "n_tune_structural")  # aligned with SPLITS
# Foreign colours for contamination: none of them is a part colour of any category.
FOREIGN: dict[str, tuple[int, int, int]] = {
    "moss": (46, 104, 44), "magenta": (192, 44, 150), "soot": (34, 30, 28),
    "cyan": (36, 170, 192), "rust": (150, 62, 22), "chalk": (248, 248, 244)}
MIN_DEFECT_AREA = 0.001  # fraction of the scene's square (shorter side squared) a ground-truth mask must cover
CAPTURES = ("clean", "varied")
# MVTec LOCO AD's native image sizes (width, height) per category; capture="varied" renders at
# these times ``size_factor``.
NATIVE_SIZES: dict[str, tuple[int, int]] = {
    "breakfast_box": (1600, 1280), "juice_bottle": (800, 1600), "pushpins": (1700, 1000),
    "screw_bag": (1600, 1100), "splicing_connectors": (1700, 850)}


@dataclass
class Rendered:
    """Pixels of one scene: image, true part-type map, part-uid map, one mask per defect."""

    rgb: np.ndarray  # (S, S, 3) uint8
    part_labels: np.ndarray  # (S, S) uint8, 0 background, 1..P part type id
    uids: np.ndarray  # (S, S) int32, 0 background, else the uid of the visible part
    defect_masks: list[np.ndarray]  # bool (S, S), aligned with meta["defects"]


# --- geometry --------------------------------------------------------------------------------
Size = int | tuple[int, int]  # a square side, or (height, width) of a capture-varied canvas


def _hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int | np.integer) else (int(size[0]), int(size[1]))


def _frame(h: int, w: int) -> tuple[int, float, float]:
    """Scene units: the scene square [0, 1]^2 is the canvas's centred ``m x m`` square
    (m = the short side); a non-square canvas extends it on the long axis. Returns (m, ox, oy),
    pixel = scene * m + offset."""
    m = min(h, w)
    return m, (w - m) / 2, (h - m) / 2


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (X, Y) in scene units (see :func:`_frame`)."""
    m, ox, oy = _frame(h, w)
    x, y = np.meshgrid((np.arange(w) + 0.5 - ox) / m, (np.arange(h) + 0.5 - oy) / m)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _flips(pose: dict) -> tuple[int, int]:
    return (-1 if pose.get("flip_x") else 1), (-1 if pose.get("flip_y") else 1)


def _posed(pose: dict, point: Iterable[float]) -> tuple[float, float]:
    """Local scene coordinates -> image coordinates (mirror and zoom about the centre, rotation,
    then shift; clean scenes have no mirror and zoom 1)."""
    a = math.radians(pose["angle"])
    fx, fy = _flips(pose)
    z = pose.get("zoom", 1.0)
    dx, dy = (float(v) - 0.5 for v in point)
    dx, dy = dx * fx * z, dy * fy * z
    return (math.cos(a) * dx - math.sin(a) * dy + 0.5 + pose["shift"][0],
            math.sin(a) * dx + math.cos(a) * dy + 0.5 + pose["shift"][1])


def _segment_distance(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of every (x, y) to the polyline through ``points`` (N, 2)."""
    best = np.full(x.shape, np.inf)
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
        vx, vy = bx - ax, by - ay
        t = np.clip(((x - ax) * vx + (y - ay) * vy) / max(vx * vx + vy * vy, 1e-12), 0, 1)
        best = np.minimum(best, np.hypot(x - ax - t * vx, y - ay - t * vy))
    return best


# Shape tests in the part's own frame: u along its width, v along its height, both in [-1, 1].
SHAPES = {
    "ellipse": lambda u, v, p: u * u + v * v <= 1,
    "rect": lambda u, v, p: (np.abs(u) <= 1) & (np.abs(v) <= 1),
    "ring": lambda u, v, p: (u * u + v * v <= 1) & (u * u + v * v >= p["inner"] ** 2),
    "hexagon": lambda u, v, p: (np.abs(v) <= 0.866) & (1.732 * np.abs(u) + np.abs(v) <= 1.732),
    # Shaft plus a wider head at the +u end.
    "screw": lambda u, v, p: (np.abs(u) <= 1) & ((np.abs(v) <= 0.5) | ((u >= 0.8) & (np.abs(v) <= 1))),
    # Body, a shoulder that narrows linearly, and the neck.
    "bottle": lambda u, v, p: (v <= 1) & (
        ((v >= -0.42) & (np.abs(u) <= 1)) | ((v >= -1) & (np.abs(u) <= 0.38))
        | ((v >= -0.58) & (np.abs(u) <= 0.38 + 0.62 * (v + 0.58) / 0.16))),
}


def _rasterize(part: Part, pose: dict, size: Size, noise_seed: int
               ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The part's bounding box, its mask there and a mild shading factor (curved surface)."""
    h, w = _hw(size)
    m, ox, oy = _frame(h, w)
    z = pose.get("zoom", 1.0)
    if part["shape"] == "polyline":
        pts = np.array([_posed(pose, p) for p in part["points"]])
        half = part["size"][0] / 2 * z
        lo, hi = pts.min(0) - half, pts.max(0) + half
    else:
        cx, cy = _posed(pose, part["center"])
        r = 0.5 * math.hypot(*part["size"]) * z
        lo, hi = np.array([cx - r, cy - r]), np.array([cx + r, cy + r])
    offset = np.array([ox, oy])
    x0, y0 = np.maximum(np.floor(lo * m + offset).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(hi * m + offset).astype(int) + 1, (w, h))
    box = (slice(y0, y1), slice(x0, x1))
    x, y = (g[box] for g in _grid(h, w))
    if part["shape"] == "polyline":
        v = _segment_distance(x, y, pts) / half
        mask, shade = v <= 1, 1.0 - 0.25 * v * v  # a round cable: darker towards its sides
    else:
        # A mirror F turns R(a) into R(det F * a) F: rotate by that, then undo F on (u, v).
        fx, fy = _flips(pose)
        a = math.radians(fx * fy * part["angle"] + pose["angle"])
        dx, dy = x - cx, y - cy
        hu, hv = part["size"][0] / 2 * z, part["size"][1] / 2 * z
        u = (dx * math.cos(a) + dy * math.sin(a)) / hu * fx
        v = (-dx * math.sin(a) + dy * math.cos(a)) / hv * fy
        mask = SHAPES[part["shape"]](u, v, part)
        # Darker rim plus a light from the top left (in image coordinates).
        ix, iy = dx / hu, dy / hv
        shade = 1.0 - 0.07 * np.minimum(u * u + v * v, 2.0) - 0.04 * (ix + iy)
    if part.get("grain"):  # granular fill (cereal): a fine multiplicative texture
        rng = np.random.default_rng([noise_seed, 2, part["uid"]])
        n = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)
        shade = shade * (1.0 + part["grain"] * n / (n.std() + 1e-6))
    return box, mask, shade


def _disk(center: Iterable[float], radius: float, size: Size) -> np.ndarray:
    x, y = _grid(*_hw(size))
    cx, cy = center
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


@lru_cache(maxsize=8)
def _background(rgb: tuple[int, int, int], size: Size, noise_seed: int) -> np.ndarray:
    """Background colour with a subtle low-frequency mottle and a fine grain (read-only;
    cached because an anomaly renders the same scene several times)."""
    rng = np.random.default_rng([noise_seed, 0])
    h, w = _hw(size)
    m, ox, oy = _frame(h, w)
    cx, cy = (np.arange(w) + 0.5 - ox) / m, (np.arange(h) + 0.5 - oy) / m
    low = np.zeros((h, w))
    for fx, fy, ph in rng.uniform((-2.5, -2.5, 0), (2.5, 2.5, 2 * np.pi), (4, 3)):
        # cos(a + b) = cos a cos b - sin a sin b: two outer products instead of a full cos
        a, b = 2 * np.pi * fx * cx + ph, 2 * np.pi * fy * cy
        low += np.outer(np.cos(b), np.cos(a)) - np.outer(np.sin(b), np.sin(a))
    fine = ndimage.gaussian_filter(rng.standard_normal((h, w)), 1.0)
    texture = 1.0 + 0.015 * low + 0.012 * fine / (fine.std() + 1e-6)
    out = (texture[..., None] * np.asarray(rgb)).astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=8)
def _sensor_noise(size: Size, noise_seed: int) -> np.ndarray:
    """Unit Gaussian pixel noise (read-only, cached like the background)."""
    out = np.random.default_rng([noise_seed, 1]).standard_normal((*_hw(size), 3), np.float32)
    out.flags.writeable = False
    return out


# --- rendering -------------------------------------------------------------------------------
def render_scene(meta: dict, image_size: Size) -> Rendered:
    """Render the scene described by ``meta`` (parts, pose, lighting, noise, defects) on a
    square canvas (an int side) or a (height, width) one."""
    s, seed = _hw(image_size), meta["noise_seed"]
    m = min(s)
    background = tuple(meta.get("background_rgb") or COLOURS[REGISTRY[meta["category"]].background])
    canvas = _background(background, image_size, seed).copy()
    uids = np.zeros(s, np.int32)
    labels = np.zeros(s, np.uint8)
    defects = meta.get("defects", [])
    masks = [np.zeros(s, bool) for _ in defects]
    breaks = [i for i, d in enumerate(defects) if d["kind"] == "break"]
    for part in meta["parts"]:
        box, mask, shade = _rasterize(part, meta["pose"], image_size, seed)
        for i in breaks:
            if defects[i]["uid"] == part["uid"]:  # the chunk shows what lies beneath
                cut = _disk(defects[i]["center"], defects[i]["radius"], image_size)[box]
                masks[i][box] |= mask & cut
                mask = mask & ~cut
            masks[i][box] &= ~mask  # a part drawn later hides the hole
        canvas[box][mask] = np.asarray(part["rgb"]) * shade[mask, None]
        uids[box][mask] = part["uid"]
        labels[box][mask] = part["type_id"]
    x, y = _grid(*s)
    for i, d in enumerate(defects):
        if d["kind"] == "break":
            continue
        if d["kind"] == "contamination":
            blob = np.zeros(s, bool)
            for bx, by, rx, ry, ang in d["blobs"]:
                c, sn = math.cos(ang), math.sin(ang)
                u, v = ((x - bx) * c + (y - by) * sn) / rx, (-(x - bx) * sn + (y - by) * c) / ry
                blob |= u * u + v * v <= 1
            r2 = ((x - d["center"][0]) ** 2 + (y - d["center"][1]) ** 2) / d["radius"] ** 2
            canvas[blob] = np.asarray(d["rgb"]) * (1.0 - 0.15 * np.minimum(r2, 1.0))[blob, None]
            masks[i] = blob
            continue
        on = uids == d["uid"]
        if d["kind"] == "dent":  # a smooth, compactly supported darkening (or glint)
            r2 = ((x - d["center"][0]) ** 2 + (y - d["center"][1]) ** 2) / d["radius"] ** 2
            masks[i] = on & (r2 < 1)
            profile = np.where(masks[i], (1 - np.minimum(r2, 1)) ** 2, 0.0)
            canvas *= (1.0 - d["strength"] * profile)[..., None].astype(np.float32)
        elif d["kind"] == "scratch":
            line = on & (_segment_distance(x, y, np.array([d["p0"], d["p1"]])) <= d["width"] / 2)
            canvas[line] = d["rgb"]
            masks[i] = ndimage.binary_dilation(line, iterations=max(1, m // 85))  # annotator slack
    light = meta["lighting"]
    field = light["brightness"] * (1 + light["gradient"][0] * (x - 0.5)
                                   + light["gradient"][1] * (y - 0.5))
    if light.get("vignette"):  # lens fall-off towards the corners
        corner = ((s[1] / m) ** 2 + (s[0] / m) ** 2) / 4
        field = field * (1 - light["vignette"] * ((x - 0.5) ** 2 + (y - 0.5) ** 2) / corner)
    if light.get("spot"):  # a lamp's pool of light: brighter around one point, in scene units
        sx, sy, sigma, strength = light["spot"]
        field = field * (1 + strength * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * sigma**2)))
    canvas *= field.astype(np.float32)[..., None] * np.asarray(light["white_balance"], np.float32)
    if light.get("blur"):  # defocus, in pixels at this canvas size
        canvas = ndimage.gaussian_filter(canvas, (light["blur"], light["blur"], 0))
    canvas += light["noise_sigma"] * _sensor_noise(image_size, seed)
    if light.get("gamma"):  # the camera's tone curve, which per-channel gains cannot undo
        canvas = 255.0 * (np.clip(canvas, 0, 255) / 255.0) ** light["gamma"]
    rgb = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    if light.get("jpeg"):  # the file a camera writes (quality 1-95)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=int(light["jpeg"]))
        rgb = np.asarray(Image.open(buf).convert("RGB"))
    return Rendered(rgb, labels, uids, masks)


def sample_scene(category: str, rng: np.random.Generator, index: int | None = None) -> dict:
    """A normal scene of ``category`` with random pose, lighting and noise seed.

    ``index`` picks the normal variant in rotation (:meth:`Category.variant`); None draws it.
    """
    cat = REGISTRY[category]
    parts = cat.sample(rng, index)
    return {
        "category": category,
        "pose": {"angle": rng.uniform(-3, 3), "shift": [rng.uniform(-0.015, 0.015) for _ in "xy"]},
        "lighting": {"brightness": rng.uniform(0.86, 1.12),
                     "white_balance": [rng.uniform(0.95, 1.05) for _ in "rgb"],
                     "gradient": [rng.uniform(-0.08, 0.08) for _ in "xy"],
                     "noise_sigma": rng.uniform(1.0, 2.5)},
        "noise_seed": int(rng.integers(2**31)),
        "parts": parts,
        "anomaly": None,
        "defects": [],
    }


def sample_layout(category: str, seed: int) -> dict:
    """What a capture-varied data set's generator seed fixes for a category: the camera's
    mirror (a mirrored layout), base angle and zoom, and the background's tint. Every image of
    that data set shares it, so another seed is another layout, not just other noise."""
    rng = np.random.default_rng([seed, CATEGORIES.index(category), 7919])
    return {"flip_x": bool(rng.random() < 0.5), "flip_y": bool(rng.random() < 0.5),
            "angle": float(rng.uniform(-4, 4)), "zoom": float(rng.uniform(0.9, 1.0)),
            "tint": [int(v) for v in rng.integers(-24, 25, 3)]}


def vary_capture(meta: dict, layout: dict, size: tuple[int, int], rng: np.random.Generator) -> dict:
    """Replace a clean scene's pose and lighting by a photo-like capture: the layout's mirror,
    angle and zoom plus a per-image rotation, shift and zoom; exposure, colour cast, lighting
    gradient, vignetting, a light spot, defocus blur, sensor noise, a tone curve and a JPEG round
    trip. ``size`` (h, w) scales the blur. The spot, tone curve and JPEG quality (version 5) come
    from a stream of their own, so every other draw, and hence every scene and defect, is the
    same as before them."""
    bg = COLOURS[REGISTRY[meta["category"]].background]
    camera = np.random.default_rng([meta["noise_seed"], 5])
    spot = [float(camera.uniform(0.0, 1.0)), float(camera.uniform(0.0, 1.0)),
            float(camera.uniform(0.2, 0.5)), float(camera.uniform(0.0, 0.35))]
    gamma, jpeg = float(np.exp(camera.uniform(np.log(0.8), np.log(1.25)))), int(camera.integers(75, 96))
    return {
        **meta,
        "pose": {"angle": layout["angle"] + rng.uniform(-3, 3),
                 "shift": [rng.uniform(-0.03, 0.03) for _ in "xy"],
                 "zoom": layout["zoom"] * rng.uniform(0.98, 1.02),
                 "flip_x": layout["flip_x"], "flip_y": layout["flip_y"]},
        "lighting": {"brightness": rng.uniform(0.72, 1.18),
                     "white_balance": [rng.uniform(0.86, 1.14) for _ in "rgb"],
                     "gradient": [rng.uniform(-0.3, 0.3) for _ in "xy"],
                     "vignette": rng.uniform(0.1, 0.4),
                     "blur": rng.uniform(0.0, 1.6) * min(size) / 1000,
                     "noise_sigma": rng.uniform(2.0, 6.0),
                     "spot": spot, "gamma": gamma, "jpeg": jpeg},
        "background_rgb": [int(np.clip(c + t, 0, 255)) for c, t in zip(bg, layout["tint"])],
    }


# --- anomalies -------------------------------------------------------------------------------
def _pick(mask: np.ndarray, rng: np.random.Generator) -> list[float] | None:
    """Scene coordinates of the centre of a random True pixel of ``mask``."""
    idx = np.flatnonzero(mask)
    if not idx.size:
        return None
    row, col = divmod(int(idx[rng.integers(idx.size)]), mask.shape[1])
    m, ox, oy = _frame(*mask.shape)
    return [(col + 0.5 - ox) / m, (row + 0.5 - oy) / m]


def _visible(before: Rendered, after: Rendered, defect: np.ndarray) -> bool:
    """A defect counts when its mask is large enough and the pixels there really changed."""
    # of the scene's square, not the canvas: a wide varied canvas (splicing connectors: twice the
    # square) rejected every lever edit, so its extra and missing levers fell back to other kinds
    if defect.sum() < MIN_DEFECT_AREA * min(defect.shape) ** 2:
        return False
    diff = np.abs(before.rgb.astype(np.int16) - after.rgb.astype(np.int16)).max(-1)
    return float(diff[defect].mean()) >= 8.0


def _propose_defect(kind: str, cat: Category, meta: dict, clean: Rendered,
                    rng: np.random.Generator, scale: float = 1.0) -> dict:
    """Parameters (image coordinates) of one structural defect on the clean render; ``scale``
    multiplies its size (radius, scratch length and width)."""
    h, w = clean.uids.shape
    s, ox, oy = _frame(h, w)  # s: the scene square's side in pixels
    areas = np.bincount(clean.uids.ravel(), minlength=max(p["uid"] for p in meta["parts"]) + 1)
    targets = [p for p in meta["parts"]
               if p["kind"] in cat.structural_targets and areas[p["uid"]] >= 0.003 * s * s]
    weights = np.array([areas[p["uid"]] for p in targets], dtype=float)
    if kind not in ("scratch", "break"):  # these need room: favour large parts more strongly
        weights = np.sqrt(weights)
    part = targets[rng.choice(len(targets), p=weights / weights.sum())]
    visible = clean.uids == part["uid"]
    inner = ndimage.binary_erosion(visible, iterations=max(1, s // 64))
    centre = _pick(inner, rng) or _pick(visible, rng)
    equiv_r = math.sqrt(areas[part["uid"]] / math.pi) / s
    lum = float(np.dot(part["rgb"], (0.3, 0.59, 0.11)))
    if kind == "scratch":
        a, half = rng.uniform(0, math.pi), scale * rng.uniform(0.12, 0.2)
        d = (half * math.cos(a), half * math.sin(a))
        shade = (44, 40, 38) if lum > 110 else (236, 234, 226)
        return {"kind": kind, "uid": part["uid"], "p0": [centre[0] - d[0], centre[1] - d[1]],
                "p1": [centre[0] + d[0], centre[1] + d[1]], "width": max(1.6 / s, 0.012 * scale),
                "rgb": [int(np.clip(c + rng.integers(-8, 9), 0, 255)) for c in shade]}
    if kind == "dent":  # dark parts get a bright glint instead: a darker dent would not show
        strength = rng.uniform(0.35, 0.5) if lum > 90 else -rng.uniform(0.6, 0.9)
        return {"kind": kind, "uid": part["uid"], "center": centre,
                "radius": min(scale * rng.uniform(0.065, 0.095), 0.9 * equiv_r), "strength": strength}
    if kind == "break":  # bite into the part from an edge where it lies on something below
        order = {p["uid"]: k for k, p in enumerate(meta["parts"])}
        below = (clean.uids == 0) | np.isin(clean.uids, [u for u, k in order.items()
                                                         if k < order[part["uid"]]])
        edge = visible & ndimage.binary_dilation(below)
        return {"kind": kind, "uid": part["uid"], "center": _pick(edge, rng) or centre,
                "radius": min(scale * rng.uniform(0.08, 0.11), 0.8 * equiv_r)}
    # contamination: on a part, or on the background close to the parts
    if rng.random() < 0.4:
        near = ndimage.distance_transform_edt(clean.uids == 0)
        x, y = _grid(h, w)
        border = np.minimum.reduce([x, y, 1 - x, 1 - y])
        centre = _pick((near >= 0.015 * s) & (near <= 0.05 * s) & (border >= 0.13), rng) or centre
    radius = scale * rng.uniform(0.05, 0.075)
    blobs = []
    for _ in range(int(rng.integers(3, 6))):
        off_r, off_a = radius * 0.6 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        blobs.append([centre[0] + off_r * math.cos(off_a), centre[1] + off_r * math.sin(off_a),
                      radius * rng.uniform(0.55, 0.9), radius * rng.uniform(0.45, 0.8),
                      rng.uniform(0, math.pi)])
    row, col = min(int(centre[1] * s + oy), h - 1), min(int(centre[0] * s + ox), w - 1)
    local = clean.rgb[max(row - 2, 0):row + 3, max(col - 2, 0):col + 3].reshape(-1, 3).mean(0)
    names = sorted(FOREIGN, key=lambda n: -np.linalg.norm(np.subtract(FOREIGN[n], local)))
    name = names[rng.integers(2)]  # one of the two colours that stand out most here
    return {"kind": kind, "center": centre, "radius": radius, "blobs": blobs, "colour": name,
            "rgb": list(FOREIGN[name])}


def make_structural(meta: dict, kinds: list[str], rng: np.random.Generator, size: Size,
                    scale: float = 1.0) -> tuple[dict, Rendered]:
    """Add one visible defect per requested kind (falling back to other kinds if needed), its
    size times ``scale``."""
    cat, clean = REGISTRY[meta["category"]], render_scene(meta, size)
    defects: list[dict] = []
    for kind in kinds:
        order = [kind] + [k for k in STRUCTURAL_KINDS if k != kind]
        for attempt in range(12):
            d = _propose_defect(order[attempt // 4], cat, meta, clean, rng, scale)
            trial = render_scene({**meta, "defects": [d]}, size)
            if _visible(clean, trial, trial.defect_masks[0]):
                defects.append(d)
                break
    if not defects:
        raise RuntimeError(f"no visible structural defect for {meta['category']}")
    out = {**meta, "defects": defects,
           "anomaly": {"class": "structural", "kinds": [d["kind"] for d in defects]}}
    return out, render_scene(out, size)


def make_logical(meta: dict, kind: str, rng: np.random.Generator, size: Size
                 ) -> tuple[dict, Rendered, np.ndarray]:
    """Apply one logical edit that breaks a rule and is visible; return meta, pixels, mask."""
    cat, before = REGISTRY[meta["category"]], render_scene(meta, size)
    for k in [kind] + [k for k in LOGICAL_KINDS if k != kind]:
        for _ in range(4):
            edit = getattr(cat, k)(meta["parts"], rng)
            if edit is None or not cat.check(edit.parts):
                continue
            out = {**meta, "parts": edit.parts,
                   "anomaly": {"class": "logical", "kind": k, "description": edit.description,
                               "uids": edit.uids, "mask_mode": edit.mode}}
            after = render_scene(out, size)
            was, now = np.isin(before.uids, edit.uids), np.isin(after.uids, edit.uids)
            mask = (was ^ now) if edit.mode == "xor" else (was | now)
            if _visible(before, after, mask):
                return out, after, mask
    raise RuntimeError(f"no visible logical anomaly for {meta['category']}")


# --- files -----------------------------------------------------------------------------------
def _describe(cat: Category, params: dict) -> dict:
    """The category-level dataset.json: part types, rules, anomaly kinds, extra folders."""
    return {
        "generator": GENERATOR, "version": VERSION, "category": cat.name,
        "part_types": {str(cat.type_id(k)): k for k in cat.part_types},
        "background_colour": COLOURS[cat.background],
        "constraints": list(cat.rules),
        "logical_anomalies": list(LOGICAL_KINDS), "structural_anomalies": list(STRUCTURAL_KINDS),
        "params": params,
        "notes": ("MVTec LOCO AD layout plus part_labels/<split>/<type>/NNN.png (uint8 part "
                  "type ids, 0 = background) and meta/<split>/<type>/NNN.json (scene: parts in "
                  "local coordinates, pose, lighting, anomaly). ground_truth holds one mask per "
                  "defect, its non-zero value naming the defect in defects_config.json. Parts never touch the image border. The optional labelled "
                  "tuning split tune/<type>/ (masks in ground_truth_tune/) is drawn from its own "
                  "random streams, disjoint from test/."),
    }


def defects_config() -> list[dict]:
    """The LOCO ``defects_config.json``: pixel value and saturation of every defect kind."""
    return [{"defect_name": k, "pixel_value": v, "saturation_threshold": RELATIVE_SATURATION.get(k, 1.0),
             "relative_saturation": True} for k, v in DEFECT_PIXEL_VALUES.items()]


def canvas_size(category: str, params: dict) -> Size:
    """The side of a clean data set's square images, or a varied one's (height, width)."""
    if params.get("capture", "clean") == "clean":
        return params["image_size"]
    w, h = NATIVE_SIZES[category]
    return round(h * params["size_factor"]), round(w * params["size_factor"])


def _generate_category(root: Path, name: str, params: dict) -> None:
    cat, cat_index = REGISTRY[name], CATEGORIES.index(name)
    base, size = root / name, canvas_size(name, params)
    varied = params.get("capture", "clean") == "varied"
    layout = sample_layout(name, params["seed"]) if varied else None
    write_json(base / "dataset.json", _describe(cat, params))  # first: marks the folder ours
    write_json(base / "defects_config.json", defects_config())
    counts = [params.get(k, 0) for k in COUNT_KEYS]
    for split_index, ((split, kind), n) in enumerate(zip(SPLITS, counts)):
        for i in range(n):
            rng = np.random.default_rng([params["seed"], cat_index, split_index, i])
            meta = sample_scene(name, rng, index=i)
            if varied:
                meta = vary_capture(meta, layout, size, rng)
            masks: list[np.ndarray] = []
            if kind == "logical_anomalies":
                todo = LOGICAL_KINDS[(i + cat_index) % len(LOGICAL_KINDS)]
                meta, img, mask = make_logical(meta, todo, rng, size)
                masks = [mask]
                kinds_of_masks = [meta["anomaly"]["kind"]]
            elif kind == "structural_anomalies":
                first = STRUCTURAL_KINDS[(i + cat_index) % len(STRUCTURAL_KINDS)]
                kinds = [first]
                if rng.random() < 0.2:  # sometimes two defects in one image
                    others = [k for k in STRUCTURAL_KINDS if k != first]
                    kinds.append(others[rng.integers(len(others))])
                meta, img = make_structural(meta, kinds, rng, size, params.get("defect_scale", 1.0))
                masks = img.defect_masks
                kinds_of_masks = [d["kind"] for d in meta["defects"]]
            else:
                img = render_scene(meta, size)
            stem = f"{i:03d}"
            write_png(base / split / kind / f"{stem}.png", img.rgb)
            write_png(base / "part_labels" / split / kind / f"{stem}.png", img.part_labels)
            write_json(base / "meta" / split / kind / f"{stem}.json",
                        {**meta, "split": split, "type": kind, "index": i,
                         "image_size": size if isinstance(size, int) else list(size)})
            for j, m in enumerate(masks):
                gt = "ground_truth" if split == "test" else f"ground_truth_{split}"
                write_png(base / gt / kind / stem / f"{j:03d}.png",
                           m.astype(np.uint8) * np.uint8(DEFECT_PIXEL_VALUES[kinds_of_masks[j]]))


def generate(root: str | os.PathLike, categories: Iterable[str] | None = None, seed: int = 0,
             image_size: int = 256, n_train: int = 16, n_validation: int = 4,
             n_test_good: int = 12, n_logical: int = 12, n_structural: int = 12,
             n_tune_good: int = 0, n_tune_logical: int = 0, n_tune_structural: int = 0,
             capture: str = "clean", size_factor: float = 1.0, defect_scale: float = 1.0,
             overwrite: bool = False) -> Path:
    """Write the synthetic data set under ``root`` in the MVTec LOCO AD layout; return ``root``.

    ``capture="clean"``: square ``image_size`` images, one fixed camera and mild lighting.
    ``capture="varied"``: photo-like captures at MVTec LOCO's native sizes (800-1700 px, not
    square) times ``size_factor`` (``image_size`` is unused), with the camera's mirror, angle,
    zoom and background tint fixed per ``seed`` (a new layout per seed), per-image rotation,
    shift and zoom, exposure, colour cast, lighting gradient, vignetting, a light spot, defocus
    blur, sensor noise, a tone curve and a JPEG round trip. Part labels and masks follow the geometry.

    ``defect_scale`` multiplies the size of every structural defect (radius, scratch length and
    width; each still has to change the pixels visibly): below 1 the small, faint defects that
    a coarse patch grid misses. Only the structural test images change.

    ``n_tune_*`` > 0 adds a labelled tuning split, ``tune/<type>/`` with masks in
    ``ground_truth_tune/<type>/`` (for ``data.eval_split=tune``), from separate random streams:
    its images are new scenes, and the other splits are byte-identical with or without it.

    Deterministic in ``seed``; each category draws from its own random streams, so it is the
    same whichever others are generated beside it. ``root/<category>/.complete.json`` (the
    parameters) is written last: a category whose marker matches is left as it is unless
    ``overwrite``; the others are regenerated from scratch (a folder not written by this
    generator is never deleted). Only the requested categories are written: a run on one
    category generates that one.
    """
    root = Path(root)
    names = list(categories) if categories is not None else list(CATEGORIES)
    unknown = sorted(set(names) - set(CATEGORIES))
    if unknown:
        raise ConfigError(f"unknown categories {unknown}; choose from {list(CATEGORIES)}")
    if seed < 0 or image_size < 64:
        raise ConfigError("seed must be >= 0 and image_size >= 64")
    if capture not in CAPTURES:
        raise ConfigError(f"capture={capture!r}; use one of {', '.join(CAPTURES)}")
    params = {"generator": GENERATOR, "version": VERSION, "seed": seed,
              "image_size": image_size, "n_train": n_train, "n_validation": n_validation,
              "n_test_good": n_test_good, "n_logical": n_logical, "n_structural": n_structural}
    if capture != "clean":
        smallest = min(min(NATIVE_SIZES[n]) for n in names) * size_factor
        if not smallest >= 64:
            raise ConfigError(f"size_factor={size_factor} makes the shortest image side {smallest:.0f} "
                             "px; use size_factor >= 0.08 (64 px at the smallest native size)")
        params.update(capture=capture, size_factor=float(size_factor))
    if not 0.1 <= defect_scale <= 2.0:
        raise ConfigError(f"defect_scale={defect_scale} is out of range; use 0.1-2.0 (1.0: the default sizes)")
    if defect_scale != 1.0:  # absent at 1: data sets made before the option stay complete
        params["defect_scale"] = float(defect_scale)
    tune = {"n_tune_good": n_tune_good, "n_tune_logical": n_tune_logical,
            "n_tune_structural": n_tune_structural}
    if min(tune.values()) < 0:
        raise ConfigError(f"n_tune_* must be >= 0, got {tune}")
    if any(tune.values()):
        params.update(tune)
    return ensure_complete(root, names, params, ("generator", GENERATOR),
                           lambda r, name: _generate_category(r, name, params), overwrite)
