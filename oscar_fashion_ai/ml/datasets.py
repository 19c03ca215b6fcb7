"""Labelled image sets in the two layouts the project understands, and the fixed train/test split."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
IGNORED_LABELS = ("Not sure", "Skip", "Other")


@dataclass(frozen=True)
class Record:
    source_id: str
    label: str
    path: Path


class SourceError(ValueError):
    """The source is not a layout we understand."""


def is_test(image_id: str) -> bool:
    """The project's split: an image is in the test split when sha1(id) % 5 == 0."""
    return int(hashlib.sha1(image_id.encode()).hexdigest(), 16) % 5 == 0


def read_records(source: Path) -> list[Record]:
    """List the records of ``source`` in a stable order.

    Layouts: ``images.csv`` (columns ``image``, ``label``) + ``images/<image>.jpg``, or
    ``<category>/<file>.<ext>`` folders (the source id is ``<category>/<stem>``).
    """
    source = Path(source)
    if not source.is_dir():
        raise SourceError(f"{source} is not a directory")
    csv_path = source / "images.csv"
    if csv_path.exists():
        with csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"image", "label"} <= set(reader.fieldnames):
                raise SourceError(f"{csv_path} needs 'image' and 'label' columns, found {reader.fieldnames}")
            records = []
            for row in reader:
                image_id = (row.get("image") or "").strip()
                if image_id:
                    label = (row.get("label") or "").strip()
                    records.append(Record(image_id, label, _csv_image_path(source, image_id)))
        return records
    records = []
    for category_dir in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(category_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                records.append(Record(f"{category_dir.name}/{path.stem}", category_dir.name, path))
    if not records:
        raise SourceError(f"{source} has neither images.csv nor <category>/<image> folders")
    return records


def _csv_image_path(source: Path, image_id: str) -> Path:
    images = source / "images"
    for ext in (".jpg", ".jpeg", ".png"):
        candidate = images / f"{image_id}{ext}"
        if candidate.exists():
            return candidate
    return images / f"{image_id}.jpg"


def labelled_records(source: Path, ignored=IGNORED_LABELS) -> list[Record]:
    """Records with a usable label and an existing file."""
    drop = {label.casefold() for label in ignored}
    return [r for r in read_records(source) if r.label and r.label.casefold() not in drop and r.path.exists()]
