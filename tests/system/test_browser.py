"""End-to-end in real headless Chromium (Debian's chromium driven by Playwright)."""

import time

import pytest
from django.core.management import call_command
from oscar.core.loading import get_model

from oscar_fashion_ai.catalog_import import CatalogImporter

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fashion_models")]  # real headless Chromium

Product = get_model("catalogue", "Product")


@pytest.mark.worker
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


def draw_outline_with_mouse(page):
    """A closed four-sided outline drawn on the sketch canvas with the mouse."""
    box = page.locator("#fashion-ai-canvas").bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + w * 0.3, y0 + h * 0.2)
    page.mouse.down()
    for fx, fy in [(0.7, 0.2), (0.65, 0.8), (0.35, 0.8), (0.3, 0.2)]:
        page.mouse.move(x0 + w * fx, y0 + h * fy, steps=8)
    page.mouse.up()


@pytest.mark.django_db(transaction=True)
def test_sketch_widget_draw_and_search_without_reload(browser, live_server, csv_dataset):
    CatalogImporter(stdout_progress=False).run(csv_dataset)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    page.goto(live_server.url + "/", wait_until="domcontentloaded")
    page.click("#fashion-ai-home-sketch")  # on a phone the header entries sit behind the menu button
    page.wait_for_selector("#fashion-ai-sketch[data-ready]")  # the script has run and enabled the button
    assert page.locator("#fashion-ai-sketch-submit").is_enabled()
    page.evaluate("window.__marker = 'same page'")
    # Blank canvas: a friendly message, no results.
    page.click("#fashion-ai-sketch-submit")
    page.wait_for_function("document.getElementById('fashion-ai-sketch-status').textContent.includes('empty')")
    draw_outline_with_mouse(page)
    page.click("#fashion-ai-sketch-submit")
    page.wait_for_selector("#fashion-ai-sketch-results li", timeout=20000)
    assert page.locator("#fashion-ai-sketch-results li").count() >= 5
    assert page.locator("#fashion-ai-understood").is_visible()
    assert page.evaluate("window.__marker") == "same page"  # no reload
    # Undo and clear are keyboard-reachable buttons.
    page.focus("#fashion-ai-clear")
    page.keyboard.press("Enter")
    page.click("#fashion-ai-sketch-submit")
    page.wait_for_function("document.getElementById('fashion-ai-sketch-status').textContent.includes('empty')")


