"""Scene categories of the synthetic LOCO-like data set: layout, constraints and logical edits.

A scene is a list of JSON-friendly part dicts in the category's *local* frame (normalised
coordinates, x right, y down, image = [0, 1]^2); the renderer applies the image pose (small
rotation + shift) on top. Every part has ``uid`` (unique in the scene), ``kind`` (its part
type), ``type_id`` (1..P, index in ``part_types``), ``shape``, ``center``, ``size`` (full
extents along its own axes), ``angle`` (degrees), ``colour`` (a name) and ``rgb``. Parts that
belong to another part (a label's icon, a connector's levers) carry ``owner`` = that uid.

Normal scenes obey every rule of :meth:`Category.check`; each logical edit breaks at least one.
Local layouts stay inside [0.08, 0.92] so no part touches the image border after the pose.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

Part = dict[str, Any]

COLOURS: dict[str, tuple[int, int, int]] = {
    # breakfast_box
    "slate": (62, 72, 88),
    "cream": (232, 226, 212),
    "tangerine": (236, 128, 28),
    "lime": (120, 175, 45),
    "nectarine": (196, 52, 48),
    "cereal": (146, 92, 48),
    "banana_chips": (240, 218, 128),
    # juice_bottle
    "black": (26, 26, 30),
    "glass": (168, 184, 196),
    "orange_juice": (242, 146, 30),
    "cherry_juice": (160, 22, 48),
    "banana_juice": (232, 212, 72),
    "paper": (242, 242, 236),
    "steel_blue": (78, 104, 160),
    # pushpins
    "beige": (206, 198, 184),
    "charcoal": (58, 64, 76),
    "tray_grey": (128, 138, 150),
    "pin_yellow": (238, 206, 44),
    "pin_blue": (44, 92, 206),
    "pin_red": (206, 40, 48),
    # splicing_connectors
    "grey": (136, 139, 143),
    "housing": (230, 230, 222),
    "lever_orange": (236, 116, 26),
    "cable_yellow": (228, 202, 38),
    "cable_blue": (38, 86, 200),
    "cable_red": (196, 30, 40),
    # screw_bag
    "dark_wood": (64, 58, 52),
    "bag_film": (196, 212, 230),
    "steel": (86, 92, 108),
    "brass": (206, 160, 50),
    "silver": (170, 172, 176),
    "copper": (184, 102, 64),
}


@dataclass(frozen=True)
class Edit:
    """Result of a logical edit: the new part list and which parts the ground truth covers.

    mode "union": the whole part is anomalous (before and after footprint);
    mode "xor": only where its footprint changed (e.g. a wrong fill level).
    """

    parts: list[Part]
    uids: list[int]
    mode: str
    description: str


def jitter(rng: np.random.Generator, value: float, amount: float) -> float:
    return float(value + rng.uniform(-amount, amount))


def rotate(offset: tuple[float, float], angle_deg: float) -> tuple[float, float]:
    a = math.radians(angle_deg)
    return (offset[0] * math.cos(a) - offset[1] * math.sin(a),
            offset[0] * math.sin(a) + offset[1] * math.cos(a))


def radius(part: Part) -> float:
    """Radius of the part's bounding circle (used for free-space placement)."""
    return 0.5 * math.hypot(*part["size"])


def distance(a: Part | tuple[float, float], b: Part | tuple[float, float]) -> float:
    pa = a["center"] if isinstance(a, dict) else a
    pb = b["center"] if isinstance(b, dict) else b
    return math.dist(pa, pb)


