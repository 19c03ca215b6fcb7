"""The trained garment locator (oscar_fashion_ai.ml.locator): geometry, decoding, loading, and its use by the
preset crop (GarmentLocator)."""

import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from oscar_fashion_ai.ml import crop, locator, weights
from oscar_fashion_ai.ml.training import locator as training


@given(
    width=st.integers(16, 2000),
    height=st.integers(16, 2000),
    fx=st.floats(0, 0.9),
    fy=st.floats(0, 0.9),
    fw=st.floats(0.05, 1),
    fh=st.floats(0.05, 1),
)
def test_square_coordinates_round_trip(width, height, fx, fy, fw, fh):
    x, y = fx * width, fy * height
    w, h = max(1.0, min(fw * width, width - x)), max(1.0, min(fh * height, height - y))
    x, y = min(x, width - w), min(y, height - h)
    back = locator.from_square(locator.to_square((x, y, w, h), width, height), width, height)
    assert np.allclose(back, (x, y, w, h), atol=1e-3 * max(width, height))


def test_coord_channels_mark_the_photo_and_its_padding():
    c = locator.coord_channels(7, 7, 400, 200)  # a wide photo: rows above and below are padding
    assert c.shape == (3, 7, 7)
    assert c[2, 0].sum() == 0 and c[2, 6].sum() == 0 and c[2, 3].sum() == 7
    assert c[0, 3, 0] < -0.8 and c[0, 3, 6] > 0.8  # x runs left to right over the photo
    assert c[1, 3, 3] == pytest.approx(0.0, abs=1e-6)


