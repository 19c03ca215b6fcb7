import pytest
from django.core.management import CommandError, call_command
from oscar.core.loading import get_model

from oscar_fashion_ai.catalog_import import CatalogImporter
from tests.factories import make_image

Product = get_model("catalogue", "Product")
Category = get_model("catalogue", "Category")
StockRecord = get_model("partner", "StockRecord")
ProductImage = get_model("catalogue", "ProductImage")

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fashion_models")]


def run_import(source, **kwargs):
    return CatalogImporter(stdout_progress=False).run(source, **kwargs)


def test_import_creates_products_categories_stock_and_images(csv_dataset):
    report = run_import(csv_dataset)
    assert report.created == 12
    assert report.ignored_labels == 1
    assert [sid for sid, _ in report.missing] == ["missing-1"]
    assert [sid for sid, _ in report.corrupt] == ["corrupt-1"]
    assert Product.objects.count() == 12
    assert set(Category.objects.values_list("name", flat=True)) == {"Shirt", "Pants", "Shoes"}
    assert not Category.objects.filter(name="Not sure").exists()
    assert StockRecord.objects.count() == 12
    assert ProductImage.objects.filter(display_order=0).count() == 12
    shirt = Product.objects.get(upc="shirt-0000-0000-0000-000000000000")
    assert shirt.categories.get().name == "Shirt"
    assert shirt.title.startswith("Shirt ")
    stock = shirt.stockrecords.get()
    assert stock.price > 0 and stock.num_in_stock > 0
    assert shirt.is_public
    # Every imported product is queued for Image2Vec indexing (pending rows for the sweep, batched tasks).
    from oscar_fashion_ai.models import ProductEmbedding

    assert ProductEmbedding.objects.filter(status="pending").count() == 12


def test_reimport_is_idempotent_and_updates_changed_images(csv_dataset):
    run_import(csv_dataset)
    again = run_import(csv_dataset)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 12)
    assert Product.objects.count() == 12 and ProductImage.objects.count() == 12
    # A changed image file is picked up as an update; still one image per product.
    (csv_dataset / "images" / "pants-0001-0000-0000-000000000000.jpg").write_bytes(make_image("Shoes", 1234))
    third = run_import(csv_dataset)
    assert (third.created, third.updated, third.unchanged) == (0, 1, 11)
    assert ProductImage.objects.count() == 12


def test_limit_and_folder_layout(tmp_path):
    root = tmp_path / "folders"
    for label in ("Hat", "Skirt"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.jpg").write_bytes(make_image("Shirt", i))
    (root / "Hat" / "notes.txt").write_text("not an image")
    report = run_import(root, limit=4)
    assert report.created == 4
    assert Product.objects.filter(upc__startswith="Hat/").count() == 3


def test_command_reports_and_rejects_bad_source(csv_dataset, tmp_path, capsys):
    call_command("fashion_load_catalog", source=csv_dataset, no_progress=True)
    out = capsys.readouterr().out
    assert "created 12" in out and "missing 1" in out and "corrupt 1" in out
    with pytest.raises(CommandError):
        call_command("fashion_load_catalog", source=tmp_path / "does-not-exist", no_progress=True)
    assert Product.objects.count() == 12
