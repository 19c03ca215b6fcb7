"""Training pairs for the sketch models: cached, and rebuilt when their inputs change."""


def test_training_pairs_are_cached_and_rebuilt_when_inputs_change(csv_dataset, tmp_path):
    from oscar_fashion_ai.ml import datasets, pairs

    records = datasets.labelled_records(csv_dataset)
    cache = tmp_path / "pairs"
    first = pairs.load(records, 32, 2, 0, 1, aligned=True, progress=False, cache_dir=cache)
    files = list(cache.glob("pairs-*.npz"))
    assert len(files) == 1 and len(first[3]) == 12  # the corrupt image is not in the cache either
    stamp = files[0].stat().st_mtime_ns
    again = pairs.load(records, 32, 2, 0, 1, aligned=True, progress=False, cache_dir=cache)
    assert files[0].stat().st_mtime_ns == stamp  # reused, not regenerated
    assert all((a == b).all() for a, b in zip(first[:3], again[:3])) and first[3] == again[3]
    pairs.load(records, 32, 2, 0, 1, aligned=True, progress=False, cache_dir=cache, rebuild=True)
    assert files[0].stat().st_mtime_ns != stamp
    records[0].path.write_bytes(records[1].path.read_bytes())  # a changed image gets new pairs
    pairs.load(records, 32, 2, 0, 1, aligned=True, progress=False, cache_dir=cache)
    assert len(list(cache.glob("pairs-*.npz"))) == 2
