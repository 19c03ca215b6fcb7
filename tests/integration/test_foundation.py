from pathlib import Path

import pytest
import yaml
from django.db import connection
from django.urls import reverse
from oscar.core.loading import get_model

pytestmark = pytest.mark.usefixtures("fashion_models")

ROOT = Path(__file__).resolve().parents[2]
Product = get_model("catalogue", "Product")


@pytest.mark.django_db
def test_database_is_postgresql_with_pgvector():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone() is not None


@pytest.mark.django_db
def test_hnsw_index_exists():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'fashion_ai_embedding_hnsw'")
        (indexdef,) = cursor.fetchone()
    assert "USING hnsw" in indexdef and "vector_cosine_ops" in indexdef


def test_homepage_product_page_and_health(client, imported_catalog):
    home = client.get("/", follow=True)
    assert home.status_code == 200
    product = imported_catalog.first()
    page = client.get(product.get_absolute_url())
    assert page.status_code == 200
    assert product.title in page.content.decode()
    category = product.categories.first()
    listing = client.get(category.get_absolute_url())
    assert listing.status_code == 200
    in_category = Product.objects.filter(categories=category)
    body = listing.content.decode()
    assert f"<strong>{in_category.count()}</strong> result" in body and product.title in body
    everything = client.get("/catalogue/").content.decode()
    assert "<strong>12</strong> results" in everything
    health = client.get(reverse("fashion-ai:api-health"))
    assert health.status_code == 200 and health.json()["pgvector"]


def test_dashboard_for_staff_only(client, django_user_model, imported_catalog):
    url = reverse("fashion-ai-dashboard:fashion-ai-index")
    customer = django_user_model.objects.create_user("shopper", "shopper@example.com", "pw")
    client.force_login(customer)
    refused = client.get(url)
    assert refused.status_code in (302, 403)
    if refused.status_code == 302:
        assert "login" in refused["Location"]
    assert client.get(reverse("dashboard:index")).status_code in (302, 403)
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("dashboard:index")).status_code == 200
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="fashion-ai-total">12<' in body
    assert "Fashion AI" in client.get(reverse("dashboard:index")).content.decode()  # in the dashboard menu


def test_docker_compose_describes_a_production_stack():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"db", "redis", "web", "worker", "worker-gpu"} <= set(services)
    assert services["db"]["image"].startswith("pgvector/pgvector")
    assert services["redis"]["image"].startswith("redis")
    for name in ("web", "worker", "worker-gpu"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres")
        assert env["CELERY_BROKER_URL"].startswith("redis://redis")
        assert "media:/app/var/media" in services[name]["volumes"]
    web_command = services["web"]["command"]
    assert "gunicorn" in (" ".join(web_command) if isinstance(web_command, list) else web_command)
    assert "celery" in str(services["worker"]["command"]) and "worker" in str(services["worker"]["command"])
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert {"pgdata", "media"} <= set(compose["volumes"])
    assert (ROOT / "Dockerfile").exists()
