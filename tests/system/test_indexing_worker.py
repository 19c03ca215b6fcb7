"""Image2Vec freshness through a real Celery worker consuming from Redis."""

import time

import pytest
from django.core.files.base import ContentFile
from oscar.core.loading import get_model
from oscar.test.factories import create_product

from oscar_fashion_ai.models import ProductEmbedding
from tests.factories import make_image

pytestmark = pytest.mark.usefixtures("fashion_models")

ProductImage = get_model("catalogue", "ProductImage")


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def add_image(product, kind, seed, fmt="JPEG"):
    image = ProductImage(product=product, display_order=0)
    image.original.save(f"p{product.pk}-{seed}.jpg", ContentFile(make_image(kind, seed, fmt=fmt)), save=False)
    image.save()
    return image


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_image_change_is_indexed_by_the_worker(celery_worker_thread):
    product = create_product(title="Red shirt")
    add_image(product, "Shirt", 1)
    assert wait_for(lambda: ProductEmbedding.objects.filter(product=product, status="indexed").exists())
    row = ProductEmbedding.objects.get(product=product)
    first_checksum, first_vector = row.image_checksum, list(row.vector)
    assert len(first_vector) == 256
    # Replacing the image re-embeds the product with the new checksum.
    ProductImage.objects.filter(product=product).delete()
    add_image(product, "Pants", 2)
    assert wait_for(
        lambda: (
            ProductEmbedding.objects.filter(product=product, status="indexed")
            .exclude(image_checksum=first_checksum)
            .exists()
        )
    )
    # A corrupt image is a permanent failure, recorded on the row, not retried forever.
    broken = create_product(title="Broken")
    image = ProductImage(product=broken, display_order=0)
    image.original.save("broken.jpg", ContentFile(b"\xff\xd8\xff\xe0 not really a jpeg"), save=False)
    image.save()
    assert wait_for(lambda: ProductEmbedding.objects.filter(product=broken, status="failed").exists())
    failed = ProductEmbedding.objects.get(product=broken)
    assert "could not" in failed.error or "not an image" in failed.error
    assert failed.attempts == 1
