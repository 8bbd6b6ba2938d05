"""Safe image decoding: every failure becomes an `UnreadableImage` with a human-readable reason.

What "safe" means here:
- the format is detected from the bytes, not the file name (a PNG named .jpg decodes);
- images larger than `max_pixels` are refused before their pixels are decoded (decompression bombs);
- truncated or corrupt data is refused (Pillow's LOAD_TRUNCATED_IMAGES stays off);
- the EXIF orientation is applied, so boxes and crops refer to the upright image;
- any mode (CMYK, grayscale, 16-bit, palette, alpha) ends as 8-bit RGB; transparency is
  composited over white.

Pillow decodes, not cv2.imdecode (a little faster, the same pixels for sound JPEGs): OpenCV
decodes a JPEG with a corrupt body that Pillow refuses, and gives no reason when it fails.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000; a phone camera stays well below
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "MPO")


class UnreadableImage(Exception):
    """The bytes are not an image we can score; str(exc) is the reason shown to users."""


@dataclass
class DecodedImage:
    image: Image.Image  # RGB, upright
    format: str
    width: int  # of the upright image, before any draft reduction
    height: int
    reduction: int = 1  # >1 when a JPEG was decoded at 1/reduction of its size (draft mode)


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
    max_reduction: Callable[[int, int], float] | None = None,
) -> DecodedImage:
    """Decode image bytes into an upright RGB image or raise UnreadableImage.

    A JPEG may be decoded at a reduced scale (1/2, 1/4, 1/8, via Pillow's draft mode, which
    skips most of the decoding work): with `min_side`, as long as its smaller side stays >=
    min_side; with `max_reduction(width, height)`, by at most the factor it returns for the
    upright size (EXIF orientation applied). The largest allowed power of two is used.
    """
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    img = _open(data)
    fmt, w, h = _check_header(img, max_pixels)
    reduction = _draft(img, fmt, min_side, max_reduction) if min_side or max_reduction else 1
    _load(img)
    img, w, h = _upright(img, w, h)
    return DecodedImage(image=_rgb(img), format=fmt, width=w, height=h, reduction=reduction)


def _open(data: bytes) -> Image.Image:
    """Identify the format and read the header only (no pixels yet)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnreadableImage("not an image: the content is not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage(f"decompression bomb refused: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure is a property of the file
        raise UnreadableImage(f"cannot open image: {exc}") from None


def _check_header(img: Image.Image, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) of a supported, non-empty image within the pixel limit."""
    fmt = img.format or ""
    if fmt not in FORMATS:
        raise UnreadableImage(f"unsupported image format {img.format}")
    w, h = img.size
    if w < 1 or h < 1:
        raise UnreadableImage(f"image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise UnreadableImage(f"decompression bomb refused: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
    return fmt, w, h


def _draft(img: Image.Image, fmt: str, min_side: int | None, max_reduction: Callable[[int, int], float] | None) -> int:
    """Switch a JPEG to draft mode at the largest allowed power-of-two reduction; the reduction used."""
    if fmt not in ("JPEG", "MPO"):
        return 1
    w, h = img.size
    upright = (h, w) if _orientation(img) in (5, 6, 7, 8) else (w, h)
    limit = max_reduction(*upright) if max_reduction else 8
    if min_side:
        limit = min(limit, max(1, min(w, h)) / min_side)
    reduction = 1
    while reduction < 8 and reduction * 2 <= limit:
        reduction *= 2
    if reduction == 1:
        return 1
    # Pillow picks the scale min(w // size_w, h // size_h): asking for the rounded-up size
    # would never reduce an odd-sized image (1001 // 501 = 1)
    img.draft("RGB", (max(1, w // reduction), max(1, h // reduction)))
    return round(w / img.size[0])


def _load(img: Image.Image) -> None:
    """Decode the pixels; truncated or corrupt data is refused."""
    try:
        img.load()
    except Exception as exc:  # noqa: BLE001
        reason = str(exc) or exc.__class__.__name__
        if "truncated" in reason:
            raise UnreadableImage(f"truncated file: {reason}") from None
        raise UnreadableImage(f"corrupt image data: {reason}") from None


def _upright(img: Image.Image, w: int, h: int) -> tuple[Image.Image, int, int]:
    """The image with its EXIF orientation applied, and its upright size."""
    try:
        orientation = img.getexif().get(0x0112, 1)
        if orientation != 1:  # exif_transpose copies the whole image even when upright
            img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the picture
        orientation = 1
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: the upright size is swapped
        w, h = h, w
    return img, w, h


def _rgb(img: Image.Image) -> Image.Image:
    try:
        return to_rgb(img)
    except Exception as exc:  # noqa: BLE001 - e.g. a colour mode Pillow cannot convert
        raise UnreadableImage(f"cannot convert {img.mode} colour mode to RGB: {exc}") from None


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block counts as upright
        return 1


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit modes always span 0..65535 (a dark 16-bit image must not be read as 8-bit)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
