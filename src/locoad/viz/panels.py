"""One picture per test image: the image, its anomaly map, its label maps and the ground truth side by side."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from locoad.data.image_io import ImageReadError, read_rgb

TITLE_HEIGHT = 14


def load_rgb(path: str, size: int, bit_depth: int | None = None) -> np.ndarray | None:
    """The image at ``path`` as (size, size, 3) uint8, read as the model reads it (an EXIF turn
    applied, 16-bit values from ``bit_depth`` bits, then squashed); None if unreadable."""
    try:
        return _resize(read_rgb(path, bit_depth), size, Image.BILINEAR)
    except (OSError, ImageReadError):
        return None


def _resize(a: np.ndarray, size: int, resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((size, size), resample))


def heat_overlay(
    image: np.ndarray, amap: np.ndarray, vrange: tuple[float, float] | None = None, alpha: float = 0.5
) -> np.ndarray:
    """Blend a jet-coloured anomaly map over an (H, W, 3) uint8 image. The map is scaled from
    ``vrange`` (one range for the whole test set, so maps compare) or else its own min-max."""
    from matplotlib import colormaps

    a = np.nan_to_num(amap.astype(np.float32))
    lo, hi = vrange if vrange is not None else (float(a.min()), float(a.max()))
    a = np.clip((a - lo) / max(hi - lo, 1e-8), 0, 1)
    a = _resize((a * 255).astype(np.uint8), image.shape[0], Image.BILINEAR)
    heat = (colormaps["jet"](a)[..., :3] * 255).astype(np.float32)
    return ((1 - alpha) * image.astype(np.float32) + alpha * heat).astype(np.uint8)


def label_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Colour each label over ``image`` (0 = background, left as is), segment borders in white.
    A label has one colour in every image (skimage's label2rgb numbers the labels an image has,
    so an image that lacks class 2 showed class 3 in class 2's colour)."""
    from matplotlib import colormaps
    from skimage.segmentation import find_boundaries

    labels = _resize(labels.astype(np.int32), image.shape[0], Image.NEAREST)
    palette = colormaps["tab10"](np.arange(10))[:, :3] * 255
    tint = (1 - alpha) * image.astype(np.float64) + alpha * palette[(labels - 1) % 10]
    out = np.where(labels[..., None] > 0, tint, image).round().astype(np.uint8)
    out[find_boundaries(labels, mode="inner")] = 255
    return out


def mask_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ground-truth defect region tinted red with a red outline; an empty mask leaves the image as is."""
    from skimage.segmentation import find_boundaries

    m = _resize(mask.astype(np.uint8) * 255, image.shape[0], Image.NEAREST) > 127
    out = image.copy()
    out[m] = (0.5 * out[m] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
    out[find_boundaries(m, mode="inner")] = (255, 0, 0)
    return out


def compose(tiles: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Tiles of equal size side by side, each under a one-line title; (H + title, sum W, 3) uint8."""
    size = tiles[0][1].shape[0]
    canvas = Image.new("RGB", (size * len(tiles), size + TITLE_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (title, tile) in enumerate(tiles):
        canvas.paste(Image.fromarray(tile), (i * size, TITLE_HEIGHT))
        draw.text((i * size + 3, 1), title, fill="black", font=font)
    return np.asarray(canvas)


def panel(
    image: np.ndarray,
    anomaly_map: np.ndarray | None = None,
    label_maps: dict[str, np.ndarray] | None = None,
    mask: np.ndarray | None = None,
    vrange: tuple[float, float] | None = None,
    mask_known: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """The panel of one image and its column titles: image, anomaly map, each label map
    (e.g. segments, aligned classes), ground truth; a part the run does not have is left out."""
    tiles = [("image", image)]
    if anomaly_map is not None:
        tiles.append(("anomaly map", heat_overlay(image, anomaly_map, vrange)))
    for name, labels in (label_maps or {}).items():
        tiles.append((name, label_overlay(image, labels)))
    if mask is not None:  # an anomalous image without masks has none to show: say so
        tiles.append(("ground truth", mask_overlay(image, mask)) if mask_known else ("no ground truth", image))
    return compose(tiles), [t for t, _ in tiles]
