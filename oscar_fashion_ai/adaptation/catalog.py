"""The store's catalog as :mod:`oscar_fashion_ai.adaptation` sees it: the products it can train on and measure
with, labelled by their first category, and the options and progress reporting of a run."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.utils import timezone
from oscar.core.loading import get_model

logger = logging.getLogger(__name__)


class AdaptError(RuntimeError):
    """The adaptation cannot run or must stop (the message says why; nothing was installed)."""


@dataclass
class Options:
    max_minutes: float | None = None  # None: FASHION_AI["ADAPT_MAX_MINUTES"]
    resume: bool = False
    min_per_category: int = 5  # training products a category needs to be trained on
    min_products: int = 30  # training products in all
    min_test: int = 10  # test-split products to measure on
    min_gain: float = 0.0  # the candidate's P@5 must beat the model in use's by more than this
    install: bool = True
    reindex: str = "queue"  # queue | sync | none
    threads: int = 0
    workers: int = 0
    seed: int = 0
    progress: bool = True
    keep_work: bool = False
    recipe: dict = field(default_factory=dict)
    sketch_minutes: float | None = None  # None: FASHION_AI["ADAPT_SKETCH_MAX_MINUTES"]; 0: no sketch encoder
    sketch_recipe: dict = field(default_factory=dict)  # overrides of ml.adaptation.SKETCH_RECIPE
    locator_minutes: float | None = None  # None: FASHION_AI["ADAPT_LOCATOR_MAX_MINUTES"]; 0: no garment locator
    locator_recipe: dict = field(default_factory=dict)  # overrides of adaptation.locator.LOCATOR_RECIPE
    command: str = "python manage.py fashion_adapt"


class Reporter:
    """Where progress goes: printed by the command, stored on the run's row by the task."""

    def __init__(self, run=None, write=None):
        self.run = run
        self.write = write or (lambda text: None)

    def line(self, text: str):
        self.write(text)
        logger.info("Fashion AI adaptation: %s", text)

    def stage(self, text: str, fraction: float):
        if self.run is not None:
            type(self.run).objects.filter(pk=self.run.pk).update(
                stage=text[:200], progress=round(fraction, 4), date_updated=timezone.now()
            )


@dataclass
class Item:
    product_id: int
    split_id: str  # the id the test split is computed from (UPC, else the primary key)
    label: str
    path: Path


@dataclass
class Catalog:
    items: list  # every product that can be measured (image + category)
    test: np.ndarray  # boolean mask over items
    train_labels: dict  # label -> training products, for the categories that are trained on
    skipped_categories: dict  # label -> training products, for the ones left out
    without_category: int
    without_image: int

    @property
    def training(self) -> list:
        return [it for it, t in zip(self.items, self.test) if not t and it.label in self.train_labels]


def _image_path(image, work: Path) -> Path | None:
    """A local file of a product image: the storage's own path, or a copy (for storages without local files)."""
    try:
        path = Path(image.original.path)
        if path.exists():
            return path
    except (NotImplementedError, ValueError):
        pass
    try:
        with image.original.open("rb") as fh:
            data = fh.read()
    except (OSError, ValueError):
        return None
    target = work / "images" / f"{image.pk}{Path(image.original.name).suffix.lower() or '.jpg'}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.write_bytes(data)
    return target


def collect(min_per_category: int, work: Path) -> Catalog:
    """The store's public products with an image, labelled with their first category (a variant: its parent's)."""
    from ..ml import datasets

    Product = get_model("catalogue", "Product")
    products = (
        Product.objects.filter(is_public=True)
        .exclude(structure=Product.PARENT)
        .select_related("parent")
        .prefetch_related("categories", "images", "parent__categories", "parent__images")
        .order_by("pk")
    )
    items, without_category, without_image = [], 0, 0
    for product in products:
        categories = list(product.categories.all()) or (
            list(product.parent.categories.all()) if product.parent_id else []
        )
        images = sorted(product.images.all(), key=lambda im: (im.display_order, im.pk))
        if not images and product.parent_id:
            images = sorted(product.parent.images.all(), key=lambda im: (im.display_order, im.pk))
        if not images or not images[0].original:
            without_image += 1
            continue
        if not categories:
            without_category += 1
            continue
        path = _image_path(images[0], work)
        if path is None:
            without_image += 1
            continue
        items.append(Item(product.pk, product.upc or str(product.pk), categories[0].name, path))
    test = np.array([datasets.is_test(it.split_id) for it in items], dtype=bool)
    counts: dict = {}
    for it, t in zip(items, test):
        if not t:
            counts[it.label] = counts.get(it.label, 0) + 1
    train_labels = {k: v for k, v in sorted(counts.items()) if v >= min_per_category}
    skipped = {k: v for k, v in sorted(counts.items()) if v < min_per_category}
    return Catalog(items, test, train_labels, skipped, without_category, without_image)


def check_catalog(catalog: Catalog, options: Options):
    """Refuse, with the reason, a store that cannot be adapted (nothing is trained or installed)."""
    if not catalog.items:
        raise AdaptError(
            "The store has no public products with an image and a category: there is nothing to train "
            f"on ({catalog.without_image} without an image, {catalog.without_category} without a "
            "category)."
        )
    if len(catalog.train_labels) < 2:
        have = ", ".join(f"{k} ({v})" for k, v in {**catalog.train_labels, **catalog.skipped_categories}.items())
        raise AdaptError(
            "Adapting needs at least 2 categories with at least "
            f"{options.min_per_category} training products each; the store has "
            f"{len(catalog.train_labels)} ({have or 'none'}). Products are labelled with their first "
            "category."
        )
    training = len(catalog.training)
    if training < options.min_products:
        raise AdaptError(
            f"Too few products to train on: {training} outside the test split in trained categories, "
            f"at least {options.min_products} are needed (--min-products)."
        )
    tests = int(catalog.test.sum())
    if tests < options.min_test:
        raise AdaptError(
            f"Too few products to measure a candidate on: {tests} in the test split (sha1(upc) % 5 == 0), "
            f"at least {options.min_test} are needed (--min-test)."
        )


def records_fingerprint(records) -> str:
    blob = json.dumps([(r.source_id, r.label, str(r.path), r.path.stat().st_size) for r in records])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]
