"""Scale: HNSW parameters chosen for the catalog size, applied per search and per index build; filtered queries
return k rows; search reads go to the search database (FASHION_AI["SEARCH_DATABASE"], router)."""

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from oscar.core.loading import get_model

from oscar_fashion_ai import runtime, search
from oscar_fashion_ai.indexing import hnsw
from oscar_fashion_ai.models import ProductEmbedding

pytestmark = pytest.mark.usefixtures("fashion_models")

Product = get_model("catalogue", "Product")


# --- the choice for a catalog size (pure) ------------------------------------------------------------------------


def test_bands_cover_every_size_and_grow_with_it():
    assert hnsw.BANDS[-1].max_rows is None
    limits = [b.max_rows for b in hnsw.BANDS[:-1]]
    assert limits == sorted(limits)
    previous = None
    for rows in (0, 1_000, 100_000, 150_001, 300_000, 1_000_000, 100_000_000):
        params = {**hnsw.index_parameters(rows), **hnsw.query_parameters(rows, 10)}
        assert params["ef_construction"] >= 2 * params["m"]  # pgvector refuses less
        if previous:
            assert all(params[key] >= previous[key] for key in ("m", "ef_construction", "hnsw.ef_search"))
        previous = params


def test_the_measured_choices_for_10k_100k_and_1m():
    # The bands README "Scaling" and docs/SCALING.md document (chosen with benchmarks/hnsw_scale.py).
    expected = {10_000: (16, 64, 100, 200), 100_000: (24, 100, 100, 400), 1_000_000: (24, 100, 400, 400)}
    for rows, (m, ef_construction, ef, ef_filtered) in expected.items():
        assert hnsw.index_parameters(rows) == {"m": m, "ef_construction": ef_construction}
        assert hnsw.query_parameters(rows, 10)["hnsw.ef_search"] == ef
        assert hnsw.query_parameters(rows, 10, filtered=True)["hnsw.ef_search"] == ef_filtered


def test_ef_search_grows_with_k_and_filters_and_stays_within_pgvector_limits():
    for rows in (1_000, 100_000, 1_000_000):
        plain = hnsw.query_parameters(rows, 10)
        assert plain["hnsw.iterative_scan"] == "relaxed_order" and plain["hnsw.max_scan_tuples"] >= 20_000
        assert hnsw.query_parameters(rows, 10, filtered=True)["hnsw.ef_search"] >= plain["hnsw.ef_search"]
        assert hnsw.query_parameters(rows, 5)["hnsw.ef_search"] == plain["hnsw.ef_search"]
        for k in (10, 20, 50, 100, 250):
            ef = hnsw.query_parameters(rows, k)["hnsw.ef_search"]
            assert ef >= min(hnsw.EF_PER_ROW * k, hnsw.MAX_EF_SEARCH) and ef >= plain["hnsw.ef_search"]
        assert hnsw.query_parameters(rows, 10_000)["hnsw.ef_search"] == hnsw.MAX_EF_SEARCH
    assert hnsw.query_parameters(100_000, 100)["hnsw.ef_search"] == 400  # 4 x k beyond the band's 100
    assert hnsw.query_parameters(100_000, 10, filtered=True)["hnsw.ef_search"] == 400


def test_settings_override_the_bands(settings):
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "HNSW_M": 48,
        "HNSW_EF_CONSTRUCTION": 200,
        "HNSW_EF_SEARCH": 300,
        "HNSW_MAX_SCAN_TUPLES": 5000,
    }
    assert hnsw.index_parameters(10) == {"m": 48, "ef_construction": 200}
    params = hnsw.query_parameters(10, 10)
    assert params["hnsw.ef_search"] == 300 and params["hnsw.max_scan_tuples"] == 5000
    settings.FASHION_AI = {**settings.FASHION_AI, "HNSW_BUILD_MEMORY": "3GB", "HNSW_BUILD_WORKERS": 1}
    assert hnsw.build_parameters(10, 256, 16) == {"maintenance_work_mem": "3GB", "max_parallel_maintenance_workers": 1}


def test_build_memory_estimate_holds_the_graph():
    # 1M x 256-d at m=16 built in memory within 2 GB in the benchmark; the estimate must not be below the graph.
    estimate = hnsw.parse_size(hnsw.build_parameters(1_000_000, 256, 16)["maintenance_work_mem"])
    assert 1.5 * 2**30 < estimate < 3 * 2**30
    assert hnsw.parse_size(hnsw.build_parameters(1_000_000, 256, 32)["maintenance_work_mem"]) > estimate
    assert hnsw.parse_size("64MB") == 64 * 2**20 and hnsw.parse_size("2GB") == 2 * 2**30
    with pytest.raises(ValueError):
        hnsw.parse_size("lots")


