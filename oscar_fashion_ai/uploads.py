"""Validation of user uploads: every bad input becomes a :class:`BadUpload` with a message for the user."""

from __future__ import annotations

from . import conf
from .ml import preprocessing


class BadUpload(ValueError):
    pass


def _decode_size() -> int:
    from . import embedding

    try:
        return embedding.model_info().image_size
    except Exception:  # noqa: BLE001 - validation must work even when the model does not load
        return 512


def image_from_request(request, field: str = "image"):
    """Return the uploaded image as an RGB PIL image, or raise :class:`BadUpload`."""
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
    try:
        return preprocessing.open_image(data, max_pixels=int(conf.get("MAX_IMAGE_PIXELS")), max_bytes=limit,
                                        decode_size=_decode_size())
    except preprocessing.InvalidImage as exc:
        raise BadUpload(str(exc)) from exc