def _output_for(xyxy, rows=7, cols=7, on=None):
    """A head output whose cells inside ``xyxy`` (square units) are confident and predict exactly that box."""
    cx, cy = locator.cell_centres(rows, cols)
    out = np.full((5, rows, cols), -6.0, dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            inside = xyxy[0] <= cx[c] <= xyxy[2] and xyxy[1] <= cy[r] <= xyxy[3]
            if on is None and inside or on is not None and on[r, c]:
                out[0, r, c] = 4.0
            d = [cx[c] - xyxy[0], cy[r] - xyxy[1], xyxy[2] - cx[c], xyxy[3] - cy[r]]
            out[1:, r, c] = np.log(np.maximum(d, 1e-3))
    return out


def test_decode_averages_the_confident_cells_boxes_off_the_grid():
    truth = np.array([0.23, 0.11, 0.71, 0.93], dtype=np.float32)  # not on cell edges
    box, best = locator.decode(_output_for(truth), np.ones((7, 7)))
    assert best > 0.95 and np.allclose(box, truth, atol=1e-4)


def test_decode_ignores_cells_on_the_padding():
    truth = np.array([0.3, 0.3, 0.6, 0.6], dtype=np.float32)
    out = _output_for(truth)
    out[0, 0, 0], out[1:, 0, 0] = 9.0, np.log([0.01, 0.01, 0.9, 0.9])  # a confident cell on the padding
    inside = np.ones((7, 7))
    inside[0] = 0
    box, _ = locator.decode(out, inside)
    assert np.allclose(box, truth, atol=1e-4)


def _head_file(tmp_path, pairs_with="abc", role="locator"):
    head = locator.BoxHead(channels=16, hidden=8)
    path = tmp_path / "head.safetensors"
    weights.save(head, path, {"role": role, "pairs_with": pairs_with, "channels": 16, "hidden": 8})
    return path


def test_load_checks_role_and_photo_model(tmp_path):
    path = _head_file(tmp_path)
    assert locator.load(path, photo_sha256="abc").pairs_with == "abc"
    assert locator.load(path, photo_sha256="other") is None  # trained for another photo model
    assert locator.load(_head_file(tmp_path, role="sketch")) is None
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a weights file")
    assert locator.load(broken) is None
    assert locator.load(tmp_path / "missing.safetensors") is None


class _FakeEmbedder:
    """Feature maps and vectors of the right shapes; counts the crops it embeds."""

    sha256 = "abc"
    gem_p = 3.0

    def __init__(self):
        self.embedded = []

    def feature_maps(self, batch):
        return np.random.default_rng(0).random((len(batch), 16, 7, 7)).astype(np.float32)

    def pool_features(self, feats, weights=None):
        return np.ones((len(feats), 4), dtype=np.float32) / 2

    def embed_images(self, images, batch_size=32):
        self.embedded.extend(img.size for img in images)
        return np.ones((len(images), 4), dtype=np.float32) / 2


class _FixedHead:
    def __init__(self, box):
        self._box = box

    def box(self, feats, width, height, margin=0.0):
        return self._box


def test_garment_locator_crops_the_heads_box_and_embeds_it():
    e = _FakeEmbedder()
    img = Image.new("RGB", (400, 300))
    loc = crop.GarmentLocator(e, head=_FixedHead((100.4, 50.0, 120.0, 200.0)))
    located = loc.locate(img)
    assert located.box == crop.Box(100, 50, 120, 200) and e.embedded == [(120, 200)]
    assert loc.decode_size == max(crop.PRESET_SIZE, crop.PRESET_DECODE)
    # a box covering most of the photo searches the whole photo when snapping is on
    big = crop.GarmentLocator(e, head=_FixedHead((5.0, 5.0, 390.0, 290.0)), head_snap=0.8).locate(img)
    assert big.box == crop.Box(0, 0, 400, 300) and e.embedded[-1] == (400, 300)
    # no garment found: the whole photo
    assert crop.GarmentLocator(e, head=_FixedHead(None)).locate(img).box == crop.Box(0, 0, 400, 300)


def test_without_a_paired_head_the_activation_map_preset_is_used():
    e = _FakeEmbedder()
    e.sha256 = "no head was trained for this model"
    loc = crop.GarmentLocator(e)
    assert loc.head is None and loc.decode_size == crop.PRESET_SIZE
    assert crop.GarmentLocator(e, head=False).head is None
    located = loc.locate(Image.new("RGB", (300, 200)))
    assert e.embedded == []  # pooled from the feature map, no second pass
    assert 0 <= located.box.x and located.box.x + located.box.w <= 300


def test_training_targets_and_loss_are_sane():
    truths = np.array([[0.2, 0.1, 0.6, 0.9], [0.45, 0.45, 0.46, 0.46]], dtype=np.float32)
    pos = training.targets(truths, 7, 7)
    assert pos[0].sum() > 6 and pos[1].sum() == 1  # a tiny box still has its centre cell
    head = locator.BoxHead(channels=16, hidden=8)
    feats = torch.randn(2, 16, 7, 7)
    coords = torch.from_numpy(np.stack([locator.coord_channels(7, 7, 300, 400)] * 2))
    loss = training._loss(head(feats, coords), coords, torch.from_numpy(pos), torch.from_numpy(truths))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert head.reduce.weight.grad is not None


def test_scenes_put_the_garment_where_the_box_says(tmp_path):
    """A red 'garment' photo among blue ones: the scene's box holds the red pixels."""
    from oscar_fashion_ai.ml.datasets import Record

    def photo(name, colour):
        path = tmp_path / f"{name}.jpg"
        Image.new("RGB", (120, 160), colour).save(path)
        return Record(name, name, path)

    garment = photo("g", (230, 10, 10))
    others = [photo(f"o{i}", (10, 10, 230)) for i in range(3)]
    for seed in range(12):
        data, (x, y, w, h) = training.scene(garment, others, others, random.Random(seed))
        img = np.asarray(Image.open(__import__("io").BytesIO(data)).convert("RGB")).astype(int)
        inner = img[y + 4 : y + h - 4, x + 4 : x + w - 4]
        assert inner.size and (inner[..., 0] > 150).mean() > 0.9
