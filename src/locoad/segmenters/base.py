"""Segmenter protocol and the post-processing every segmenter shares."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from PIL import Image

from locoad.errors import ConfigError, is_whole_number
from locoad.nested import is_number


def to_work_size(rgb: np.ndarray, work_size: int | None) -> np.ndarray:
    """``rgb`` resized (bilinear) so its longer side is ``work_size``; unchanged when None or already so.

    Classical segmenters run at a fixed resolution: their pixel parameters (region sizes,
    morphology radii) then mean the same whatever the input size, and the cost is bounded.
    """
    h, w = rgb.shape[:2]
    if not work_size or max(h, w) == work_size:
        return rgb
    f = work_size / max(h, w)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR))


def check_work_size(work_size: int | None) -> None:
    """A classical segmenter's ``work_size``: None (the image's own size) or a whole number >= 8.
    A negative one resized every image to 1x1 px, an empty label map without a word."""
    if work_size is not None and not is_whole_number(work_size, 8):
        raise ConfigError(f"segmenter.work_size must be a whole number >= 8 (px of the longer side) or null "
                          f"(the image's size), got {work_size!r}")


def to_size(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Integer label map resized (nearest) to ``shape`` (H, W); unchanged when it already has it."""
    if labels.shape == tuple(shape):
        return labels
    return np.asarray(Image.fromarray(labels.astype(np.int32)).resize((shape[1], shape[0]), Image.NEAREST))


def touches_two_edges(mask: np.ndarray) -> bool:
    """The seed's background rule: a region touching two (or more) image edges is background."""
    edges = (mask[0, :].any(), mask[-1, :].any(), mask[:, 0].any(), mask[:, -1].any())
    return sum(bool(e) for e in edges) >= 2


def masks_to_label_map(
    masks: list[np.ndarray],
    shape: tuple[int, int],
    min_area: float = 0.0005,
    drop_background: bool = True,
    max_segments: int = 64,
) -> np.ndarray:
    """Turn possibly overlapping boolean masks into one label map (0 = background).

    Overlaps: larger masks are painted first so smaller (usually finer) parts stay on top.
    Regions touching two image edges are background; regions smaller than ``min_area`` (a
    fraction of the image) are dropped. Labels are renumbered 1..S by decreasing area, so
    label ids are stable under small perturbations of the input order.
    """
    h, w = shape
    label = np.zeros((h, w), dtype=np.int32)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for new_id, i in enumerate(order, start=1):
        m = masks[i].astype(bool)
        if drop_background and touches_two_edges(m):
            continue
        label[m] = new_id
    return relabel_by_area(label, min_area=min_area, max_segments=max_segments)


def label_map_to_label_map(
    regions: np.ndarray, min_area: float = 0.0005, drop_background: bool = True, max_segments: int = 64
) -> np.ndarray:
    """The same post-processing for a segmenter that returns non-overlapping regions."""
    label = regions.astype(np.int32) + 1  # region 0 is a region too, not background
    if drop_background:
        edge_ids = [np.unique(e) for e in (label[0, :], label[-1, :], label[:, 0], label[:, -1])]
        ids, n_edges = np.unique(np.concatenate(edge_ids), return_counts=True)
        label[np.isin(label, ids[n_edges >= 2])] = 0
    return relabel_by_area(label, min_area=min_area, max_segments=max_segments)


def relabel_by_area(label: np.ndarray, min_area: float = 0.0005, max_segments: int = 64) -> np.ndarray:
    """Drop regions under ``min_area`` (fraction of pixels), keep the ``max_segments`` largest,
    renumber 1..S by decreasing area."""
    ids, counts = np.unique(label[label > 0], return_counts=True)
    keep = counts >= max(1, int(min_area * label.size))
    ids, counts = ids[keep], counts[keep]
    ids = ids[np.argsort(-counts, kind="stable")][:max_segments]
    lut = np.zeros(int(label.max()) + 1, dtype=np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[label]


def foreground_segmenter_of(segmenter) -> Segmenter | None:
    """``segmenter.foreground_segmenter()``; None for a plain callable, which has none."""
    get = getattr(segmenter, "foreground_segmenter", None)
    return None if get is None else get()


class Segmenter(ABC):
    """Maps an RGB image to a label map. Subclasses implement :meth:`propose`."""

    def __init__(self, min_area: float = 0.0005, drop_background: bool = True, max_segments: int = 64):
        # Out of range, both silently emptied or trimmed every label map: min_area >= 1 dropped
        # every segment, max_segments=0 kept none and a negative one cut the smallest off.
        if not is_number(min_area) or not 0 <= min_area < 1:
            raise ConfigError(f"segmenter.min_area must be a fraction of the image in [0, 1), got {min_area!r}")
        if not is_whole_number(max_segments, 1):
            raise ConfigError(f"segmenter.max_segments must be a whole number >= 1, got {max_segments!r}")
        self.min_area = min_area
        self.drop_background = drop_background
        self.max_segments = max_segments

    @abstractmethod
    def propose(self, rgb: np.ndarray) -> list[np.ndarray] | np.ndarray:
        """Candidate boolean masks (H, W) for an (H, W, 3) uint8 image, possibly overlapping,
        or one (H, W) integer label map of non-overlapping regions."""

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W) int32 label map, 0 = background, 1..S by decreasing area."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            # the data module always hands over read_rgb's output: only a bug (or a caller of the
            # Python API) gets here, so it keeps its traceback
            raise ValueError(f"segmenter expects an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
        masks = self.propose(rgb)
        if isinstance(masks, np.ndarray) and masks.ndim == 2:
            return label_map_to_label_map(masks, self.min_area, self.drop_background, self.max_segments)
        return masks_to_label_map(
            masks, rgb.shape[:2], self.min_area, self.drop_background, self.max_segments
        )

    def foreground_segmenter(self) -> Segmenter | None:
        """A segmenter whose segments' union is the product's foreground, where this one judges
        the foreground apart from its parts; None: the foreground is the union of the parts."""
        return None

    def follow(self, device) -> None:
        """Place any network on ``device`` (a torch.device, the trainer's) when configured with device=auto."""
        return  # weight-free by default: nothing to place

    def cache_key(self) -> dict:
        """The parameters that determine the output (used by the stage cache)."""
        return {"type": type(self).__name__, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}
