"""Validation of user uploads: every bad input becomes a :class:`BadUpload` with a message for the user."""

from __future__ import annotations

from dataclasses import dataclass

from . import conf
from .ml import preprocessing


class BadUpload(ValueError):
    pass


def _decode_size() -> int:
    from . import runtime

    try:
        return runtime.model_info().image_size
    except Exception:  # noqa: BLE001 - validation must work even when the model does not load
        return 512


def image_from_request(request, field: str = "image"):
    """Return the uploaded image as an RGB PIL image, or raise :class:`BadUpload`."""
    data, limit = _upload_bytes(request, field)
    try:
        return preprocessing.open_image(
            data, max_pixels=int(conf.get("MAX_IMAGE_PIXELS")), max_bytes=limit, decode_size=_decode_size()
        )
    except preprocessing.InvalidImage as exc:
        raise BadUpload(str(exc)) from exc


@dataclass
class Photo:
    """An uploaded photo for search by photo: the decoded image (maybe at a reduced scale), its size as the shopper
    sees it (``size``, after EXIF orientation: the pixels a ``box`` refers to) and the shopper's box, if any."""

    image: object
    size: tuple[int, int]
    box: object = None  # ml.crop.Box in pixels of ``size``


def photo_from_request(
    request, field: str = "image", box=None, preset_size: int | None = None, model_size: int | None = None
) -> Photo:
    """The uploaded photo and the shopper's optional ``box`` (``"x,y,w,h"`` in image pixels), checked against the
    image; raises :class:`BadUpload` for a bad upload or a bad box. JPEGs are decoded at the smallest scale that
    keeps the box (or, without one, ``preset_size`` px for the preset crop) at the model's resolution
    (``model_size``: the input size of the model in use, looked up when not given)."""
    from .ml import crop

    data, limit = _upload_bytes(request, field)
    model_size = model_size or _decode_size()
    size = preprocessing.oriented_size(data)
    parsed = None
    if box not in (None, "") and size is not None:
        try:
            parsed = crop.parse_box(box, *size)
        except crop.BadBox as exc:
            raise BadUpload(str(exc)) from exc
    decode = (
        crop.decode_size_for(parsed, *size, model_size) if parsed is not None else max(model_size, preset_size or 0)
    )
    try:
        img = preprocessing.open_image(
            data, max_pixels=int(conf.get("MAX_IMAGE_PIXELS")), max_bytes=limit, decode_size=decode
        )
    except preprocessing.InvalidImage as exc:
        raise BadUpload(str(exc)) from exc
    flipped = size is not None and (
        (size[0] > size[1] and img.width < img.height) or (size[0] < size[1] and img.width > img.height)
    )
    if size is None or flipped:
        # The header could not be read alone, or its EXIF orientation was not applied (a broken EXIF block).
        size = img.size if size is None else (size[1], size[0])
        if box not in (None, ""):
            try:
                parsed = crop.parse_box(box, *size)
            except crop.BadBox as exc:
                raise BadUpload(str(exc)) from exc
    return Photo(img, size, parsed)


def _upload_bytes(request, field):
    upload = request.FILES.get(field)
    if upload is None:
        raise BadUpload(f"Attach an image file in the form field '{field}'.")
    limit = int(conf.get("MAX_UPLOAD_BYTES"))
    if upload.size is None or upload.size > limit:
        raise BadUpload(f"The file is larger than {limit / (1024 * 1024):.0f} MB.")
    if upload.size == 0:
        raise BadUpload("The file is empty.")
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise BadUpload(f"The file is larger than {limit / (1024 * 1024):.0f} MB.")
    return data, limit


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sketch_from_request(request):
    """The drawing as a PIL image, from multipart field ``sketch`` or JSON ``{"sketch": "data:image/png;base64,..."}``.

    Raises :class:`BadUpload` for anything but a reasonably sized PNG.
    """
    import base64
    import binascii
    import io
    import json

    from PIL import Image, UnidentifiedImageError

    limit = int(conf.get("MAX_UPLOAD_BYTES"))
    if request.content_type == "application/json":
        if len(request.body) > limit * 4 // 3 + 1024:
            raise BadUpload(f"The drawing is larger than {limit / (1024 * 1024):.0f} MB.")
        try:
            payload = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            raise BadUpload("The request body is not valid JSON.") from None
        value = payload.get("sketch") if isinstance(payload, dict) else None
        if not isinstance(value, str) or not value:
            raise BadUpload('Send the drawing as {"sketch": "data:image/png;base64,..."}.')
        prefix, _, encoded = value.partition(",")
        if not prefix.startswith("data:image/png;base64"):
            raise BadUpload("The drawing must be a PNG data URL (data:image/png;base64,...).")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadUpload("The drawing's base64 data is malformed.") from None
        extra = payload
    else:
        upload = request.FILES.get("sketch")
        if upload is None:
            raise BadUpload("Attach the drawing as a PNG in the form field 'sketch'.")
        if upload.size > limit:
            raise BadUpload(f"The drawing is larger than {limit / (1024 * 1024):.0f} MB.")
        data = upload.read(limit + 1)
        extra = request.POST
    if len(data) > limit:
        raise BadUpload(f"The drawing is larger than {limit / (1024 * 1024):.0f} MB.")
    if not data.startswith(PNG_MAGIC):
        raise BadUpload("The drawing must be a PNG image.")
    side = int(conf.get("MAX_SKETCH_SIDE"))
    try:
        img = Image.open(io.BytesIO(data))
        if img.width > side or img.height > side or img.width < 1 or img.height < 1:
            raise BadUpload(f"The drawing must be at most {side}x{side} pixels.")
        img.load()
    except BadUpload:
        raise
    except Image.DecompressionBombError:  # Pillow refuses absurd dimensions while reading the header
        raise BadUpload(f"The drawing must be at most {side}x{side} pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise BadUpload("The drawing could not be decoded as a PNG image.") from None
    return img, extra