@pytest.mark.django_db(transaction=True)
def test_sketch_widget_with_touch_on_a_phone(browser, live_server, csv_dataset):
    """Real touch events (Chromium's Input.dispatchTouchEvent) draw on the canvas; the results and the
    generator's picture appear without a reload."""
    CatalogImporter(stdout_progress=False).run(csv_dataset)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(live_server.url + "/fashion-ai/search/sketch/", wait_until="domcontentloaded")
    page.wait_for_selector("#fashion-ai-sketch[data-ready]")  # the script has run and enabled the button
    page.evaluate(
        "window.__kinds = new Set(); document.getElementById('fashion-ai-canvas')"
        ".addEventListener('pointerdown', e => window.__kinds.add(e.pointerType))"
    )
    box = page.locator("#fashion-ai-canvas").bounding_box()
    cdp = context.new_cdp_session(page)

    def touch(kind, fx, fy):
        points = [] if kind == "touchEnd" else [{"x": box["x"] + box["width"] * fx, "y": box["y"] + box["height"] * fy}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", 0.3, 0.25)
    for i in range(1, 21):
        touch("touchMove", 0.3 + 0.4 * i / 20, 0.25 + 0.5 * (i % 2) * i / 20)
    touch("touchEnd", 0, 0)
    assert page.evaluate("[...window.__kinds]") == ["touch"]
    inked = page.evaluate("""() => { const c = document.getElementById('fashion-ai-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] < 128) n++; return n; }""")
    assert inked > 100  # the finger left strokes
    page.evaluate("window.__marker = 'same page'")
    page.click("#fashion-ai-sketch-submit")
    try:
        page.wait_for_selector("#fashion-ai-sketch-results li", timeout=20000)
    except Exception as exc:
        raise AssertionError(page.locator("#fashion-ai-sketch-status").text_content()) from exc
    assert page.locator("#fashion-ai-sketch-results li").count() >= 5
    src = page.locator("#fashion-ai-understood img").get_attribute("src")
    assert src.startswith("data:image/png;base64,") and page.locator("#fashion-ai-understood").is_visible()
    assert page.evaluate("window.__marker") == "same page"


@pytest.mark.django_db(transaction=True)
def test_sketch_widget_hints_redo_category_after_and_closer_to_this(browser, live_server, csv_dataset):
    """The widget helps the shopper refine: hints are shown, undo/redo (buttons and keys), a category chosen after
    a search re-runs it, and "Closer to this" on a result searches again towards that product."""
    CatalogImporter(stdout_progress=False).run(csv_dataset)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url + "/fashion-ai/search/sketch/", wait_until="domcontentloaded")
    page.wait_for_selector("#fashion-ai-sketch[data-ready]")
    assert page.locator("#fashion-ai-sketch-hints li").count() >= 3
    assert "side" in page.locator("#fashion-ai-sketch-hints").text_content()
    ink = """() => { const c = document.getElementById('fashion-ai-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++; return n; }"""
    draw_outline_with_mouse(page)
    drawn = page.evaluate(ink)
    assert drawn > 500
    page.click("#fashion-ai-undo")
    assert page.evaluate(ink) == 0
    page.click("#fashion-ai-redo")
    assert page.evaluate(ink) == drawn
    page.keyboard.press("Control+z")
    assert page.evaluate(ink) == 0
    page.keyboard.press("Control+Shift+z")
    assert page.evaluate(ink) == drawn

    def result_ids():
        return page.eval_on_selector_all("#fashion-ai-sketch-results li", "els => els.map(e => e.dataset.productId)")

    with page.expect_response(lambda r: "/api/search/sketch" in r.url, timeout=60000) as first:
        page.click("#fashion-ai-sketch-submit")
    assert first.value.ok, (errors, first.value.text())
    page.wait_for_selector("#fashion-ai-sketch-results li")
    plain = result_ids()
    # "Closer to this" on the third result: a new search with `like`, the product named above the results
    target = page.locator("#fashion-ai-sketch-results li").nth(2)
    target_id = target.get_attribute("data-product-id")
    with page.expect_request(lambda r: "/api/search/sketch" in r.url) as closer:
        target.locator(".fashion-ai-closer").click()
    assert str(closer.value.post_data_json["like"]) == target_id
    page.wait_for_function(
        f"![...document.querySelectorAll('#fashion-ai-sketch-results li')]"
        f".some(e => e.dataset.productId === '{target_id}')"
    )
    assert page.locator("#fashion-ai-like").is_visible()
    assert result_ids() != plain
    # a category chosen after the search narrows the results at once (no button press)
    shoes = Product.objects.filter(categories__slug="shoes").values_list("pk", flat=True)
    with page.expect_request(lambda r: "/api/search/sketch" in r.url) as narrowed:
        page.select_option("#fashion-ai-category", "shoes")
    assert narrowed.value.post_data_json["category"] == "shoes"
    page.wait_for_function("document.getElementById('fashion-ai-sketch-status').textContent.includes('found')")
    page.wait_for_timeout(200)
    ids = [int(i) for i in result_ids()]
    assert ids and set(ids) <= set(shoes)
    # back to the drawing alone
    with page.expect_request(lambda r: "/api/search/sketch" in r.url) as alone:
        page.click("#fashion-ai-like-clear")
    assert "like" not in alone.value.post_data_json and page.locator("#fashion-ai-like").is_hidden()
