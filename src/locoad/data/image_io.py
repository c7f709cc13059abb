"""Robust image reading: every odd input becomes (H, W, 3) uint8 RGB or a clear error."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from locoad.errors import LocoadError

log = logging.getLogger(__name__)
_LOW_RANGE_SAID = False  # the low-range 16-bit warning was given in this process


class ImageReadError(LocoadError, ValueError):
    """An image file could not be read; the message names the file and the fix."""


FLOAT_UNIT_MAX = 2.0  # a float image whose values stay below this is on a 0-1 scale


def _to_uint8(a: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """uint8 as it is, bool and float images (0-1 or 0-255) as uint8; integer images of more
    than 8 bits go through :func:`high_bits_to_uint8`. A float image up to ``FLOAT_UNIT_MAX`` is
    on a 0-1 scale with some overshoot (clipped), not a 0-255 image, which would read nearly black;
    above 255 it is on neither scale: an error naming ``path``."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    floating = np.issubdtype(a.dtype, np.floating)
    a = a.astype(np.float64)
    top = a.max(initial=0)
    if floating and top > 255.0:
        raise ImageReadError(f"float image {path} has values up to {top:g}, on neither a 0-1 nor a 0-255 scale: "
                             "save it scaled to 0-1, or as an 8- or 16-bit integer image")
    if top <= (FLOAT_UNIT_MAX if floating else 1.0):
        a = a * 255.0
    return np.clip(a, 0, 255).round().astype(np.uint8)


_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the turn that shows the image upright


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag of ``im`` (1: upright, or none), read from the file's header. A
    PNG's tag counts only in an eXIf chunk before the pixels, where writers put it: Pillow looks
    for one after them by decoding the whole image, which would make :func:`read_size` a full read.
    A tagged TIFF is refused: Pillow turns some as it decodes them and drops the tag of others
    unturned, so neither its size nor its pixels say which way up it is."""
    if im.format == "TIFF":
        tag = im.getexif().get(ExifTags.Base.Orientation, 1)
        if tag != 1:
            raise ImageReadError(f"{im.filename}: a TIFF with an EXIF orientation tag ({tag}), which the image "
                                 "reader applies inconsistently: save it upright without the tag (or as PNG)")
        return 1
    if im.format == "PNG":
        exif = Image.Exif()
        if im.info.get("exif"):
            exif.load(im.info["exif"])
        return exif.get(ExifTags.Base.Orientation, 1)
    return im.getexif().get(ExifTags.Base.Orientation, 1)


def _upright(im: Image.Image, orientation: int) -> Image.Image:
    """The image as a viewer shows it: a camera's EXIF orientation tag applied (phones and some
    cameras store the sensor's pixels and only tag the turn; masks drawn on the shown image, and
    every other capture of the product, are upright). Untagged images come back as they are, not
    copied."""
    turn = _TURNS.get(orientation)
    return im if turn is None else im.transpose(turn)


def read_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image as :func:`read_rgb` returns it, without decoding the pixels."""
    with Image.open(path) as im:
        turned = _orientation(im) in (5, 6, 7, 8)  # the orientations with a quarter turn
        w, h = im.size  # after: a TIFF's size is that of its decoded pixels
    return (w, h) if turned else (h, w)


def high_bits_to_uint8(a: np.ndarray, bit_depth: int | None, path: str | Path) -> np.ndarray:
    """A 16-bit container's values as uint8, scaled from ``bit_depth`` bits (None: the full
    16-bit range; not the image's own max, so brightness stays comparable across images)."""
    global _LOW_RANGE_SAID
    top = int(a.max(initial=0))
    if bit_depth is None:
        if top < 4096 and not _LOW_RANGE_SAID:
            _LOW_RANGE_SAID = True  # once per process: every image of such a camera is alike
            log.warning("%s: a 16-bit image whose values stop at %d (of 65535) reads nearly black; if the "
                        "camera gives 10 or 12 bits, set data.bit_depth=10 or 12 to scale from that range", path, top)
        full = 65535
    else:
        full = 2**bit_depth - 1
        if top > full:
            raise ImageReadError(f"{path} holds values up to {top}, above data.bit_depth={bit_depth} (at most "
                                 f"{full}): set data.bit_depth to the camera's, or null for the full 16-bit range")
    return np.clip(a.astype(np.float64) * (255.0 / full), 0, 255).round().astype(np.uint8)


def _sixteen_bit_colour(im: Image.Image) -> bool:
    """48- or 64-bit colour: Pillow has no such mode and decodes it to 8-bit RGB(A), its top byte."""
    return any(str(t.args[0] if isinstance(t.args, tuple) else t.args).startswith(("RGB;16", "RGBA;16"))
               for t in im.tile)


