import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oscar_fashion_ai.ml import metrics


def test_precision_and_map_by_hand():
    rel = np.array([[1, 0, 1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=bool)
    assert metrics.precision_at_k(rel, 5) == (2 / 5 + 0) / 2
    # query 1: hits at ranks 1 and 3 -> (1/1 + 2/3) / 2
    assert np.isclose(metrics.average_precision_at_k(rel, 10), ((1 + 2 / 3) / 2 + 0) / 2)


def test_neighbours_excludes_the_query_itself():
    vecs = np.eye(4, dtype=np.float32)
    vecs[1] = vecs[0] * 0.9 + vecs[1] * 0.1
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx = metrics.neighbours(vecs[:1], vecs, 2, exclude=np.array([0]))
    assert idx[0, 0] == 1 and 0 not in idx[0]


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 40), st.integers(1, 5), st.integers(0, 10_000))
def test_category_retrieval_is_bounded_and_perfect_for_separated_classes(n, classes, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = np.eye(8, dtype=np.float32)[:classes] * 10
    vecs = centres[labels] + rng.normal(0, 0.01, (n, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    q = np.arange(n)
    out = metrics.category_retrieval(vecs, labels, vecs, labels, query_gallery_index=q, k=min(10, n - 1))
    assert 0 <= out["p_at_5"] <= 1 and 0 <= out["map_at_10"] <= 1
    counts = np.bincount(labels, minlength=classes)
    if counts[labels].min() >= 7 and n > 10:  # every query has >= 6 same-class neighbours
        assert out["p_at_5"] == 1.0


def test_standard_error_of_a_mean_over_queries():
    from oscar_fashion_ai.ml.metrics import category_retrieval, standard_error

    assert abs(standard_error([1, 0, 1, 0]) - (0.5773502691896258 / 2)) < 1e-12
    assert standard_error([0.7]) == 0.0 and standard_error([0.3, 0.3, 0.3]) == 0.0
    vecs = np.eye(4, dtype=np.float32)
    out = category_retrieval(vecs, ["a", "a", "b", "b"], vecs, ["a", "a", "b", "b"], query_gallery_index=np.arange(4))
    assert out["p_at_5_se"] == 0.0  # every query scores the same