@pytest.mark.parametrize(
    "overrides, error_id",
    [
        ({"HNSW_M": 1}, "oscar_fashion_ai.E001"),
        ({"HNSW_EF_SEARCH": 5000}, "oscar_fashion_ai.E001"),
        ({"HNSW_EF_SEARCH": "100"}, "oscar_fashion_ai.E001"),
        ({"HNSW_M": 32, "HNSW_EF_CONSTRUCTION": 40}, "oscar_fashion_ai.E010"),
        ({"HNSW_BUILD_MEMORY": "plenty"}, "oscar_fashion_ai.E011"),
        ({"SEARCH_DATABASE": "nowhere"}, "oscar_fashion_ai.E012"),
    ],
)
def test_bad_scale_settings_fail_the_system_check(settings, overrides, error_id):
    from oscar_fashion_ai.checks import check_scale_settings

    assert check_scale_settings() == []
    settings.FASHION_AI = {**settings.FASHION_AI, **overrides}
    assert error_id in [e.id for e in check_scale_settings()]


def test_search_database_without_the_router_is_a_warning(settings):
    from oscar_fashion_ai.checks import check_scale_settings

    settings.FASHION_AI = {**settings.FASHION_AI, "SEARCH_DATABASE": "search"}
    assert check_scale_settings() == []
    settings.DATABASE_ROUTERS = []
    assert [e.id for e in check_scale_settings()] == ["oscar_fashion_ai.W010"]


# --- database: a catalog of vectors ------------------------------------------------------------------------------


