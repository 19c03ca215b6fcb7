"""Test data, on top of Oscar's own factories (``oscar.test.factories``).

``make_image`` draws a small synthetic product photo (a coloured silhouette per category); ``add_image`` and
``categorised_products`` put such photos on products made by Oscar's ``create_product``. The CSV data set the
catalog importer reads is the ``csv_dataset`` fixture (tests/conftest.py), built from the same photos.
"""

import io
import random

import numpy as np
from django.core.files.base import ContentFile
from oscar.core.loading import get_model
from oscar.test.factories import create_product
from PIL import Image, ImageDraw

COLOURS = {"Shirt": (200, 30, 30), "Pants": (30, 30, 200), "Shoes": (30, 160, 30)}


def make_image(kind: str, seed: int, size=(96, 128), fmt="JPEG") -> bytes:
    """A small synthetic 'product photo': a coloured silhouette per category on a light background."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (235 + rng.randint(0, 20), 235, 235))
    draw = ImageDraw.Draw(img)
    colour = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in COLOURS.get(kind, (120, 120, 120)))
    w, h = size
    if kind == "Shirt":
        draw.rectangle([w * 0.25, h * 0.2, w * 0.75, h * 0.85], fill=colour)
        draw.rectangle([w * 0.05, h * 0.2, w * 0.95, h * 0.4], fill=colour)
    elif kind == "Pants":
        draw.rectangle([w * 0.3, h * 0.1, w * 0.48, h * 0.95], fill=colour)
        draw.rectangle([w * 0.52, h * 0.1, w * 0.7, h * 0.95], fill=colour)
        draw.rectangle([w * 0.3, h * 0.1, w * 0.7, h * 0.3], fill=colour)
    else:
        draw.ellipse([w * 0.1, h * 0.55, w * 0.9, h * 0.85], fill=colour)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def add_image(product, kind, seed, fmt="JPEG"):
    """Give ``product`` a primary image drawn by ``make_image`` (saved, so the indexing receivers see it)."""
    ProductImage = get_model("catalogue", "ProductImage")
    image = ProductImage(product=product, display_order=0)
    image.original.save(f"p{product.pk}-{seed}.jpg", ContentFile(make_image(kind, seed, fmt=fmt)), save=False)
    image.save()
    return image


def categorised_products(count, kinds=("Shirt", "Pants", "Shoes"), upc_prefix="p", images=True):
    """``count`` in-stock products "<kind> <i>", one root category per kind in turn, each with a photo of its kind."""
    Category = get_model("catalogue", "Category")
    ProductCategory = get_model("catalogue", "ProductCategory")
    categories = {k: Category.add_root(name=k, slug=k.lower()) for k in kinds}
    products = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        product = create_product(title=f"{kind} {i}", upc=f"{upc_prefix}-{i}", num_in_stock=5)
        ProductCategory.objects.create(product=product, category=categories[kind])
        if images:
            add_image(product, kind, i)
        products.append(product)
    return products


def category_products(name):
    """The products of the category called ``name``, in creation order."""
    return list(get_model("catalogue", "Product").objects.filter(categories__name=name).order_by("pk"))


def embedding_receivers_paused():
    """The indexing receivers suspended in this thread (the test queues or runs the embedding itself)."""
    from oscar_fashion_ai.indexing import receivers

    return receivers.paused()


def slow_decoding_photo(seed, size):
    """A product photo that takes a while to decode (a large PNG), different for every product."""
    img = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(seed)
    colour = tuple(int(c) for c in rng.integers(0, 200, size=3))
    w, h = size
    draw.rectangle([w * 0.2, h * 0.1 + seed % 50, w * 0.8, h * 0.9], fill=colour)
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()