def _read_sixteen_bit_colour(im: Image.Image, path: Path, bit_depth: int | None, orientation: int) -> np.ndarray:
    """A 16-bit colour TIFF read in full (tifffile) and scaled as grey 16-bit images are; a 16-bit
    colour PNG only as Pillow reads it, its top byte: right for the full 16-bit range, which
    ``bit_depth`` cannot change, and nearly black for a 10- or 12-bit camera (said once)."""
    global _LOW_RANGE_SAID
    if im.format == "TIFF":
        import tifffile

        a = tifffile.imread(path)
        if a.ndim == 3 and a.shape[2] == 4:  # alpha composited on black, as an 8-bit image's
            opaque = 2 ** (bit_depth or 16) - 1
            a = np.round(a[..., :3] * np.minimum(a[..., 3:4] / opaque, 1.0)).astype(a.dtype)
        return np.ascontiguousarray(high_bits_to_uint8(a[..., :3], bit_depth, path))
    if bit_depth is not None and bit_depth < 16:
        raise ImageReadError(f"{path}: a 16-bit colour {im.format}, which the image reader keeps only the top 8 bits "
                             f"of, so data.bit_depth={bit_depth} cannot scale it: save the images as 16-bit TIFF, "
                             "or scale them to 8 bits")
    im = _upright(im, orientation)
    a = _on_black(im) if im.mode == "RGBA" else np.asarray(im.convert("RGB"))
    if a.max(initial=0) < 16 and not _LOW_RANGE_SAID:
        _LOW_RANGE_SAID = True
        log.warning("%s: a 16-bit colour %s whose values stop below 4096 (of 65535) reads nearly black, and the image "
                    "reader keeps only its top 8 bits: save a 10- or 12-bit camera's images as 16-bit TIFF and set "
                    "data.bit_depth", path, im.format)
    return np.ascontiguousarray(a)


def _on_black(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 of an image with alpha, composited on black."""
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float64) / 255.0
    return np.round(rgba[..., :3] * rgba[..., 3:4] * 255).astype(np.uint8)


def read_rgb(path: str | Path, bit_depth: int | None = None) -> np.ndarray:
    """Read any PIL-readable image as (H, W, 3) uint8 RGB.

    An EXIF orientation tag is applied (the image as a viewer shows it). Grayscale is replicated
    to 3 channels, alpha is composited on black (industrial images with alpha are rare; a
    transparent background then reads as background), 16-bit images are scaled to 8 bits from
    ``bit_depth`` bits (:func:`high_bits_to_uint8`). Corrupt or truncated files raise ImageReadError.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            orientation = _orientation(im)  # from the header, as read_size reads it
            if _sixteen_bit_colour(im):
                return _read_sixteen_bit_colour(im, path, bit_depth, orientation)
            im.load()
            im = _upright(im, orientation)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                return _on_black(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = high_bits_to_uint8(np.asarray(im), bit_depth, path)
            elif im.mode == "F":
                a = _to_uint8(np.asarray(im), path)
            elif im.mode != "RGB":
                a = np.asarray(im.convert("RGB"))
            else:
                a = np.asarray(im)
    except (FileNotFoundError, ImageReadError):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(
            f"cannot read image {path}: {e}. Replace or delete the file (re-export it as PNG/JPEG)."
        ) from e
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(_to_uint8(a[..., :3], path))


def read_mask_values(path: str | Path) -> np.ndarray:
    """A ground-truth mask's pixel values as (H, W): grey masks as stored, colour masks the
    channels' maximum. An alpha channel is not a value (an opaque grey-and-alpha mask would
    otherwise mark every pixel), and palette masks read as the colours they show."""
    try:
        with Image.open(path) as im:
            im = _upright(im, _orientation(im))
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "PA":
                im = im.convert("RGBA")
            elif im.mode == "1":  # 1-bit: white is 255, as it shows (not 1)
                im = im.convert("L")
            a = np.asarray(im)
            bands = im.getbands()
    except (UnidentifiedImageError, OSError) as e:
        raise ImageReadError(f"cannot read ground-truth mask {path}: {e}. Re-export it as a PNG.") from e
    if a.ndim == 2:
        return a
    values = a[..., [i for i, b in enumerate(bands) if b != "A"]].max(axis=2)
    if "A" in bands:  # a transparent pixel marks nothing, whatever colour it keeps
        values = np.where(a[..., bands.index("A")] > 0, values, 0).astype(values.dtype)
    return values


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask as (H, W) bool (any non-zero pixel is anomalous)."""
    return read_mask_values(path) > 0