class Category(ABC):
    """One scene category: how to sample a normal scene, its rules, and its logical edits."""

    name: ClassVar[str]
    part_types: ClassVar[tuple[str, ...]]
    background: ClassVar[str]
    rules: ClassVar[tuple[str, ...]]
    removable: ClassVar[tuple[str, ...]]  # kinds that a "missing" anomaly may remove
    structural_targets: ClassVar[tuple[str, ...]]  # kinds that may carry a structural defect
    # Normal variants of the product (LOCO's splicing connectors come with 2, 3 or 5 poles,
    # its juice bottles with three juices); empty: one variant.
    variants: ClassVar[tuple[Any, ...]] = ()

    # --- building blocks -------------------------------------------------------------------
    def variant(self, rng: np.random.Generator, index: int | None) -> Any:
        """The scene's normal variant: ``variants[index % n]``, or random when ``index`` is None.

        The generator passes the image index, so each split holds the variants in equal shares
        (as LOCO's do) instead of a random draw: with 16 training images a random draw can make
        one variant most of the split, and a few-shot set then rarely shows the others.
        """
        if index is None:
            return self.variants[int(rng.integers(len(self.variants)))]
        return self.variants[index % len(self.variants)]

    def type_id(self, kind: str) -> int:
        return self.part_types.index(kind) + 1

    @staticmethod
    def colour(name: str, rng: np.random.Generator) -> list[int]:
        """The named colour with a small per-instance jitter (real parts are never identical)."""
        return [int(np.clip(c + rng.integers(-5, 6), 0, 255)) for c in COLOURS[name]]

    def add(self, parts: list[Part], rng: np.random.Generator, kind: str, shape: str,
            center: tuple[float, float], size: tuple[float, float], colour: str,
            angle: float = 0.0, **extra: Any) -> Part:
        """Append a new part with a fresh uid and return it."""
        uid = max((p["uid"] for p in parts), default=0) + 1
        part = {"uid": uid, "kind": kind, "type_id": self.type_id(kind), "shape": shape,
                "center": [float(center[0]), float(center[1])],
                "size": [float(size[0]), float(size[1])], "angle": float(angle),
                "colour": colour, "rgb": self.colour(colour, rng), **extra}
        parts.append(part)
        return part

    def recolour(self, part: Part, colour: str, rng: np.random.Generator) -> None:
        part["colour"], part["rgb"] = colour, self.colour(colour, rng)

    @staticmethod
    def of(parts: list[Part], kind: str) -> list[Part]:
        return [p for p in parts if p["kind"] == kind]

    def count_rules(self, parts: list[Part], expected: dict[str, int]) -> list[str]:
        found = {k: len(self.of(parts, k)) for k in expected}
        return [f"expected {n} {k}, found {found[k]}" for k, n in expected.items() if found[k] != n]

    @staticmethod
    def free_spot(rng: np.random.Generator, box: tuple[float, float, float, float], r: float,
                  obstacles: list[Part], tries: int = 200) -> tuple[float, float]:
        """Centre inside ``box`` (x0, y0, x1, y1) for a circle of radius ``r`` that keeps the
        largest clearance to ``obstacles``; stops early once nothing overlaps."""
        best, best_gap = (0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])), -math.inf
        for _ in range(tries):
            c = (rng.uniform(box[0] + r, box[2] - r), rng.uniform(box[1] + r, box[3] - r))
            gap = min((distance(c, o) - radius(o) - r for o in obstacles), default=1.0)
            if gap > best_gap:
                best, best_gap = c, gap
            if gap > 0.01:
                break
        return float(best[0]), float(best[1])

    # --- the four logical anomaly kinds ----------------------------------------------------
    def missing(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        """Remove one removable part (and the parts it owns)."""
        candidates = [p for p in parts if p["kind"] in self.removable]
        if not candidates:
            return None
        victim = candidates[rng.integers(len(candidates))]
        gone = [victim["uid"]] + [p["uid"] for p in parts if p.get("owner") == victim["uid"]]
        kept = [copy.deepcopy(p) for p in parts if p["uid"] not in gone]
        return Edit(kept, gone, "union", f"missing {victim['kind']} (uid {victim['uid']})")

    @abstractmethod
    def extra(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        """Add one part too many."""

    @abstractmethod
    def misplaced(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        """Move a part to where it must not be."""

    @abstractmethod
    def mismatched(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        """Change colour or size of a part so that a pairing rule breaks."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, index: int | None = None) -> list[Part]:
        """A normal scene (``index``: see :meth:`variant`)."""

    @abstractmethod
    def check(self, parts: list[Part]) -> list[str]:
        """Violated rules (empty for a normal scene)."""


class BreakfastBox(Category):
    """A tray: two tangerines and a nectarine on the left, cereal top right, chips bottom right."""

    name = "breakfast_box"
    part_types = ("tray", "tangerine", "nectarine", "cereal", "banana_chips")
    background = "slate"
    rules = (
        "one tray; exactly 2 tangerines and 1 nectarine, all in the left half of the tray",
        "1 cereal patch in the upper-right and 1 banana-chip patch in the lower-right quarter",
        "tangerines are orange and of equal size (ratio <= 1.15)",
        "cereal and banana-chip patches cover 0.035-0.07 of the image each",
    )
    removable = ("tangerine", "nectarine", "cereal", "banana_chips")
    structural_targets = part_types

    def sample(self, rng: np.random.Generator, index: int | None = None) -> list[Part]:
        parts: list[Part] = []
        self.add(parts, rng, "tray", "rect", (0.5, 0.5), (0.76, 0.6), "cream")
        slots = [(0.25, 0.34), (0.25, 0.66), (0.41, 0.5)]
        nectarine = rng.integers(3)
        d = rng.uniform(0.136, 0.156)  # both tangerines share one size
        for k, (x, y) in enumerate(slots):
            c = (jitter(rng, x, 0.02), jitter(rng, y, 0.02))
            if k == nectarine:
                self.add(parts, rng, "nectarine", "ellipse", c,
                         (jitter(rng, 0.17, 0.01), jitter(rng, 0.15, 0.01)), "nectarine",
                         rng.uniform(0, 180))
            else:
                s = d * rng.uniform(0.97, 1.03)
                self.add(parts, rng, "tangerine", "ellipse", c, (s, s * rng.uniform(0.95, 1.0)),
                         "tangerine", rng.uniform(0, 180))
        for kind, y, grain in (("cereal", 0.355, 0.08), ("banana_chips", 0.645, 0.04)):
            self.add(parts, rng, kind, "rect", (jitter(rng, 0.685, 0.015), jitter(rng, y, 0.015)),
                     (jitter(rng, 0.28, 0.015), jitter(rng, 0.18, 0.015)), kind,
                     rng.uniform(-4, 4), grain=grain)
        return parts

    def check(self, parts: list[Part]) -> list[str]:
        bad = self.count_rules(parts, {"tray": 1, "tangerine": 2, "nectarine": 1, "cereal": 1,
                                       "banana_chips": 1})
        tx, ty = self.of(parts, "tray")[0]["center"] if self.of(parts, "tray") else (0.5, 0.5)
        for p in self.of(parts, "tangerine") + self.of(parts, "nectarine"):
            if p["center"][0] >= tx:
                bad.append(f"{p['kind']} {p['uid']} not in the left half of the tray")
        for p in self.of(parts, "cereal") + self.of(parts, "banana_chips"):
            x, y = p["center"]
            want_top = p["kind"] == "cereal"
            if x <= tx or (y < ty) != want_top:
                bad.append(f"{p['kind']} {p['uid']} not in its quarter of the tray")
            if not 0.035 <= p["size"][0] * p["size"][1] <= 0.07:
                bad.append(f"{p['kind']} {p['uid']} has the wrong amount (area)")
        tangerines = self.of(parts, "tangerine")
        bad += [f"tangerine {p['uid']} is {p['colour']}" for p in tangerines
                if p["colour"] != "tangerine"]
        if len(tangerines) == 2:
            a, b = (p["size"][0] for p in tangerines)
            if max(a, b) / min(a, b) > 1.15:
                bad.append("tangerines differ in size")
        return bad

    def extra(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        fruit = self.of(new, "tangerine") + self.of(new, "nectarine")
        template = fruit[rng.integers(len(fruit))]
        c = self.free_spot(rng, (0.16, 0.24, 0.84, 0.76), radius(template) * 0.75, fruit)
        p = self.add(new, rng, template["kind"], "ellipse", c, template["size"],
                     template["colour"], rng.uniform(0, 180))
        return Edit(new, [p["uid"]], "union", f"extra {p['kind']}")

    def misplaced(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        if rng.random() < 0.3:  # cereal and banana chips swap their quarters
            a, b = self.of(new, "cereal")[0], self.of(new, "banana_chips")[0]
            a["center"], b["center"] = b["center"], a["center"]
            return Edit(new, [a["uid"], b["uid"]], "union", "cereal and banana chips swapped")
        fruit = self.of(new, "tangerine") + self.of(new, "nectarine")
        p = fruit[rng.integers(len(fruit))]
        p["center"] = [rng.uniform(0.6, 0.78), rng.uniform(0.3, 0.7)]
        new.remove(p)
        new.append(p)  # drawn last: it lies on top of the cereal or chips
        return Edit(new, [p["uid"]], "union", f"{p['kind']} moved to the right half")

    def mismatched(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        choice = rng.integers(3)
        if choice == 2:
            p = self.of(new, "cereal")[0]
            p["size"] = [s * 0.65 for s in p["size"]]
            return Edit(new, [p["uid"]], "union", "too little cereal")
        p = self.of(new, "tangerine")[rng.integers(2)]
        if choice == 0:
            p["size"] = [s * 0.65 for s in p["size"]]
            return Edit(new, [p["uid"]], "union", "tangerine too small for its pair")
        self.recolour(p, "lime", rng)
        return Edit(new, [p["uid"]], "union", "unripe (green) tangerine")


JUICES = ("orange_juice", "cherry_juice", "banana_juice")


class JuiceBottle(Category):
    """A bottle filled with juice; the label's fruit icon names the juice."""

    name = "juice_bottle"
    part_types = ("bottle", "juice", "label", "icon", "band")
    variants = JUICES
    background = "black"
    rules = (
        "exactly 1 bottle, juice, label, icon and band",
        "icon colour equals juice colour (the label names the juice)",
        "fill level 0.68-0.86 of the bottle body",
        "label centred at 0.64 on the bottle, icon centred on the label, band at 0.79",
    )
    removable = ("juice", "label", "icon", "band")
    structural_targets = ("bottle", "juice", "label", "band")
    BOTTOM, BODY_TOP, LABEL_Y, BAND_Y = 0.87, 0.336, 0.64, 0.79

    def sample(self, rng: np.random.Generator, index: int | None = None) -> list[Part]:
        parts: list[Part] = []
        x = jitter(rng, 0.5, 0.015)
        juice = self.variant(rng, index)
        self.add(parts, rng, "bottle", "bottle", (x, 0.5), (0.34, 0.78), "glass")
        self.fill(self.add(parts, rng, "juice", "rect", (x, 0.5), (0.3, 0.1), juice),
                  rng.uniform(0.72, 0.82))
        label = self.add(parts, rng, "label", "rect", (x, jitter(rng, self.LABEL_Y, 0.01)),
                         (0.28, 0.15), "paper")
        self.add(parts, rng, "icon", "ellipse", label["center"],
                 (jitter(rng, 0.1, 0.005),) * 2, juice, owner=label["uid"])
        self.add(parts, rng, "band", "rect", (x, jitter(rng, self.BAND_Y, 0.008)), (0.24, 0.05),
                 "steel_blue")
        return parts

    def fill(self, juice: Part, level: float) -> None:
        """Set the juice rectangle to fill ``level`` of the bottle body's inner height."""
        h = level * (self.BOTTOM - self.BODY_TOP)
        juice["level"] = float(level)
        juice["center"][1] = self.BOTTOM - h / 2
        juice["size"][1] = h

    def check(self, parts: list[Part]) -> list[str]:
        bad = self.count_rules(parts, dict.fromkeys(self.part_types, 1))
        if bad:
            return bad
        bottle, juice, label, icon, band = (self.of(parts, k)[0] for k in self.part_types)
        if icon["colour"] != juice["colour"]:
            bad.append(f"icon shows {icon['colour']} but the bottle holds {juice['colour']}")
        if not 0.68 <= juice["level"] <= 0.86:
            bad.append(f"fill level {juice['level']:.2f} outside 0.68-0.86")
        x = bottle["center"][0]
        if distance(label, (x, self.LABEL_Y)) > 0.025:
            bad.append("label not at its place")
        if distance(icon, label) > 0.02:
            bad.append("icon not centred on the label")
        if distance(band, (x, self.BAND_Y)) > 0.025:
            bad.append("band not at its place")
        return bad

    def extra(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        label = self.of(new, "label")[0]
        if rng.random() < 0.5:
            icon = self.of(new, "icon")[0]
            side = rng.choice([-1.0, 1.0])
            c = (label["center"][0] + side * 0.085, label["center"][1])
            p = self.add(new, rng, "icon", "ellipse", c, icon["size"], icon["colour"],
                         owner=label["uid"])
        else:
            band = self.of(new, "band")[0]
            c = (band["center"][0], jitter(rng, 0.45, 0.02))
            p = self.add(new, rng, "band", "rect", c, band["size"], band["colour"])
        return Edit(new, [p["uid"]], "union", f"extra {p['kind']}")

    def misplaced(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        if rng.random() < 0.6:
            label = self.of(new, "label")[0]
            moved = [label] + [p for p in new if p.get("owner") == label["uid"]]
            dy = -rng.uniform(0.08, 0.11)
        else:
            moved = self.of(new, "band")
            dy = -rng.uniform(0.3, 0.34)
        for p in moved:
            p["center"][1] += dy
        return Edit(new, [p["uid"] for p in moved], "union", f"{moved[0]['kind']} shifted up")

    def mismatched(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        juice = self.of(new, "juice")[0]
        choice = rng.integers(3)
        if choice == 2:
            level = rng.uniform(0.4, 0.55) if rng.random() < 0.5 else rng.uniform(0.93, 0.97)
            self.fill(juice, level)
            return Edit(new, [juice["uid"]], "xor", f"wrong fill level {level:.2f}")
        target = juice if choice == 0 else self.of(new, "icon")[0]
        other = [j for j in JUICES if j != target["colour"]]
        self.recolour(target, other[rng.integers(len(other))], rng)
        return Edit(new, [target["uid"]], "union", f"{target['kind']} is {target['colour']}")


class Pushpins(Category):
    """A 3 x 5 compartment box with exactly one yellow pin per compartment."""

    name = "pushpins"
    part_types = ("box", "compartment", "pin")
    background = "beige"
    rules = (
        "1 box with 15 compartments (3 rows x 5 columns)",
        "exactly one pin lies fully inside every compartment; no pin elsewhere",
        "pins are yellow with a diameter of 0.058-0.074",
    )
    removable = ("pin",)
    structural_targets = part_types
    ROWS, COLS, X0, Y0, WALL, CW, CH = 3, 5, 0.12, 0.24, 0.02, 0.136, 0.16

    def sample(self, rng: np.random.Generator, index: int | None = None) -> list[Part]:
        parts: list[Part] = []
        self.add(parts, rng, "box", "rect", (0.5, 0.5), (0.8, 0.56), "charcoal")
        cells = []
        for r in range(self.ROWS):
            for c in range(self.COLS):
                centre = (self.X0 + c * (self.CW + self.WALL) + self.CW / 2,
                          self.Y0 + r * (self.CH + self.WALL) + self.CH / 2)
                cells.append(self.add(parts, rng, "compartment", "rect", centre,
                                      (self.CW, self.CH), "tray_grey", slot=r * self.COLS + c))
        for cell in cells:
            d = rng.uniform(0.062, 0.07)
            room = (self.CW / 2 - d / 2 - 0.008, self.CH / 2 - d / 2 - 0.008)
            c = (jitter(rng, cell["center"][0], room[0]), jitter(rng, cell["center"][1], room[1]))
            self.add(parts, rng, "pin", "ellipse", c, (d, d), "pin_yellow")
        return parts

    def check(self, parts: list[Part]) -> list[str]:
        bad = self.count_rules(parts, {"box": 1, "compartment": self.ROWS * self.COLS})
        cells = self.of(parts, "compartment")
        per_cell = dict.fromkeys((c["slot"] for c in cells), 0)
        for pin in self.of(parts, "pin"):
            r = pin["size"][0] / 2
            home = [c for c in cells
                    if abs(pin["center"][0] - c["center"][0]) <= c["size"][0] / 2 - r
                    and abs(pin["center"][1] - c["center"][1]) <= c["size"][1] / 2 - r]
            if home:
                per_cell[home[0]["slot"]] += 1
            else:
                bad.append(f"pin {pin['uid']} not inside a compartment")
            if pin["colour"] != "pin_yellow":
                bad.append(f"pin {pin['uid']} is {pin['colour']}")
            if not 0.058 <= pin["size"][0] <= 0.074:
                bad.append(f"pin {pin['uid']} has the wrong size")
        bad += [f"compartment {s} holds {n} pins" for s, n in per_cell.items() if n != 1]
        return bad

    def extra(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        pins = self.of(new, "pin")
        pin = pins[rng.integers(len(pins))]
        cell = next(c for c in self.of(new, "compartment")
                    if distance(c, pin) < self.CW / 2)  # the compartment of this pin
        d = pin["size"][0]
        # The far corner of the compartment from the existing pin.
        sx = 1.0 if pin["center"][0] < cell["center"][0] else -1.0
        sy = 1.0 if pin["center"][1] < cell["center"][1] else -1.0
        c = (cell["center"][0] + sx * (self.CW / 2 - d / 2 - 0.006),
             cell["center"][1] + sy * (self.CH / 2 - d / 2 - 0.006))
        p = self.add(new, rng, "pin", "ellipse", c, (d, d), "pin_yellow")
        return Edit(new, [p["uid"]], "union", f"second pin in compartment {cell['slot']}")

    def misplaced(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        pins = self.of(new, "pin")
        pin = pins[rng.integers(len(pins))]
        if rng.random() < 0.5:  # on a vertical wall between two compartments
            col = rng.integers(1, self.COLS)
            x = self.X0 + col * (self.CW + self.WALL) - self.WALL / 2
            pin["center"] = [x, jitter(rng, pin["center"][1], 0.02)]
            where = "on a compartment wall"
        else:  # outside the box, above or below it
            y = 0.175 if rng.random() < 0.5 else 0.825
            pin["center"] = [rng.uniform(0.2, 0.8), y]
            where = "outside the box"
        return Edit(new, [pin["uid"]], "union", f"pin {where}")

    def mismatched(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        pins = self.of(new, "pin")
        pin = pins[rng.integers(len(pins))]
        if rng.random() < 0.6:
            self.recolour(pin, ("pin_blue", "pin_red")[rng.integers(2)], rng)
            return Edit(new, [pin["uid"]], "union", f"{pin['colour']} pin")
        cell = next(c for c in self.of(new, "compartment") if distance(c, pin) < self.CW / 2)
        pin["size"] = [0.1, 0.1]
        pin["center"] = list(cell["center"])
        return Edit(new, [pin["uid"]], "union", "oversized pin")


CABLE_COLOUR = {2: "cable_yellow", 3: "cable_blue", 5: "cable_red"}


class SplicingConnectors(Category):
    """Two connectors with the same number of poles joined by a cable of the matching colour."""

    name = "splicing_connectors"
    part_types = ("connector", "cable", "lever")
    variants = (2, 3, 5)
    background = "grey"
    rules = (
        "2 connectors (one left, one right of the centre) and 1 cable",
        "both connectors have the same number of poles (2, 3 or 5) and one lever per pole",
        "cable colour matches the pole count: 2 yellow, 3 blue, 5 red",
        "each cable end is plugged into a connector (within 0.03 of its socket)",
    )
    removable = ("connector", "cable", "lever")
    structural_targets = ("connector", "cable")
    WIDTH, SOCKET = 0.15, 0.06

    def connector(self, parts: list[Part], rng: np.random.Generator, center: tuple[float, float],
                  angle: float, poles: int, side: int) -> Part:
        """A housing with ``poles`` levers on its outer side (``side`` -1 left, +1 right)."""
        con = self.add(parts, rng, "connector", "rect", center,
                       (self.WIDTH, 0.05 + 0.045 * poles), "housing", angle, poles=poles,
                       side=side)
        for k in range(poles):
            off = rotate((side * 0.025, (k - (poles - 1) / 2) * 0.045), angle)
            self.add(parts, rng, "lever", "rect", (center[0] + off[0], center[1] + off[1]),
                     (0.07, 0.026), "lever_orange", angle, owner=con["uid"])
        return con

    def socket(self, con: Part) -> tuple[float, float]:
        """Where the cable enters the housing (its inner side)."""
        off = rotate((-con["side"] * self.SOCKET, 0.0), con["angle"])
        return con["center"][0] + off[0], con["center"][1] + off[1]

    def sample(self, rng: np.random.Generator, index: int | None = None) -> list[Part]:
        parts: list[Part] = []
        poles = self.variant(rng, index)
        centres = [(jitter(rng, 0.24, 0.02), jitter(rng, 0.5, 0.06)),
                   (jitter(rng, 0.76, 0.02), jitter(rng, 0.5, 0.06))]
        angles = [rng.uniform(-8, 8), rng.uniform(-8, 8)]
        # Draw order: cable first so that the housings cover its ends.
        cable = self.add(parts, rng, "cable", "polyline", (0.5, 0.5), (0.032, 0.032),
                         CABLE_COLOUR[poles])
        cons = [self.connector(parts, rng, c, a, poles, side)
                for c, a, side in zip(centres, angles, (-1, 1))]
        a, b = np.array(self.socket(cons[0])), np.array(self.socket(cons[1]))
        normal = np.array([-(b - a)[1], (b - a)[0]]) / np.linalg.norm(b - a)
        sag, wiggle = rng.choice([-1, 1]) * rng.uniform(0.04, 0.11), rng.uniform(-0.02, 0.02)
        t = np.linspace(0, 1, 13)[:, None]
        pts = a + t * (b - a) + normal * (sag * np.sin(np.pi * t) + wiggle * np.sin(2 * np.pi * t))
        cable["points"] = pts.round(5).tolist()
        cable["center"] = pts.mean(0).tolist()
        return parts

    def check(self, parts: list[Part]) -> list[str]:
        bad = self.count_rules(parts, {"connector": 2, "cable": 1})
        cons = sorted(self.of(parts, "connector"), key=lambda p: p["center"][0])
        if len(cons) == 2 and not cons[0]["center"][0] < 0.5 < cons[1]["center"][0]:
            bad.append("connectors not one left and one right")
        poles = {c["poles"] for c in cons}
        if len(poles) > 1:
            bad.append(f"connectors differ in poles: {sorted(poles)}")
        for con in cons:
            n = sum(p.get("owner") == con["uid"] for p in self.of(parts, "lever"))
            if n != con["poles"]:
                bad.append(f"connector {con['uid']} has {n} levers for {con['poles']} poles")
        for cable in self.of(parts, "cable"):
            if any(cable["colour"] != CABLE_COLOUR[p] for p in poles):
                bad.append(f"{cable['colour']} cable does not match {sorted(poles)} poles")
            for end in (cable["points"][0], cable["points"][-1]):
                if min((math.dist(end, self.socket(c)) for c in cons), default=1.0) > 0.03:
                    bad.append("a cable end is not plugged into a connector")
        return bad

    def extra(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        con = self.of(new, "connector")[rng.integers(2)]
        # On the cable side of the housing, clear of the regular levers on the outer side.
        off = rotate((-con["side"] * 0.042, jitter(rng, 0.0, 0.02)), con["angle"])
        c = (con["center"][0] + off[0], con["center"][1] + off[1])
        p = self.add(new, rng, "lever", "rect", c, (0.054, 0.026), "lever_orange", con["angle"],
                     owner=con["uid"])
        return Edit(new, [p["uid"]], "union", f"extra lever on connector {con['uid']}")

    def misplaced(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        con = self.of(new, "connector")[rng.integers(2)]
        moved = [con] + [p for p in new if p.get("owner") == con["uid"]]
        dy = rng.choice([-1, 1]) * rng.uniform(0.12, 0.15)
        if not 0.2 < con["center"][1] + dy < 0.8:
            dy = -dy
        for p in moved:
            p["center"][1] += dy
        return Edit(new, [p["uid"] for p in moved], "union", "connector pulled off the cable")

    def mismatched(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        if rng.random() < 0.4:
            cable = self.of(new, "cable")[0]
            other = [c for c in CABLE_COLOUR.values() if c != cable["colour"]]
            self.recolour(cable, other[rng.integers(len(other))], rng)
            return Edit(new, [cable["uid"]], "union", f"{cable['colour']} cable")
        old = self.of(new, "connector")[rng.integers(2)]
        poles = [p for p in (2, 3, 5) if p != old["poles"]][rng.integers(2)]
        gone = [old["uid"]] + [p["uid"] for p in new if p.get("owner") == old["uid"]]
        new = [p for p in new if p["uid"] not in gone]
        con = self.connector(new, rng, old["center"], old["angle"], poles, old["side"])
        fresh = [con["uid"]] + [p["uid"] for p in new if p.get("owner") == con["uid"]]
        return Edit(new, gone + fresh, "union", f"{poles}-pole connector with {old['poles']}-pole")


class ScrewBag(Category):
    """A bag holding one long and one short screw, two nuts and two washers."""

    name = "screw_bag"
    part_types = ("bag", "screw", "nut", "washer")
    background = "dark_wood"
    rules = (
        "1 bag holding exactly 2 screws, 2 nuts and 2 washers, all inside the bag",
        "one screw is long (>= 0.23) and one short (<= 0.20)",
        "nuts are brass, washers are copper",
    )
    removable = ("screw", "nut", "washer")
    structural_targets = part_types
    BAG = (0.5, 0.5, 0.56, 0.64)
    INSIDE = (0.25, 0.21, 0.75, 0.79)
    SCREW_LENGTH = {"long": 0.26, "short": 0.17}

    # Share of nuts and washers laid against one placed before them: in MVTec LOCO's bags loose
    # parts touch, so a segmenter sees two of them as one piece in good images too.
    TOUCH = 0.4

    def touching_spot(self, rng: np.random.Generator, r: float, content: list[Part],
                      tries: int = 50) -> tuple[float, float] | None:
        """Centre for a round item of radius ``r`` touching (or slightly overlapping) a nut or
        washer of ``content``, inside the bag and clear of every other item; None if none found."""
        round_parts = [p for p in content if p["kind"] in ("nut", "washer")]
        x0, y0, x1, y1 = self.INSIDE
        for _ in range(tries if round_parts else 0):
            other = round_parts[rng.integers(len(round_parts))]
            theta, d = rng.uniform(0, 2 * np.pi), other["size"][0] / 2 + r + rng.uniform(-0.012, 0.0)
            c = (other["center"][0] + d * math.cos(theta), other["center"][1] + d * math.sin(theta))
            if (x0 + r <= c[0] <= x1 - r and y0 + r <= c[1] <= y1 - r
                    and all(distance(c, o) - radius(o) - r > 0 for o in content if o is not other)):
                return c
        return None

    def item(self, parts: list[Part], rng: np.random.Generator, kind: str,
             variant: str = "", colour: str = "", touch: bool = False) -> Part:
        """Place one item inside the bag: at a free spot, or (``touch``, nuts and washers) against
        a nut or washer already there where one has room."""
        if kind == "screw":
            size = (jitter(rng, self.SCREW_LENGTH[variant], 0.008), 0.05)
        else:
            size = (jitter(rng, 0.09, 0.004),) * 2
        content = [p for p in parts if p["kind"] != "bag"]
        c = self.touching_spot(rng, 0.5 * size[0], content) if touch and kind != "screw" else None
        c = c or self.free_spot(rng, self.INSIDE, 0.5 * max(size), content)
        shape = {"screw": "screw", "nut": "hexagon", "washer": "ring"}[kind]
        colour = colour or {"screw": "steel", "nut": "brass", "washer": "copper"}[kind]
        extra = {"inner": 0.42} if kind == "washer" else {}
        return self.add(parts, rng, kind, shape, c, size, colour, rng.uniform(0, 360), **extra)

    def sample(self, rng: np.random.Generator, index: int | None = None) -> list[Part]:
        parts: list[Part] = []
        self.add(parts, rng, "bag", "rect", self.BAG[:2], self.BAG[2:], "bag_film")
        self.item(parts, rng, "screw", "long")
        self.item(parts, rng, "screw", "short")
        for kind in ("nut", "nut", "washer", "washer"):
            self.item(parts, rng, kind, touch=bool(rng.random() < self.TOUCH))
        return parts

    def check(self, parts: list[Part]) -> list[str]:
        bad = self.count_rules(parts, {"bag": 1, "screw": 2, "nut": 2, "washer": 2})
        lengths = sorted(p["size"][0] for p in self.of(parts, "screw"))
        if len(lengths) == 2 and not (lengths[0] <= 0.2 and lengths[1] >= 0.23):
            bad.append("screws are not one long and one short")
        bx, by, bw, bh = self.BAG
        for p in parts:
            if p["kind"] != "bag" and (abs(p["center"][0] - bx) > bw / 2 - 0.02
                                       or abs(p["center"][1] - by) > bh / 2 - 0.02):
                bad.append(f"{p['kind']} {p['uid']} outside the bag")
        want = {"nut": "brass", "washer": "copper"}
        bad += [f"{p['kind']} {p['uid']} is {p['colour']}" for p in parts
                if p["kind"] in want and p["colour"] != want[p["kind"]]]
        return bad

    def extra(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        kind = ("screw", "nut", "washer")[rng.integers(3)]
        variant = ("long", "short")[rng.integers(2)]
        p = self.item(new, rng, kind, variant)
        return Edit(new, [p["uid"]], "union", f"extra {kind}")

    def misplaced(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        small = self.of(new, "nut") + self.of(new, "washer")
        p = small[rng.integers(len(small))]
        x = rng.uniform(0.13, 0.155) if rng.random() < 0.5 else rng.uniform(0.845, 0.87)
        p["center"] = [x, rng.uniform(0.3, 0.7)]
        return Edit(new, [p["uid"]], "union", f"{p['kind']} outside the bag")

    def mismatched(self, parts: list[Part], rng: np.random.Generator) -> Edit | None:
        new = copy.deepcopy(parts)
        if rng.random() < 0.5:
            nut = self.of(new, "nut")[rng.integers(2)]
            self.recolour(nut, "silver", rng)
            return Edit(new, [nut["uid"]], "union", "steel nut instead of brass")
        screws = sorted(self.of(new, "screw"), key=lambda p: p["size"][0])
        target, ref = (screws[0], screws[1]) if rng.random() < 0.5 else (screws[1], screws[0])
        target["size"][0] = ref["size"][0]
        return Edit(new, [target["uid"]], "union", "two screws of the same length")


REGISTRY: dict[str, Category] = {c.name: c for c in (
    BreakfastBox(), JuiceBottle(), Pushpins(), SplicingConnectors(), ScrewBag())}
CATEGORIES: tuple[str, ...] = tuple(REGISTRY)
LOGICAL_KINDS: tuple[str, ...] = ("missing", "extra", "misplaced", "mismatched")


def check_constraints(meta: dict, category: str | None = None) -> list[str]:
    """Rules of ``category`` (default: ``meta["category"]``) that the scene in ``meta`` breaks."""
    return REGISTRY[category or meta["category"]].check(meta["parts"])
