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


def is_validation(image_id: str) -> bool:
    """The validation split, carved from the training images when a run asks for it (``--validation``):
    sha1(id) % 5 == 1. It is for choosing between configurations without looking at the test split."""
    return int(hashlib.sha1(image_id.encode()).hexdigest(), 16) % 5 == 1


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


def shrink_copy(source: Path, dest: Path, max_side: int = 256, quality: int = 85, progress: bool = True) -> dict:
    """Write a smaller copy of a labelled set (``images.csv`` + JPEGs no larger than ``max_side``) to ``dest``,
    e.g. to train on a machine that cannot reach the original files. Images keep their ids and labels."""
    from PIL import Image
    from tqdm import tqdm

    from .preprocessing import InvalidImage, open_image

    records = labelled_records(Path(source))
    dest = Path(dest)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    kept, skipped = [], 0
    for rec in tqdm(records, desc="Shrinking", unit="img", disable=not progress):
        try:
            img = open_image(rec.path, decode_size=max_side)
        except InvalidImage:
            skipped += 1
            continue
        img.thumbnail((max_side, max_side), Image.LANCZOS)
        img.save(dest / "images" / f"{Path(rec.source_id).name}.jpg", "JPEG", quality=quality)
        kept.append(rec)
    with (dest / "images.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label"])
        for rec in kept:
            writer.writerow([Path(rec.source_id).name, rec.label])
    return {"images": len(kept), "skipped": skipped}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Make a smaller copy of a labelled image set.")
    parser.add_argument("command", choices=["shrink"])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    print(shrink_copy(args.source, args.dest, args.max_side, args.quality))