def bulk_catalog(n=3000, categories=20, seed=0):
    """``n`` public, in-stock products with unit vectors (clustered) and one of ``categories`` categories each."""
    Category = get_model("catalogue", "Category")
    info = runtime.model_info()
    rng = np.random.default_rng(seed)
    cats = [Category.add_root(name=f"Scale {c}") for c in range(categories)]
    products = Product.objects.bulk_create(
        [Product(title=f"scale {i}", slug=f"scale-{i}", structure="standalone", is_public=True) for i in range(n)]
    )
    partner = get_model("partner", "Partner").objects.create(name="Scale partner")
    get_model("partner", "StockRecord").objects.bulk_create(
        [
            get_model("partner", "StockRecord")(
                product=p, partner=partner, partner_sku=f"scale-{p.pk}", price=10, num_in_stock=3
            )
            for p in products
        ]
    )
    labels = rng.integers(0, categories, n)
    get_model("catalogue", "ProductCategory").objects.bulk_create(
        [get_model("catalogue", "ProductCategory")(product=p, category=cats[c]) for p, c in zip(products, labels)]
    )
    centres = rng.normal(size=(50, 256))
    vecs = centres[rng.integers(0, 50, n)] + rng.normal(scale=0.7, size=(n, 256))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    ProductEmbedding.objects.bulk_create(
        [
            ProductEmbedding(product=p, vector=v, status="indexed", model_version=info.version)
            for p, v in zip(products, vecs)
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    hnsw.forget_catalog_size()
    return products, cats, labels, vecs


def set_config_calls(captured):
    """The parameters of each set_config statement among captured queries, as dicts."""
    calls = []
    for q in captured:
        if "set_config" in q["sql"]:
            import re

            calls.append(dict(re.findall(r"set_config\('([\w.]+)', '([\w]+)', true\)", q["sql"])))
    return calls


@pytest.mark.django_db
def test_a_search_sets_the_parameters_of_its_catalog_size(monkeypatch):
    products, cats, labels, vecs = bulk_catalog(n=300)
    monkeypatch.setattr(hnsw, "catalog_size", lambda alias="default", max_age=300.0: 1_000_000)
    band = hnsw.band_for(1_000_000)
    with CaptureQueriesContext(connection) as captured:
        found = search.nearest(vecs[0], 10)
        filtered = search.nearest(vecs[0], 20, category=cats[0])
    assert len(found) == 10 and len(filtered) == min(20, int((labels == 0).sum()))
    calls = set_config_calls(captured)
    assert calls[0] == {
        "hnsw.ef_search": str(band.ef_search),
        "hnsw.iterative_scan": "relaxed_order",
        "hnsw.max_scan_tuples": str(band.max_scan_tuples),
    }
    assert calls[1]["hnsw.ef_search"] == str(max(band.filtered_ef_search, hnsw.EF_PER_ROW * 20))
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.django_db
def test_catalog_size_is_the_table_estimate():
    bulk_catalog(n=500)
    assert hnsw.catalog_size(max_age=0) == 500


def _hnsw_plan_only(monkeypatch):
    """Make the planner walk the HNSW index even for this small table (as it does for a large catalog)."""
    real = hnsw.set_local

    def set_local(conn, params):
        real(conn, {**params, "enable_seqscan": "off", "enable_sort": "off"})

    monkeypatch.setattr(hnsw, "set_local", set_local)


@pytest.mark.django_db
def test_filtered_queries_return_k_rows_of_the_category(settings, monkeypatch):
    products, cats, labels, vecs = bulk_catalog()
    _hnsw_plan_only(monkeypatch)
    # A small search budget: without an iterative scan a 1-in-20 filter keeps about 1 of the 20 candidates.
    settings.FASHION_AI = {**settings.FASHION_AI, "HNSW_EF_SEARCH": 10}
    info = runtime.model_info()
    with search.search_session(10, filtered=True):
        qs = search.nearest_queryset(vecs[1], info.version, category=cats[3])[:10]
        sql, params = qs.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "fashion_ai_embedding_hnsw" in plan, plan
    members = {p.pk for p, c in zip(products, labels) if c == 3}
    for q in range(5):
        found = search.nearest(vecs[q], 10, category=cats[3])
        assert len(found) == 10
        assert {p.pk for p, _ in found} <= members
    # The same query without an iterative scan comes back short: the check above can fail.
    real = hnsw.query_parameters
    monkeypatch.setattr(hnsw, "query_parameters", lambda *a, **kw: {**real(*a, **kw), "hnsw.iterative_scan": "off"})
    assert len(search.nearest(vecs[0], 10, category=cats[3])) < 10


@pytest.mark.django_db
def test_tune_index_rebuilds_with_the_band_and_the_check_warns_until_then(monkeypatch, capsys):
    from oscar_fashion_ai.checks import check_index_for_catalog_size

    bulk_catalog(n=300)
    assert hnsw.live_index_parameters() == {"m": 16, "ef_construction": 64}  # migration 0001
    assert check_index_for_catalog_size(databases=["default"]) == []
    monkeypatch.setattr(hnsw, "catalog_size", lambda alias="default", max_age=300.0: 1_000_000)
    warnings = check_index_for_catalog_size(databases=["default"])
    assert [w.id for w in warnings] == ["oscar_fashion_ai.W011"]
    assert "fashion_reindex --tune-index" in warnings[0].hint
    result = hnsw.tune_index(rows=1_000_000)
    band = hnsw.band_for(1_000_000)
    assert result["rebuilt"] and result["after"] == {"m": band.m, "ef_construction": band.ef_construction}
    assert hnsw.live_index_parameters() == result["after"]
    size_large_band = _index_bytes()
    assert check_index_for_catalog_size(databases=["default"]) == []
    assert not hnsw.tune_index(rows=1_000_000)["rebuilt"]
    # The command follows the real catalog (300 vectors): back to the first band.
    call_command("fashion_reindex", "--tune-index")
    assert "Rebuilt the HNSW index for 300 vectors" in capsys.readouterr().out
    assert hnsw.live_index_parameters() == hnsw.index_parameters(300)
    assert _index_bytes() < size_large_band  # really rebuilt each time: fewer neighbours per element now
    call_command("fashion_reindex", "--tune-index")
    assert "already has m 16, ef_construction 64" in capsys.readouterr().out


def _index_bytes():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size('fashion_ai_embedding_hnsw')")
        return cursor.fetchone()[0]


# --- the search database ----------------------------------------------------------------------------------------


def _ann_queries(captured):
    return [q["sql"] for q in captured if "<=>" in q["sql"]]


@pytest.mark.django_db(transaction=True, databases=["default", "search"])
def test_search_reads_go_to_the_search_database(client, settings):
    """tests/settings.py adds "search", a test mirror of "default" with its own connection (as a streaming
    replica would be): with SEARCH_DATABASE set, every nearest-neighbour query goes there and none to default."""
    products, cats, labels, vecs = bulk_catalog(n=200)
    product = products[0]
    url = reverse("fashion-ai:api-similar", args=[product.pk])

    def run():
        with (
            CaptureQueriesContext(connections["default"]) as primary,
            CaptureQueriesContext(connections["search"]) as replica,
        ):
            response = client.get(url, {"k": 5})
            direct = search.nearest(vecs[3], 4, category=cats[1])
        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) == 5 and len(direct) == 4
        return primary, replica

    # Similar products: the query expansion's neighbours, then the search (SIMILAR_QUERY_EXPANSION); plus `direct`.
    primary, replica = run()  # SEARCH_DATABASE unset: all on default
    assert len(_ann_queries(primary)) == 3 and not _ann_queries(replica)

    settings.FASHION_AI = {**settings.FASHION_AI, "SEARCH_DATABASE": "search"}
    primary, replica = run()
    assert not _ann_queries(primary), _ann_queries(primary)
    assert len(_ann_queries(replica)) == 3
    assert len(set_config_calls(replica)) == 3 and not set_config_calls(primary)
    # The reads around the search follow it (the query product's vector, the category tree of the filter).
    assert any("oscar_fashion_ai_productembedding" in q["sql"] and "<=>" not in q["sql"] for q in replica)
    # SET LOCAL: the pooled connection keeps its own defaults after the search transaction.
    with connections["search"].cursor() as cursor:
        cursor.execute("SHOW hnsw.ef_search")
        assert cursor.fetchone()[0] == "100"


@pytest.mark.django_db
def test_the_check_warns_when_the_index_does_not_fit_in_shared_buffers(monkeypatch):
    from oscar_fashion_ai.checks import check_index_for_catalog_size

    bulk_catalog(n=100)
    assert "oscar_fashion_ai.W013" not in [w.id for w in check_index_for_catalog_size(databases=["default"])]
    monkeypatch.setattr(hnsw, "parse_size", lambda text: 8192)  # as if shared_buffers were one page
    warnings = check_index_for_catalog_size(databases=["default"])
    assert [w.id for w in warnings] == ["oscar_fashion_ai.W013"] and "shared_buffers" in warnings[0].hint
