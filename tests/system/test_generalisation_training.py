"""The generalisation protocols trained for real on tiny data (CPU): head training and distillation, the robust
recipe."""

import numpy as np
import pytest
import torch

from oscar_fashion_ai.ml import backbones, generalisation, weights

pytestmark = pytest.mark.usefixtures("fashion_models")


def _two_sources(csv_dataset, tmp_path):
    import shutil

    second = tmp_path / "second-shop"
    shutil.copytree(csv_dataset, second)
    return [str(csv_dataset), str(second)]


@pytest.mark.training
def test_head_training_learns_labels_and_distillation_keeps_teacher_geometry():
    rng = np.random.default_rng(1)
    n, c = 240, 64
    labels = [f"k{i % 4}" for i in range(n)]
    pooled = rng.normal(size=(n, c)).astype(np.float32)
    pooled[:, :4] += 5.0 * np.eye(4, dtype=np.float32)[[i % 4 for i in range(n)]]
    teacher = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    cfg = generalisation.HeadConfig(dim=16, epochs=15, batch_size=32, init="random", distill_weight=0.0)
    proj, history = generalisation.train_head(pooled, labels, None, cfg)
    vecs = generalisation.project(proj, pooled)
    ids = [f"x{i}" for i in range(n)]
    assert generalisation.retrieval(vecs, labels, ids, "test")["p_at_5"] > 0.9
    assert len(history) == 15 and history[-1]["cls"] < history[0]["cls"]
    distilled, _ = generalisation.train_head(
        pooled,
        labels,
        teacher,
        generalisation.HeadConfig(dim=16, epochs=15, batch_size=32, init="random", distill_weight=5.0),
    )
    d = generalisation.project(distilled, pooled)
    gap_plain = np.abs(vecs @ vecs.T - teacher @ teacher.T).mean()
    gap_distilled = np.abs(d @ d.T - teacher @ teacher.T).mean()
    assert gap_distilled < gap_plain


@pytest.mark.training
def test_robust_recipe_writes_a_model_the_store_runs_and_chooses_alpha_on_validation(csv_dataset, tmp_path):
    """LP-FT + distillation + WiSE on two sources: the file loads in the store's Embedder and gives the vectors the
    trainer measured; the card records every alpha's validation figures beside the ImageNet baseline."""
    import json

    from oscar_fashion_ai.ml import train_robust
    from oscar_fashion_ai.ml.embedder import Embedder

    out = tmp_path / "robust.safetensors"
    cfg = train_robust.RobustConfig(
        sources=_two_sources(csv_dataset, tmp_path),
        out=str(out),
        image_size=64,
        lp_epochs=2,
        ft_epochs=1,
        batch_size=4,
        wise_alphas=(0.0, 1.0),
        progress=False,
        cache=str(tmp_path / "cache"),
    )
    card = train_robust.train(cfg)
    assert json.loads(json.dumps(card)) == json.loads(out.with_suffix(".card.json").read_text())
    sel = card["selection"]
    assert set(sel["validation_p_at_5"]) == {"0", "1"} and str(int(sel["chosen_alpha"])) in sel["validation_p_at_5"]
    assert set(sel["imagenet_gap_baseline"]) == {"clothing", "second-shop"}
    assert card["split"]["test_split_used"] is False
    assert [s["images"] for s in card["data"]["sources"]] == [12, 12]  # corrupt, missing and ignored rows skipped
    assert all(lab.split(":")[0] in {"clothing", "second-shop"} for lab in card["data"]["labels"])
    emb = Embedder(out, runtime="torch")
    assert weights.read_metadata(out)["activation"] == "relu6" and emb.info.image_size == 64
    # the store's vectors of the training images are the trainer's (same preprocessing, same network)
    from oscar_fashion_ai.ml import datasets

    records = datasets.labelled_records(csv_dataset)
    images, records = generalisation.decode(records, 64)  # the corrupt file is skipped
    model = backbones.build_from_meta(weights.read_metadata(out))
    state, _ = weights.load(out)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        direct = model(torch.from_numpy(generalisation.normalise(images))).numpy()
    served = emb.embed_images([emb.load_image(r.path) for r in records])
    assert (np.sum(served * direct, axis=1) > 0.99).all()
    # a second run reuses the cached features and gives the same network (the file's bytes may differ: safetensors
    # writes its metadata in hash-map order)
    first = weights.load(out)[0]
    train_robust.train(cfg)
    second = weights.load(out)[0]
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.training
def test_robust_recipe_leaves_out_excluded_labels(csv_dataset, tmp_path):
    from oscar_fashion_ai.ml import train_robust

    cfg = train_robust.RobustConfig(
        sources=[str(csv_dataset)],
        out=str(tmp_path / "m.safetensors"),
        image_size=64,
        lp_epochs=1,
        ft_epochs=1,
        batch_size=4,
        wise_alphas=(0.0,),
        progress=False,
        exclude_labels=("Pants",),
    )
    card = train_robust.train(cfg)
    assert not any(lab.endswith(":Pants") for lab in card["data"]["labels"])
    assert card["data"]["sources"][0]["images"] == 8
    with pytest.raises(ValueError):
        train_robust.train(train_robust.RobustConfig(sources=[], out=str(tmp_path / "x.safetensors")))
