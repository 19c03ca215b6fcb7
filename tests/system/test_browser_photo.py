"""Search by photo in real headless Chromium (Playwright): the crop box with mouse and touch, paste from the
clipboard, drag and drop; results swapped in without a reload."""

import io

import pytest
from oscar.core.loading import get_model
from PIL import Image

from tests.factories import make_image

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fashion_models")]  # real headless Chromium

Product = get_model("catalogue", "Product")
URL = "/fashion-ai/search/photo/"


def pair_jpeg():
    """A shirt (left half) and trousers (right half) side by side: 192 x 128 pixels."""
    a = Image.open(io.BytesIO(make_image("Shirt", 7))).convert("RGB")
    b = Image.open(io.BytesIO(make_image("Pants", 8))).convert("RGB")
    canvas = Image.new("RGB", (192, 128), (240, 240, 240))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (96, 0))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture
def catalog(live_server, indexed_catalog):
    """The live server, with the CSV catalog imported and indexed."""
    return live_server


def open_page(browser, live_server, **context):
    context = browser.new_context(**context)
    page = context.new_page()
    page.goto(live_server.url + URL, wait_until="domcontentloaded")
    page.wait_for_selector("#fashion-ai-photo-form[data-ready]")
    page.evaluate("window.__marker = 'same page'")
    return context, page


def searched_box(page):
    """The box the server searched, as it answered (x,y,w,h in image pixels), and where it came from."""
    results = page.locator("#fashion-ai-photo-results")
    return results.get_attribute("data-box"), results.get_attribute("data-box-source")


def wait_searched(page, count):
    page.wait_for_function(
        f"Number(document.getElementById('fashion-ai-photo-form').dataset.searched || 0) >= {count}", timeout=30000
    )


def first_category(page):
    pk = int(page.locator("#fashion-ai-results > li").first.get_attribute("data-product-id"))
    return Product.objects.get(pk=pk).categories.first().name


def near(box, expected, tolerance=3):
    return all(abs(a - b) <= tolerance for a, b in zip(map(int, box.split(",")), expected))


@pytest.mark.django_db(transaction=True)
def test_crop_box_moves_and_resizes_with_the_mouse(browser, catalog):
    context, page = open_page(browser, catalog, viewport={"width": 1200, "height": 900})
    page.set_input_files(
        "#fashion-ai-photo-file", files=[{"name": "pair.jpg", "mimeType": "image/jpeg", "buffer": pair_jpeg()}]
    )
    page.wait_for_selector("#fashion-ai-crop-box[data-preset]", timeout=30000)  # the server's preset is shown
    assert page.locator("#fashion-ai-crop").is_visible() and not page.locator("#fashion-ai-drop").is_visible()
    assert page.locator("#fashion-ai-results > li").count() >= 5 and searched_box(page)[1] == "preset"
    assert page.locator("#fashion-ai-results .fashion-ai-more-like-this").count() >= 5
    img = page.locator("#fashion-ai-crop-image").bounding_box()
    assert img["width"] > 150  # shown at a usable size

    def drag(selector, to_x, to_y):
        handle = page.locator(selector).bounding_box()
        page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
        page.mouse.down()
        page.mouse.move(to_x, to_y, steps=6)
        page.mouse.up()

    # Top-left corner to the photo's corner, bottom-right corner to the middle of its bottom edge: the shirt.
    drag('.fashion-ai-handle[data-handle="nw"]', img["x"] - 20, img["y"] - 20)  # past the edge: clamped
    wait_searched(page, 2)
    drag('.fashion-ai-handle[data-handle="se"]', img["x"] + img["width"] / 2, img["y"] + img["height"] + 30)
    wait_searched(page, 3)
    assert near(searched_box(page)[0], (0, 0, 96, 128)), searched_box(page)
    assert searched_box(page)[1] == "request" and first_category(page) == "Shirt"
    # Move the whole box (drag inside it) onto the trousers.
    box = page.locator("#fashion-ai-crop-box").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + img["width"], box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    wait_searched(page, 4)
    assert near(searched_box(page)[0], (96, 0, 96, 128)), searched_box(page)
    assert first_category(page) == "Pants"
    # Keyboard: the box is focusable; Shift+arrow makes it smaller, and the search follows.
    page.focus("#fashion-ai-crop-box")
    page.keyboard.press("Shift+ArrowLeft")
    wait_searched(page, 5)
    x, y, w, h = map(int, searched_box(page)[0].split(","))
    assert w < 96 and h == 128
    # "Search the whole photo".
    page.click("#fashion-ai-crop-whole")
    wait_searched(page, 6)
    assert searched_box(page) == ("0,0,192,128", "whole")
    assert page.evaluate("window.__marker") == "same page"
    context.close()


