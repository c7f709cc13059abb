"""The MVTec LOCO AD folder layout, discovered with clear errors for every wrong input.

    <root>/<category>/train/good/*.png
    <root>/<category>/validation/good/*.png
    <root>/<category>/test/{good,logical_anomalies,structural_anomalies}/*.png
    <root>/<category>/ground_truth/<type>/<image-id>/000.png, 001.png, ...
    <root>/<category>/part_labels/<split>/<type>/<image-id>.png   (synthetic data only)

plus an optional labelled tuning split (not part of MVTec LOCO AD), read instead of ``test``
when ``data.eval_split=tune``, e.g. to choose fusion weights without touching the test set:

    <root>/<category>/tune/{good,logical_anomalies,structural_anomalies}/*.png
    <root>/<category>/ground_truth_tune/<type>/<image-id>/000.png, ...
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from locoad.errors import ConfigError, LocoadError

log = logging.getLogger(__name__)

LOCO_CATEGORIES = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
ANOMALY_TYPES = ("logical_anomalies", "structural_anomalies")
EVAL_SPLITS = ("test", "tune")  # labelled splits: the LOCO test set, or a held-out tuning set
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
LOCO_URL = "https://www.mvtec.com/company/research/datasets/mvtec-loco"


class DataLayoutError(LocoadError, ValueError):
    """The data on disk does not match the LOCO layout; the message says what to fix."""


@dataclass(frozen=True)
class Sample:
    """One image with its label. ``masks`` are the separate ground-truth region masks."""

    path: Path
    split: str
    anomaly_type: str  # "good", "logical_anomalies" or "structural_anomalies"
    masks: tuple[Path, ...] = field(default_factory=tuple)
    part_labels: Path | None = None

    @property
    def label(self) -> int:
        return int(self.anomaly_type != "good")


def _images(folder: Path) -> list[Path]:
    """The folder's images, by name; other files (not hidden ones) said in one warning: a data set
    exported as WebP, say, would otherwise lose those images without a word."""
    images, others = [], []
    for p in folder.iterdir():
        if not p.name.startswith(".") and p.is_file():
            (images if p.suffix.lower() in IMAGE_SUFFIXES else others).append(p)
    if others:
        log.warning("%s: %d file(s) skipped (%s): images are read from %s files only; convert them (e.g. to PNG) "
                    "or move them out", folder, len(others), ", ".join(sorted({p.suffix.lower() or p.name for p in others})),
                    "/".join(sorted(IMAGE_SUFFIXES)))
    return sorted(images)


def list_categories(root: str | Path) -> list[str]:
    """Category folders under ``root`` (any folder with a train/good subfolder)."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir()) if root.is_dir() else []


def category_dir(root: str | Path, category: str) -> Path:
    """Resolve ``root/category`` or raise DataLayoutError naming the fix."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(
            f"data root {root} does not exist. Download MVTec LOCO AD from {LOCO_URL} and extract it "
            f"there (so that {root}/<category>/train/good exists), set data.root=<path>, or use "
            "data=synthetic for the built-in synthetic data."
        )
    found = list_categories(root)
    if category not in found:
        hint = "" if category not in LOCO_CATEGORIES else f" ({category} is an MVTec LOCO category not extracted there)"
        if (root / "train" / "good").is_dir():  # the category folder itself given as the root
            hint = (f" ({root} is itself a category folder: set data.root={root.parent} "
                    f"data.category={root.name})")
        raise DataLayoutError(
            f"unknown category {category!r} under {root}{hint}. Categories found: "
            f"{', '.join(found) if found else 'none (no <category>/train/good folders)'}."
        )
    return root / category


def _part_label(cdir: Path, split: str, kind: str, img: Path) -> Path | None:
    p = cdir / "part_labels" / split / kind / f"{img.stem}.png"
    return p if p.exists() else None


def _ground_truth_dir(split: str) -> str:
    return "ground_truth" if split == "test" else f"ground_truth_{split}"


def _missing_tune(folder: Path, problem: str = "missing folder") -> DataLayoutError:
    cdir = folder.parent
    return DataLayoutError(
        f"{problem} {folder}: data.eval_split=tune needs a labelled tuning split that is not "
        f"the test set, laid out like test/: {cdir}/tune/{{good,logical_anomalies,"
        f"structural_anomalies}}/*.png with masks in {cdir}/ground_truth_tune/<type>/<image-id>/"
        "000.png. Synthetic data (data=synthetic) writes it when data.synthetic.n_tune_good/"
        "n_tune_logical/n_tune_structural > 0 (the default). For real data, hold out labelled "
        "images you own (never copies of test/ images: tuning on the test set inflates the "
        "results), or use data.eval_split=test to evaluate."
    )


def list_split(cdir: Path, split: str) -> list[Sample]:
    """Samples of ``train``/``validation`` (good only), ``test`` or ``tune`` (all types)."""
    if split in ("train", "validation"):
        folder = cdir / split / "good"
        if not folder.is_dir():
            if split == "validation":
                return []
            raise DataLayoutError(f"missing folder {folder}: the LOCO layout needs <category>/train/good")
        return [Sample(p, split, "good", part_labels=_part_label(cdir, split, "good", p)) for p in _images(folder)]
    if split not in EVAL_SPLITS:
        raise ConfigError(f"unknown split {split!r}; use train, validation, test or tune")
    folder = cdir / split
    if not folder.is_dir():
        if split == "tune":
            raise _missing_tune(folder)
        raise DataLayoutError(f"missing folder {folder}: the LOCO layout needs <category>/test/<type>/")
    gt_root = cdir / _ground_truth_dir(split)
    entries = list(folder.iterdir())
    kinds = sorted(p.name for p in entries if p.is_dir())
    loose = [p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        log.warning("%s holds %d image(s) outside a type folder (e.g. %s), not read: put them in %s/good, "
                    "%s/logical_anomalies or %s/structural_anomalies", folder, len(loose), sorted(loose)[0],
                    folder.name, folder.name, folder.name)
    other = [k for k in kinds if k not in ("good", *ANOMALY_TYPES)]
    if other:
        # MVTec AD-style defect folders are valid; a misspelt LOCO folder ("Good", "logical_anomaly")
        # would otherwise go unnoticed, its images counted outside the logical / structural split.
        log.warning("%s/{%s}: neither good, logical_anomalies nor structural_anomalies; their images count "
                    "as anomalous, outside the logical / structural split (rename a misspelt folder)",
                    folder, ",".join(other))
    out: list[Sample] = []
    for kind in kinds:
        for img in _images(folder / kind):
            masks: tuple[Path, ...] = ()
            if kind != "good":
                gt = gt_root / kind / img.stem
                masks = tuple(_images(gt)) if gt.is_dir() else ()
            out.append(Sample(img, split, kind, masks, _part_label(cdir, split, kind, img)))
    if not out:
        if split == "tune":
            raise _missing_tune(folder, "no images under")
        raise DataLayoutError(f"no test images under {folder}")
    return out
