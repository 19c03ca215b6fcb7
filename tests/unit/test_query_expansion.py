"""Alpha query expansion over a gallery (oscar_fashion_ai.ml.query_expansion): the function "Similar products" and
fashion_evaluate share."""

import numpy as np
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from oscar_fashion_ai.ml import metrics, query_expansion


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


@hsettings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 12), alpha=st.sampled_from([1.0, 3.0]))
def test_expansion_in_a_gallery_matches_the_neighbours_it_should_use(seed, n, alpha):
    rng = np.random.default_rng(seed)
    gallery = _unit(rng.normal(size=(10, 6)).astype(np.float32))
    queries = gallery[:4]
    own = np.arange(4)
    out = query_expansion.expand_in_gallery(queries, gallery, n, alpha=alpha, exclude=own)
    assert out.shape == queries.shape and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-4)
    if n == 0:
        assert np.array_equal(out, queries)
        return
    # The query itself is never among its own neighbours; at most the 9 others are used.
    idx = metrics.neighbours(queries, gallery, n, exclude=own)
    assert not (idx == own[:, None]).any() and idx.shape[1] == min(n, 9)
    assert np.allclose(out, query_expansion.expand_query(queries, gallery[idx], alpha=alpha), atol=1e-6)


def test_expansion_pulls_a_query_into_its_neighbourhood():
    """A query between two groups moves towards the group its nearest neighbours are in."""
    a = _unit(np.array([[1, 0.1, 0], [1, -0.1, 0], [1, 0, 0.1]], np.float32))
    b = _unit(np.array([[0, 1, 0.1], [0, 1, -0.1]], np.float32))
    gallery = np.concatenate([a, b])
    query = _unit(np.array([[1, 0.9, 0]], np.float32))
    out = query_expansion.expand_in_gallery(query, gallery, 3)
    assert float(out[0] @ a.mean(0)) > float(query[0] @ a.mean(0))
    assert np.array_equal(query_expansion.expand_in_gallery(query, gallery[:0], 3), query)