@pytest.mark.django_db(transaction=True)
def test_crop_box_with_touch_on_a_phone(browser, catalog):
    context, page = open_page(browser, catalog, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    assert page.locator("#fashion-ai-photo").get_attribute("capture") == "environment"  # phone camera
    page.set_input_files(
        "#fashion-ai-photo", files=[{"name": "camera.jpg", "mimeType": "image/jpeg", "buffer": pair_jpeg()}]
    )
    page.wait_for_selector("#fashion-ai-crop-box[data-preset]", timeout=30000)
    page.evaluate(
        "window.__kinds = new Set(); document.getElementById('fashion-ai-crop-stage')"
        ".addEventListener('pointerdown', e => window.__kinds.add(e.pointerType))"
    )
    img = page.locator("#fashion-ai-crop-image").bounding_box()
    cdp = context.new_cdp_session(page)

    def touch_drag(start, end, steps=12):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": start[0], "y": start[1]}]})
        for i in range(1, steps + 1):
            x = start[0] + (end[0] - start[0]) * i / steps
            y = start[1] + (end[1] - start[1]) * i / steps
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    def centre(selector):
        b = page.locator(selector).bounding_box()
        return b["x"] + b["width"] / 2, b["y"] + b["height"] / 2

    touch_drag(centre('.fashion-ai-handle[data-handle="nw"]'), (img["x"] - 10, img["y"] - 10))
    wait_searched(page, 2)
    touch_drag(
        centre('.fashion-ai-handle[data-handle="se"]'), (img["x"] + img["width"] / 2, img["y"] + img["height"] + 10)
    )
    wait_searched(page, 3)
    assert page.evaluate("[...window.__kinds]") == ["touch"]
    assert near(searched_box(page)[0], (0, 0, 96, 128), tolerance=4), searched_box(page)
    assert first_category(page) == "Shirt"
    assert page.evaluate("window.__marker") == "same page"
    context.close()


DATA_TRANSFER = """async (bytes) => {
    const file = new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"});
    const dt = new DataTransfer();
    dt.items.add(file);
    return dt;
}"""


@pytest.mark.django_db(transaction=True)
def test_paste_and_drag_and_drop(browser, catalog):
    context, page = open_page(browser, catalog, viewport={"width": 1200, "height": 900})
    data = list(pair_jpeg())
    # Paste: a real Ctrl+V of an image put on the clipboard.
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=catalog.url)
    page.evaluate(
        """async (bytes) => {
        const jpeg = new Blob([new Uint8Array(bytes)], {type: "image/jpeg"});
        const bitmap = await createImageBitmap(jpeg);
        const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
        canvas.getContext("2d").drawImage(bitmap, 0, 0);
        const png = await canvas.convertToBlob({type: "image/png"});
        await navigator.clipboard.write([new ClipboardItem({"image/png": png})]);
    }""",
        data,
    )
    page.focus("#fashion-ai-drop")
    page.keyboard.press("Control+V")
    page.wait_for_selector("#fashion-ai-crop-box[data-preset]", timeout=30000)
    assert page.locator("#fashion-ai-results > li").count() >= 5
    assert page.evaluate("document.getElementById('fashion-ai-crop-image').naturalWidth") == 192
    # Pasting text into a price field still pastes text.
    page.click("#fashion-ai-price-max")
    page.evaluate("navigator.clipboard.writeText('70')")
    page.keyboard.press("Control+V")
    assert page.input_value("#fashion-ai-price-max") == "70"
    page.keyboard.press("Tab")  # a changed filter searches again
    wait_searched(page, 2)

    # Drag and drop onto the page: back to the drop zone, then a file dropped on it.
    page.click("#fashion-ai-photo-change")
    assert page.locator("#fashion-ai-drop").is_visible()
    searched = int(page.evaluate("document.getElementById('fashion-ai-photo-form').dataset.searched"))
    dt = page.evaluate_handle(DATA_TRANSFER, data)
    page.dispatch_event("#fashion-ai-drop", "dragenter", {"dataTransfer": dt})
    page.dispatch_event("#fashion-ai-drop", "dragover", {"dataTransfer": dt})
    assert "fashion-ai-dragover" in page.get_attribute("#fashion-ai-drop", "class")
    page.dispatch_event("#fashion-ai-drop", "drop", {"dataTransfer": dt})
    wait_searched(page, searched + 1)
    assert page.locator("#fashion-ai-crop").is_visible()
    assert page.locator("#fashion-ai-results > li").count() >= 1
    # The price filter typed before applies to the dropped photo's search.
    assert all(
        float(p.replace("€", "").replace(",", "").strip()) <= 70
        for p in page.locator("#fashion-ai-results .price_color").all_inner_texts()
    )
    # An image dragged from another site (its address, no file) gets an explanation, not a download.
    url_dt = page.evaluate_handle(
        "() => { const dt = new DataTransfer(); dt.setData('text/uri-list', 'https://example.com/a.jpg'); return dt; }"
    )
    page.dispatch_event("#fashion-ai-crop-stage", "drop", {"dataTransfer": url_dt})
    assert "we do not download images from other sites" in page.inner_text("#fashion-ai-photo-status")
    assert page.evaluate("window.__marker") == "same page"
    context.close()
