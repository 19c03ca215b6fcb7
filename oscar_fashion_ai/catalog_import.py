"""Import a labelled image set as Oscar products.

Two layouts are understood:

* the CC0 clothing data set: ``images.csv`` with ``image`` and ``label`` columns, plus
  ``images/<image>.jpg``;
* a plain folder tree: ``<category>/<file>.jpg`` (any common image extension).

Each record becomes a standalone product whose UPC is the record's source id (so evaluation
can find it again) and whose category is the label. Re-running updates in place.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.core.files import File
from django.db import transaction
from django.utils.text import slugify
from oscar.core.loading import get_model
from PIL import Image, UnidentifiedImageError

from . import conf
from .ml.datasets import Record, SourceError, read_records  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

#: Max UPC length in Oscar; source ids longer than this are hashed.
UPC_MAX = 64


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    ignored_labels: int = 0
    missing: list = field(default_factory=list)
    corrupt: list = field(default_factory=list)
    categories: set = field(default_factory=set)

    @property
    def skipped(self) -> int:
        return len(self.missing) + len(self.corrupt)

    def summary(self) -> str:
        lines = [
            f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
            f"skipped {self.skipped} (missing {len(self.missing)}, corrupt {len(self.corrupt)}), "
            f"ignored labels {self.ignored_labels}; {len(self.categories)} categories"
        ]
        for kind, items in (("missing", self.missing), ("corrupt", self.corrupt)):
            for source_id, reason in items[:20]:
                lines.append(f"  {kind}: {source_id}: {reason}")
            if len(items) > 20:
                lines.append(f"  ... and {len(items) - 20} more {kind}")
        return "\n".join(lines)


def upc_for(source_id: str) -> str:
    if len(source_id) <= UPC_MAX:
        return source_id
    return "sha1-" + hashlib.sha1(source_id.encode()).hexdigest()


def price_for(source_id: str, label: str) -> Decimal:
    """A stable, plausible demo price derived from the id (same id, same price)."""
    h = int(hashlib.sha1(f"{label}:{source_id}".encode()).hexdigest(), 16)
    return Decimal(14 + h % 86) + Decimal("0.99")


def file_sha1(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha1").hexdigest()


def check_image(path: Path) -> str | None:
    """Return None when ``path`` is a decodable image, else a short reason."""
    if not path.exists():
        return "file not found"
    try:
        with Image.open(path) as img:
            img.draft("RGB", (64, 64))  # cheap reduced decode for JPEG, still reads every byte
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def search_index_paused():
    """Pause haystack's per-save index updates during a bulk import (we update in batches afterwards)."""
    from django.apps import apps

    from .indexing import receivers

    config = apps.get_app_config("haystack") if apps.is_installed("haystack") else None
    processor = getattr(config, "signal_processor", None)
    if processor is not None:
        processor.teardown()
    try:
        with receivers.paused():  # the importer queues indexing itself, in batches
            yield
    finally:
        if processor is not None:
            processor.setup()


def update_search_index(products, chunk=500):
    """Write ``products`` to the shop's haystack index (Oscar's catalogue pages list from it)."""
    try:
        from haystack import connections
        from haystack.exceptions import NotHandled
    except ImportError:
        return
    for alias in connections.connections_info:
        unified = connections[alias].get_unified_index()
        try:
            index = unified.get_index(products.model)
        except NotHandled:
            continue
        backend = connections[alias].get_backend()
        ids = list(products.values_list("pk", flat=True))
        for start in range(0, len(ids), chunk):
            backend.update(index, index.index_queryset().filter(pk__in=ids[start : start + chunk]))


