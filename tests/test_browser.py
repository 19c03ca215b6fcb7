"""End-to-end in real headless Chromium (Debian's chromium driven by Playwright)."""

import os
import shutil
import time

import pytest
from django.core.management import call_command
from oscar.core.loading import get_model

from oscar_fashion_ai.catalog_import import CatalogImporter

Product = get_model("catalogue", "Product")
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM} (install Debian's chromium; .ci/run does)")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop in this thread
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.django_db(transaction=True)
def test_new_shopper_gets_recommendations_from_three_views(browser, live_server, csv_dataset, celery_worker_thread):
    CatalogImporter(stdout_progress=False).run(csv_dataset)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    # A phone-sized screen.
    page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
    page.goto(live_server.url + "/", wait_until="domcontentloaded")
    assert page.locator("#fashion-ai-home").get_attribute("data-personal") == "false"
    for product in Product.objects.filter(categories__name="Shoes").order_by("pk")[:3]:
        page.goto(live_server.url + product.get_absolute_url(), wait_until="domcontentloaded")
        assert product.title in page.content()
    deadline = time.monotonic() + 20
    personal = "false"
    while time.monotonic() < deadline:
        page.goto(live_server.url + "/", wait_until="domcontentloaded")
        personal = page.locator("#fashion-ai-home").get_attribute("data-personal")
        if personal == "true":
            break
        time.sleep(0.3)
    assert personal == "true"
    assert page.locator("#fashion-ai-home-title").inner_text() == "Recommended for you"
    first = page.locator("#fashion-ai-recommended li").first
    assert first.get_attribute("data-category") == "Shoes"
    # The header has the photo search entry, usable on a phone.
    page.goto(live_server.url + "/fashion-ai/search/photo/", wait_until="domcontentloaded")
    assert page.locator("#fashion-ai-photo").get_attribute("capture") == "environment"
