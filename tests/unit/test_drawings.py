"""Synthetic drawings that look like people's: silhouettes, outlines, abstracted drawings, doodles and the
from-memory distortions (ml/sketches.py), and the evaluation that uses them (ml/evaluate.py)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from oscar_fashion_ai.ml import evaluate, pairs, sketches
from oscar_fashion_ai.ml.sketch_input import INK_LEVEL


def tshirt(size=(240, 200), background=(235, 235, 230), colour=(30, 60, 150)):
    img = Image.new("RGB", size, background)
    d = ImageDraw.Draw(img)
    w, h = size
    d.polygon(
        [
            (w * 0.3, h * 0.15),
            (w * 0.7, h * 0.15),
            (w * 0.9, h * 0.35),
            (w * 0.78, h * 0.45),
            (w * 0.7, h * 0.38),
            (w * 0.7, h * 0.9),
            (w * 0.3, h * 0.9),
            (w * 0.3, h * 0.38),
            (w * 0.22, h * 0.45),
            (w * 0.1, h * 0.35),
        ],
        fill=colour,
    )
    d.line([(w * 0.5, h * 0.2), (w * 0.5, h * 0.8)], fill=(200, 200, 40), width=3)  # a stripe inside: a hole-free mask
    return img


def ink(img):
    return np.asarray(img.convert("L")) < INK_LEVEL


def test_silhouette_finds_the_garment_and_fills_it():
    img = tshirt()
    mask = sketches.silhouette(img)
    assert mask is not None and mask.shape == (img.size[1], img.size[0])
    truth = np.asarray(img)[..., 2] > 100  # the blue garment (and its yellow stripe is inside it)
    truth |= np.asarray(img)[..., 0] > 150
    truth &= ~(np.abs(np.asarray(img, dtype=int) - (235, 235, 230)).sum(axis=2) < 30)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.85
    assert mask[int(img.size[1] * 0.5), int(img.size[0] * 0.5)]  # the stripe did not cut a hole


@pytest.mark.parametrize(
    "img",
    [
        Image.new("RGB", (200, 200), (240, 240, 240)),
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)),
    ],
    ids=["blank", "noise"],
)
def test_no_silhouette_in_a_blank_or_busy_image(img):
    assert sketches.silhouette(img) is None


@pytest.mark.parametrize("style", sketches.HUMAN_LIKE)
def test_human_like_styles_draw_the_shape(style):
    img = tshirt()
    plain = sketches.photo_drawing(img, 128, style=style)
    assert plain.size == (128, 128) and plain.mode == "RGB"
    assert 0.01 < ink(plain).mean() < 0.4
    assert np.array_equal(np.asarray(plain), np.asarray(sketches.photo_drawing(img, 128, style=style)))
    a = sketches.photo_drawing(img, 128, rng=np.random.default_rng(3), style=style)
    b = sketches.photo_drawing(img, 128, rng=np.random.default_rng(3), style=style)
    c = sketches.photo_drawing(img, 128, rng=np.random.default_rng(4), style=style)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))
    assert ink(a).mean() > 0.005


def test_outline_is_the_contour_and_abstract_adds_interior_lines():
    img = tshirt()
    outline = ink(sketches.photo_drawing(img, 128, style="outline"))
    abstract = ink(sketches.photo_drawing(img, 128, style="abstract"))
    xdog = ink(sketches.photo_drawing(img, 128, style="xdog"))
    centre = (slice(40, 90), slice(58, 70))  # around the stripe, inside the garment
    assert not outline[centre].any()
    assert abstract.sum() >= outline.sum() and xdog[centre].any()


def test_a_photo_without_silhouette_falls_back_to_an_edge_drawing():
    busy = Image.fromarray(np.random.default_rng(1).integers(0, 255, (160, 160, 3), dtype=np.uint8))
    for style in sketches.HUMAN_LIKE:
        out = sketches.photo_drawing(busy, 96, rng=np.random.default_rng(0), style=style)
        assert out.size == (96, 96)


def test_memory_distortions_change_proportions_and_keep_ink():
    drawing = sketches.photo_drawing(tshirt(), 128, style="outline")
    ratios = []
    for seed in range(8):
        out = sketches.memory_distortions(drawing, np.random.default_rng(seed))
        ys, xs = np.nonzero(ink(out))
        assert len(ys) > 60
        ratios.append((xs.max() - xs.min()) / (ys.max() - ys.min()))
    assert max(ratios) - min(ratios) > 0.1


def test_bad_styles_and_unaligned_pairs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown drawing style"):
        sketches.photo_drawing(tshirt(), 64, style="crayon")
    with pytest.raises(ValueError, match="aligned photo crop"):
        sketches.photo_drawing(tshirt(), 64, rng=np.random.default_rng(0), style="doodle", with_photo=True)
    with pytest.raises(ValueError, match="aligned pairs"):
        pairs.load([], 64, aligned=True, styles=("xdog", "outline"), workers=1, progress=False)
    with pytest.raises(ValueError, match="unknown drawing style"):
        pairs.load([], 64, styles=("crayon",), workers=1, progress=False)


def test_evaluation_drawings_are_seeded_per_query():
    img = tshirt()
    one = evaluate.synthetic_sketch(img, 96, "doodle", seed=1)
    assert np.array_equal(np.asarray(one), np.asarray(evaluate.synthetic_sketch(img, 96, "doodle", seed=1)))
    assert not np.array_equal(np.asarray(one), np.asarray(evaluate.synthetic_sketch(img, 96, "doodle", seed=2)))
    xdog = evaluate.synthetic_sketch(img, 96, "xdog", seed=5)
    assert np.array_equal(np.asarray(xdog), np.asarray(evaluate.synthetic_sketch(img, 96, "xdog", seed=9)))


def test_precision_with_the_source_left_out_of_the_gallery():
    # each query's source is the only gallery item of its category: with it, P@1 is perfect; without it, zero
    gallery = np.eye(4, dtype=np.float32)
    labels = np.array(["a", "b", "c", "d"])
    out = evaluate.sketch_retrieval(gallery.copy(), labels, gallery, labels, source_index=[0, 1, 2, 3], k=3)
    assert out["source_hit_at_1"] == 1.0 and out["p_at_1"] == 1.0
    assert out["p_at_5_source_excluded"] == 0.0
    same = np.array(["a", "a", "a", "a"])
    out = evaluate.sketch_retrieval(gallery.copy(), same, gallery, same, source_index=[0, 1, 2, 3], k=3)
    assert out["p_at_5_source_excluded"] == 1.0