class CatalogImporter:
    def __init__(self, stdout_progress=True):
        self.Product = get_model("catalogue", "Product")
        self.ProductClass = get_model("catalogue", "ProductClass")
        self.ProductCategory = get_model("catalogue", "ProductCategory")
        self.ProductImage = get_model("catalogue", "ProductImage")
        self.Category = get_model("catalogue", "Category")
        self.Partner = get_model("partner", "Partner")
        self.StockRecord = get_model("partner", "StockRecord")
        self.ignored = {label.casefold() for label in conf.get("IGNORED_LABELS")}
        self.progress = stdout_progress
        self._categories: dict[str, object] = {}
        self.changed_ids: list[int] = []

    def run(self, source: Path, limit: int | None = None) -> ImportReport:
        import warnings

        from tqdm import tqdm

        warnings.filterwarnings("ignore", message="update is not implemented in this backend")

        records = read_records(source)
        report = ImportReport()
        wanted = []
        for record in records:
            if not record.label or record.label.casefold() in self.ignored:
                report.ignored_labels += 1
                continue
            wanted.append(record)
        if limit is not None:
            wanted = wanted[:limit]
        self.product_class, _ = self.ProductClass.objects.get_or_create(
            name=conf.get("PRODUCT_CLASS"), defaults={"requires_shipping": True, "track_stock": True}
        )
        self.partner, _ = self.Partner.objects.get_or_create(name=conf.get("PARTNER"))
        existing = {
            p.upc: p
            for p in self.Product.objects.filter(upc__in=[upc_for(r.source_id) for r in wanted]).prefetch_related(
                "productcategory_set", "stockrecords"
            )
        }
        batch = 200
        bar = tqdm(total=len(wanted), desc="Importing catalog", unit="product", disable=not self.progress)
        with search_index_paused():
            for start in range(0, len(wanted), batch):
                with transaction.atomic():
                    for record in wanted[start : start + batch]:
                        self._import_one(record, existing.get(upc_for(record.source_id)), report)
                        bar.update(1)
        bar.close()
        imported = self.Product.objects.filter(upc__in=[upc_for(r.source_id) for r in wanted])
        update_search_index(imported)
        if self.changed_ids:
            from . import publishing
            from .indexing.embedding import mark_pending

            mark_pending(self.changed_ids)
            transaction.on_commit(lambda ids=list(self.changed_ids): publishing.enqueue_embedding_quietly(ids))
        return report

    def category(self, label: str):
        if label not in self._categories:
            slug = slugify(label) or "category"
            cat = self.Category.objects.filter(slug=slug, depth=1).first()
            if cat is None:
                cat = self.Category.add_root(name=label, slug=slug, is_public=True)
            self._categories[label] = cat
        return self._categories[label]

    def _import_one(self, record: Record, product, report: ImportReport):
        problem = check_image(record.path)
        if problem == "file not found":
            report.missing.append((record.source_id, str(record.path.name)))
            return
        if problem:
            report.corrupt.append((record.source_id, problem))
            return
        report.categories.add(record.label)
        category = self.category(record.label)
        title = f"{record.label} {record.source_id.split('/')[-1][:8]}"
        changed = False
        if product is None:
            product = self.Product.objects.create(
                upc=upc_for(record.source_id),
                title=title,
                product_class=self.product_class,
                structure=self.Product.STANDALONE,
                is_public=True,
                description=f"{record.label} from the imported catalog (source id {record.source_id}).",
            )
            created = True
        else:
            created = False
            if product.title != title or product.product_class_id != self.product_class.pk:
                product.title = title
                product.product_class = self.product_class
                product.save()
                changed = True
        categories = [pc.category_id for pc in product.productcategory_set.all()] if not created else []
        if categories != [category.pk]:
            self.ProductCategory.objects.filter(product=product).exclude(category=category).delete()
            self.ProductCategory.objects.get_or_create(product=product, category=category)
            changed = True
        price = price_for(record.source_id, record.label)
        stock = None if created else next(iter(product.stockrecords.all()), None)
        if stock is None:
            self.StockRecord.objects.create(
                product=product,
                partner=self.partner,
                partner_sku=upc_for(record.source_id),
                price_currency=conf.get("CURRENCY"),
                price=price,
                num_in_stock=25,
            )
            changed = True
        elif stock.price != price:
            stock.price = price
            stock.save(update_fields=["price"])
            changed = True
        if self._sync_image(product, record, created):
            changed = True
            self.changed_ids.append(product.pk)
        if created:
            report.created += 1
        elif changed:
            report.updated += 1
        else:
            report.unchanged += 1

    def _sync_image(self, product, record: Record, created: bool) -> bool:
        # Query fresh (not prefetched): Oscar's ProductImage.delete() re-saves the product's cached images.
        images = (
            []
            if created
            else list(self.ProductImage.objects.filter(product_id=product.pk).order_by("display_order", "pk"))
        )
        primary = images[0] if images else None
        checksum = file_sha1(record.path)
        if primary is not None:
            try:
                if primary.original and primary.original.size == record.path.stat().st_size:
                    with primary.original.open("rb") as fh:
                        if hashlib.sha1(fh.read()).hexdigest() == checksum:
                            return False
            except (FileNotFoundError, OSError):
                pass
            primary.delete()  # signals reindex the product
        with open(record.path, "rb") as fh:
            name = f"{slugify(record.source_id)[:80] or 'image'}{record.path.suffix.lower()}"
            image = self.ProductImage(product=product, display_order=0, caption=product.title)
            image.original.save(name, File(fh), save=False)
            image.save()
        return True
