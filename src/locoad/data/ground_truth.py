"""Ground-truth regions as MVTec LOCO AD defines them, for sPRO and per-defect metrics.

Each PNG in ``ground_truth/<type>/<image id>/`` is one region (a channel), even when it is not
connected. Its non-zero pixel value names the defect through ``<category>/defects_config.json``,
a list of ``{"defect_name", "pixel_value", "saturation_threshold", "relative_saturation"}``:
the region counts as fully found once that many of its pixels are (a pixel count, or a fraction
of the region's area when relative). Without the file, a region saturates at its own area
(plain PRO) and images have no defect names.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from locoad.data.image_io import read_mask_values, read_size
from locoad.data.layout import DataLayoutError, Sample
from locoad.errors import is_whole_number
from locoad.metrics.spro import Region, saturation_pixels

log = logging.getLogger(__name__)

DEFECTS_CONFIG = "defects_config.json"
_KEYS = ("defect_name", "pixel_value", "saturation_threshold", "relative_saturation")
_SEVERAL_VALUES_SAID = False  # the several-values warning was given in this process


@dataclass(frozen=True)
class DefectType:
    name: str
    pixel_value: int
    saturation_threshold: float
    relative_saturation: bool

    def saturation(self, area: int) -> float:
        return saturation_pixels(area, self.saturation_threshold, self.relative_saturation)


def load_defects_config(category_dir: str | Path) -> dict[int, DefectType] | None:
    """pixel value -> defect type from ``<category>/defects_config.json``; None without the file."""
    path = Path(category_dir) / DEFECTS_CONFIG
    if not path.is_file():
        return None
    fix = f"fix {path}: it must be a JSON list of objects with keys {', '.join(_KEYS)}"
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataLayoutError(f"{path} is not valid JSON ({e}); {fix}") from e
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DataLayoutError(f"{path} is not a list of objects; {fix}")
    out: dict[int, DefectType] = {}
    for e in entries:
        missing = [k for k in _KEYS if k not in e]
        if missing:
            raise DataLayoutError(f"{path}: entry {e} lacks {', '.join(missing)}; {fix}")
        # Checked as JSON types: bool("false") is True, int(254.9) is 254.
        value, threshold, relative = e["pixel_value"], e["saturation_threshold"], e["relative_saturation"]
        if not (is_whole_number(value, 1) and value < 65536) or isinstance(threshold, bool) \
                or not isinstance(threshold, int | float) or not threshold > 0 or not isinstance(relative, bool) \
                or (relative and threshold > 1):
            raise DataLayoutError(f"{path}: {e.get('defect_name')} needs pixel_value a whole number in 1..65535, "
                                  "relative_saturation true or false (JSON booleans) and saturation_threshold > 0 "
                                  "(a share of the region, at most 1, when relative)")
        d = DefectType(str(e["defect_name"]), value, float(threshold), relative)
        if d.pixel_value in out:
            raise DataLayoutError(f"{path}: pixel_value {d.pixel_value} is used by {out[d.pixel_value].name} "
                                  f"and {d.name}; each defect needs its own value")
        out[d.pixel_value] = d
    return out


@dataclass(frozen=True)
class Channel:
    """One ground-truth PNG: its region mask, pixel value (0 if empty) and defect type."""

    mask: np.ndarray
    pixel_value: int
    defect: DefectType | None

    @property
    def region(self) -> Region:
        area = int(self.mask.sum())
        sat = self.defect.saturation(area) if self.defect is not None else float(area)
        return Region(self.mask, sat)


def read_channel(path: Path, defects: dict[int, DefectType] | None) -> Channel:
    """Read one ground-truth PNG. With ``defects_config.json`` its one non-zero value names the
    defect: a second value or an unknown one is an error. Without it any value > 0 marks the
    region (``pixel_value``: the largest)."""
    a = read_mask_values(path)
    values = np.unique(a[a > 0])
    if len(values) > 1 and defects is not None:
        raise DataLayoutError(
            f"{path} holds several non-zero values {values.tolist()[:5]}, but its pixel value names its defect "
            f"in {DEFECTS_CONFIG}: a JPEG or resized (smoothed) mask has many, re-export it as a lossless PNG "
            "of one value; two defects in one file, split it into one PNG per defect"
        )
    global _SEVERAL_VALUES_SAID
    if len(values) > 1 and defects is None and not _SEVERAL_VALUES_SAID:
        _SEVERAL_VALUES_SAID = True
        log.warning("%s holds several non-zero values %s (a JPEG or resized mask?): every value > 0 is the region, "
                    "so compression noise or a smoothed edge widens it; re-export the masks as lossless PNGs of "
                    "one value (said once)", path, values.tolist()[:5])
    value = int(values[-1]) if len(values) else 0
    defect = None
    if defects is not None and value:
        defect = defects.get(value)
        if defect is None:
            raise DataLayoutError(
                f"{path} has pixel value {value}, which no entry of {DEFECTS_CONFIG} names "
                f"(known: {sorted(defects)}); add it there or fix the mask"
            )
    return Channel(a > 0, value, defect)


def one_mask_size(sizes: set[tuple[int, int]], image: Path) -> tuple[int, int]:
    """The one (height, width) of ``image``'s masks (``sizes`` not empty)."""
    if len(sizes) > 1:
        raise DataLayoutError(f"ground-truth masks of {image} differ in size {sorted(sizes)}; re-export them")
    return next(iter(sizes))


