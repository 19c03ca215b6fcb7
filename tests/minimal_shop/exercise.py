"""The test's client for the minimal shop (not part of the shop): run with the shop's settings, it uses the shop
as a shop owner and a shopper would and prints what it saw as one JSON line
(tests/system/test_minimal_shop.py checks it).

    python exercise.py shop    # catalog, worker indexing, product page, admin, dashboard, APIs, recommendations
    python exercise.py admin   # the admin action (run again with the plugin's apps listed first)
"""

import base64
import io
import json
import os
import sys
import time

import django


def image(colour, seed, shape):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (128, 160), (240, 240, 238 - seed % 5))
    draw = ImageDraw.Draw(img)
    fill = tuple(max(0, min(255, c + (seed * 7) % 21 - 10)) for c in colour)
    if shape == "shirt":
        draw.rectangle([32, 32, 96, 136], fill=fill)
        draw.rectangle([6, 32, 122, 64], fill=fill)
    else:
        draw.rectangle([38, 16, 61, 152], fill=fill)
        draw.rectangle([67, 16, 90, 152], fill=fill)
        draw.rectangle([38, 16, 90, 48], fill=fill)
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


def wait_for(what, condition, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def catalog():
    from django.core.files.base import ContentFile
    from oscar.apps.catalogue.categories import create_from_breadcrumbs
    from oscar.core.loading import get_model
    from oscar.test import factories

    Product, ProductCategory = get_model("catalogue", "Product"), get_model("catalogue", "ProductCategory")
    ProductImage = get_model("catalogue", "ProductImage")
    made = {}
    for name, colour, shape in (("Shirts", (200, 30, 30), "shirt"), ("Trousers", (30, 30, 200), "trousers")):
        category = create_from_breadcrumbs(name)
        for i in range(4):
            product = factories.create_product(title=f"{name} {i}", price=20, num_in_stock=10)
            ProductCategory.objects.create(product=product, category=category)
            # a real save of an image, as the dashboard does: the plugin's receiver queues the indexing
            ProductImage.objects.create(
                product=product, original=ContentFile(image(colour, i, shape), f"{shape}{i}.jpg")
            )
            made.setdefault(name, []).append(product.pk)
    return made, Product


def shop():
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    import oscar_fashion_ai
    from oscar_fashion_ai.models import CustomerPreference, PreferenceEvent, ProductEmbedding

    out = {"package": oscar_fashion_ai.__file__}
    made, Product = catalog()
    total = sum(len(v) for v in made.values())
    wait_for(
        "the worker to index the catalog", lambda: ProductEmbedding.objects.filter(status="indexed").count() == total
    )
    out["indexed_by_worker"] = ProductEmbedding.objects.filter(status="indexed").count()

    owner = get_user_model().objects.create_superuser("owner", "owner@example.com", "owner-pw")
    staff = Client()
    staff.force_login(owner)
    shirt = Product.objects.get(pk=made["Shirts"][0])
    page = staff.get(shirt.get_absolute_url())
    html = page.content.decode()
    similar = html.split('id="fashion-ai-similar"', 1)[1] if 'id="fashion-ai-similar"' in html else ""
    out["product_page"] = {
        "status": page.status_code,
        "similar_section": bool(similar),
        "similar_titles": [p.title for p in Product.objects.order_by("pk") if f'title="{p.title}"' in similar],
        "sketch_link": "/fashion-ai/search/sketch/" in html,
        "photo_link": "/fashion-ai/search/photo/" in html,
    }

    dashboard = staff.get("/dashboard/fashion-ai/")
    menu = staff.get("/dashboard/")
    out["dashboard"] = {
        "status": dashboard.status_code,
        "coverage": f'<span id="fashion-ai-indexed">{total}</span>' in dashboard.content.decode(),
        "menu_link": "/dashboard/fashion-ai/" in menu.content.decode(),
    }

    out["admin"] = admin_action(staff, made["Trousers"][:2])
    wait_for(
        "the worker to reindex the admin's selection",
        lambda: ProductEmbedding.objects.filter(status="indexed").count() == total,
    )

    shopper = Client()
    photo = shopper.post(
        "/fashion-ai/api/search/photo/", {"image": io.BytesIO(image((30, 30, 200), 9, "trousers"))}, format="multipart"
    )
    body = photo.json()
    out["photo_api"] = {
        "status": photo.status_code,
        "top": [r["product_id"] in made["Trousers"] for r in body.get("results", [])[:3]],
    }
    sketch_png = io.BytesIO()
    from PIL import Image, ImageDraw

    drawing = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(drawing).rectangle([70, 30, 186, 230], outline="black", width=6)
    drawing.save(sketch_png, "PNG")
    sketch = shopper.post(
        "/fashion-ai/api/search/sketch/",
        json.dumps({"sketch": "data:image/png;base64," + base64.b64encode(sketch_png.getvalue()).decode()}),
        content_type="application/json",
    )
    out["sketch_api"] = {
        "status": sketch.status_code,
        "results": len(sketch.json().get("results", [])),
        "generated_image": str(sketch.json().get("generated_image", ""))[:22],
    }

    # a cookie-less client (a bot) records nothing; a browser's views become recommendations
    before = PreferenceEvent.objects.count()
    Client().get(Product.objects.get(pk=made["Shirts"][1]).get_absolute_url())
    out["bot_events"] = PreferenceEvent.objects.count() - before
    for pk in made["Shirts"][:3]:
        shopper.get(Product.objects.get(pk=pk).get_absolute_url())
    out["shopper_events"] = PreferenceEvent.objects.count() - before

    def personal():
        answer = shopper.get("/fashion-ai/api/recommendations/", {"k": 3}).json()
        return answer if answer["source"] == "personal" else None

    recs = wait_for("the worker to update the shopper's profile", personal, timeout=120)
    out["recommendations"] = {
        "source": recs["source"],
        "top_is_shirt": recs["results"][0]["product_id"] in made["Shirts"],
    }
    home = shopper.get("/", follow=True)
    out["homepage"] = {"status": home.status_code, "personal": 'data-personal="true"' in home.content.decode()}

    customer = get_user_model().objects.create_user("shopper", "shopper@example.com", "pw")
    shopper.force_login(customer)
    profile = shopper.get("/accounts/profile/").content.decode()
    out["profile_forget_button"] = "Forget my style profile" in profile
    forget = shopper.post("/fashion-ai/profile/forget/", {"next": "//evil.example/"})
    out["forget"] = {
        "status": forget.status_code,
        "location": forget["Location"],
        "profiles_left": CustomerPreference.objects.filter(user=customer).count(),
    }

    doctor = io.StringIO()
    try:
        call_command("fashion_doctor", stdout=doctor, no_color=True)
        out["doctor_ok"] = True
    except BaseException as exc:  # noqa: BLE001 - CommandError or SystemExit: reported, not raised
        out["doctor_ok"] = False
        out["doctor_error"] = str(exc)
    out["doctor"] = doctor.getvalue().splitlines()
    return out


def admin_action(client, ids):
    from oscar.core.loading import get_model

    from oscar_fashion_ai.models import IndexRun

    changelist = client.get("/admin/catalogue/product/")
    runs = IndexRun.objects.count()
    response = client.post(
        "/admin/catalogue/product/", {"action": "reindex_selected", "_selected_action": [str(pk) for pk in ids]}
    )
    queued = IndexRun.objects.count() == runs + 1
    from django.contrib import admin

    Product = get_model("catalogue", "Product")
    model_admin = admin.site._registry.get(Product)
    return {
        "changelist": changelist.status_code,
        "offered": "reindex_selected" in changelist.content.decode(),
        "post": response.status_code,
        "queued": queued,
        "admin_class": f"{type(model_admin).__module__}.{type(model_admin).__name__}",
    }


def admin_only():
    from django.contrib.auth import get_user_model
    from django.test import Client
    from oscar.core.loading import get_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="owner"))
    ids = list(get_model("catalogue", "Product").objects.order_by("pk").values_list("pk", flat=True)[:2])
    from django.conf import settings

    return {
        "admin": admin_action(client, ids),
        "apps": [a for a in settings.INSTALLED_APPS if "fashion" in a or a == "oscar.config.Shop"],
    }


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minimal_shop.settings")
    django.setup()
    result = shop() if sys.argv[1:] == ["shop"] else admin_only()
    print("RESULT " + json.dumps(result))
