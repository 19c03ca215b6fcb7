"""Deterministic image decoding and preprocessing shared by training, indexing and search.

Bump ``PREPROCESSING_VERSION`` whenever the output of :func:`prepare` changes: it is part of
the model version string, so stored vectors are recognised as stale.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

PREPROCESSING_VERSION = "p2"  # p2: JPEGs decoded at reduced scale (DCT scaling) to >= the input size
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0
PAD_COLOUR = (255, 255, 255)


class InvalidImage(ValueError):
    """The input is not an image we can use; the message says why, for the user."""


def open_image(
    source, max_pixels: int = 40_000_000, max_bytes: int | None = None, decode_size: int = 512
) -> Image.Image:
    """Decode ``source`` (path, bytes or file object) into an RGB image, safely.

    Handles EXIF orientation, palette/alpha (composited on white), CMYK and 16-bit images.
    Raises :class:`InvalidImage` for anything that is not a complete, reasonably sized image.
    JPEGs are decoded at the smallest DCT scale that keeps both sides >= ``decode_size`` (fast, and
    part of the preprocessing contract: pass the model's input size).
    """
    if isinstance(source, (bytes, bytearray)):
        if max_bytes is not None and len(source) > max_bytes:
            raise InvalidImage(f"The file is larger than {max_bytes // (1024 * 1024)} MB.")
        source = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        source = Path(source)
        if max_bytes is not None and source.stat().st_size > max_bytes:
            raise InvalidImage(f"The file is larger than {max_bytes // (1024 * 1024)} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
            width, height = img.size
            if width <= 0 or height <= 0:
                raise InvalidImage("The image has no pixels.")
            if width * height > max_pixels:
                raise InvalidImage(f"The image is too large ({width}x{height} pixels; at most {max_pixels:,} pixels).")
            # prepare() pads to a square: a thin strip (1 x 20,000,000 px is a 40 KB PNG) would need a canvas of
            # side^2 pixels and exhaust memory. Refusing such shapes changes no output for an accepted image.
            if max(width, height) ** 2 > 4 * max_pixels:
                raise InvalidImage(f"The image is too long and thin ({width}x{height} pixels).")
            if img.format == "JPEG":
                img.draft("RGB", (decode_size, decode_size))
            img.load()
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage("The image is too large to process.") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("The file is not an image we can read (use JPEG, PNG or WebP).") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"The image could not be decoded ({exc}).") from exc
    return to_rgb(img)


def oriented_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of an encoded image as it is shown (after its EXIF orientation), from its header alone;
    None when the header cannot be read (:func:`open_image` then says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                try:
                    orientation = img.getexif().get(0x0112)
                except Exception:  # noqa: BLE001 - a broken EXIF block: exif_transpose leaves the image as it is
                    orientation = None
    except Exception:  # noqa: BLE001
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def to_rgb(img: Image.Image) -> Image.Image:
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject a good image
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / peak)).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, PAD_COLOUR)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def pad_to_square(img: Image.Image, fill=PAD_COLOUR) -> Image.Image:
    width, height = img.size
    side = max(width, height)
    if width == height:
        return img
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - width) // 2, (side - height) // 2))
    return canvas


def prepare(img: Image.Image, size: int) -> np.ndarray:
    """RGB image -> normalised float32 CHW array of ``size`` x ``size`` (pad to square, resize)."""
    square = pad_to_square(img).resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    arr = (np.asarray(square, dtype=np.float32) - MEAN) / STD
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def batch(images, size: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([prepare(img, size) for img in images]))