def check_mask_sizes(samples: list[Sample], tolerance: float = 0.01) -> None:
    """Every sample's masks share one size, of its image's aspect ratio (within ``tolerance``):
    an anomaly map is resized onto its masks, so masks of another shape (exported from another
    crop, or mixed up) would silently misplace every region. Reads file headers only."""
    for s in samples:
        if not s.masks:
            continue
        mh, mw = one_mask_size({read_size(m) for m in s.masks}, s.path)
        ih, iw = read_size(s.path)
        if abs(mw / mh - iw / ih) > tolerance * iw / ih:
            raise DataLayoutError(
                f"ground-truth masks of {s.path} are {mw}x{mh} px, the image {iw}x{ih} px: another aspect ratio, "
                f"so no anomaly map can be laid on them; re-export the masks at the image's size ({s.masks[0].parent})"
            )


class LocoGroundTruth:
    """Ground truth of an evaluation split's samples, read lazily and kept bit-packed.

    ``regions(i)`` are sample ``i``'s regions at the ground truth's resolution, ``size(i)`` that
    resolution (the image's own size when it has no ground truth), ``defect_names(i)`` the
    defects in it (empty without ``defects_config.json``).
    """

    def __init__(self, samples: list[Sample], category_dir: str | Path):
        self.samples = list(samples)
        self.category_dir = Path(category_dir)
        self.defects = load_defects_config(self.category_dir)
        self._packed: dict[int, tuple[tuple[int, int], list[tuple[np.ndarray, int]]]] = {}
        if self.defects is None and any(s.masks for s in self.samples):
            log.warning(
                "no %s in %s: sPRO saturates at each region's own area (plain PRO) and per-defect "
                "AUROC is not computed", DEFECTS_CONFIG, self.category_dir,
            )

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> tuple[tuple[int, int], list[tuple[np.ndarray, int]]]:
        if i not in self._packed:
            s = self.samples[i]
            channels = [read_channel(p, self.defects) for p in s.masks]
            size = one_mask_size({c.mask.shape for c in channels}, s.path) if channels else read_size(s.path)
            self._packed[i] = (size, [(np.packbits(c.mask), c.pixel_value) for c in channels])
        return self._packed[i]

    def size(self, i: int) -> tuple[int, int]:
        return self._load(i)[0]

    def channels(self, i: int) -> list[Channel]:
        (h, w), packed = self._load(i)
        defects = self.defects or {}
        return [Channel(np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool), v, defects.get(v))
                for bits, v in packed]

    def regions(self, i: int) -> list[Region]:
        return [c.region for c in self.channels(i)]

    def defect_names(self, i: int) -> list[str]:
        if self.defects is None:
            return []
        return sorted({self.defects[v].name for _, v in self._load(i)[1] if v in self.defects})
