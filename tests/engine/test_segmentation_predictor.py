"""The predictor: prompts mapped exactly as the processor maps them, masks mapped back exactly to
the caller's pixels (on injected known logits, not on random weights), and the embedding cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.segmentation import SegmenterError, SegmenterOutOfMemory, load_segmenter
from tests.engine.tiny_sam import save_sam_dir

SIZES = [(100, 200), (333, 512), (300, 97), (64, 64), (1100, 700)]


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    return load_segmenter(save_sam_dir(tmp_path_factory.mktemp("sam")), device="cpu")


def image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def reshaped(height: int, width: int) -> tuple[int, int]:
    """SAM's longest-edge resize to 1024, written out here rather than taken from the processor."""
    scale = 1024 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def expected_axis(length: int, resized: int, low: int, high: int) -> np.ndarray:
    """Original pixels whose centres fall inside low-res cells [low, high) (4 model pixels each)."""
    centres = (np.arange(length) + 0.5) * resized / length  # in padded-model-input pixels
    assert np.all(np.abs(centres - 4 * low) > 1e-4) and np.all(np.abs(centres - 4 * high) > 1e-4), "tie"
    return (centres > 4 * low) & (centres < 4 * high)


def lerp_resize(values: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling with pixel centres aligned (align_corners=False), written with numpy."""
    source = np.clip((np.arange(length) + 0.5) * len(values) / length - 0.5, 0, len(values) - 1)
    return np.interp(source, np.arange(len(values)), values)


def coverage(length: int, resized: int, low: int, high: int) -> np.ndarray:
    """How much of low-res cells [low, high) each original pixel sees after grid -> 1024 -> crop -> original."""
    cells = np.zeros(256)
    cells[low:high] = 1.0
    return lerp_resize(lerp_resize(cells, 1024)[:resized], length)


def inject(segmenter, monkeypatch, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    """Replace the decoder's output by logits +10 on a known rectangle of the 256×256 grid, -10 elsewhere."""
    logits = torch.full((1, 1, 256, 256), -10.0)
    logits[..., rows[0] : rows[1], cols[0] : cols[1]] = 10.0
    monkeypatch.setattr(segmenter, "decode", lambda entry, prompt, multimask=False: (logits, 0.5))


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_a_known_low_res_rectangle_lands_on_the_expected_image_pixels(segmenter, monkeypatch, height, width):
    h, w = reshaped(height, width)
    rows = (max(2, h // 4 // 5), h // 4 * 3 // 5 + 3)  # inside the unpadded part of the grid
    cols = (max(2, w // 4 // 3), w // 4 * 2 // 3 + 1)
    inject(segmenter, monkeypatch, rows, cols)
    mask = segmenter.segment(image(height, width), box=(0, 0, width, height)).mask
    assert mask.dtype == bool and mask.shape == (height, width)
    # Along the middle row and column the edge is where the geometry puts it: a pixel is in when
    # its centre is inside the rectangle's 4-model-pixel cells.
    middle_row, middle_col = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert np.array_equal(mask[:, middle_col[len(middle_col) // 2]], expected_axis(height, h, *rows))
    assert np.array_equal(mask[middle_row[len(middle_row) // 2], :], expected_axis(width, w, *cols))
    # Everywhere, corners included: bilinear resampling is separable, so the logit field is
    # 20·U(y)·V(x) - 10 and a pixel is in where U·V > 1/2.
    product = np.outer(coverage(height, h, *rows), coverage(width, w, *cols))
    assert np.all(np.abs(product - 0.5) > 1e-6), "tie"
    assert np.array_equal(mask, product > 0.5)


def test_the_mapping_written_out_for_a_333_by_512_image(segmenter, monkeypatch):
    """512 -> 1024 and 333 -> 666: every model pixel is half an image pixel, so low-res cell k
    (4 model pixels) covers image pixels 2k, 2k+1."""
    inject(segmenter, monkeypatch, rows=(10, 40), cols=(20, 100))
    mask = segmenter.segment(image(333, 512), box=(1, 1, 5, 5)).mask
    expected = np.zeros((333, 512), bool)
    expected[20:80, 40:200] = True
    assert np.array_equal(mask, expected)


def test_padding_never_leaks_into_the_image(segmenter, monkeypatch):
    """Logits set only in the padded part of the grid (below a wide image) give an empty mask."""
    logits = torch.full((1, 1, 256, 256), -10.0)
    logits[..., 130:, :] = 10.0  # a 100×200 image fills rows 0..127 of the grid
    monkeypatch.setattr(segmenter, "decode", lambda entry, prompt, multimask=False: (logits, 0.5))
    assert not segmenter.segment(image(100, 200), box=(0, 0, 200, 100)).mask.any()


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_box_and_points_are_mapped_as_the_processor_maps_them(segmenter, height, width):
    box = (width * 0.1, height * 0.2, width * 0.7, height * 0.9)
    points = [(width * 0.5, height * 0.5, 1), (width * 0.2, height * 0.8, 0)]
    ours = segmenter.prompt_tensors((height, width), box, points)
    theirs = segmenter.processor(
        image(height, width),
        input_boxes=[[list(box)]],
        input_points=[[[p[0], p[1]] for p in points]],
        input_labels=[[p[2] for p in points]],
        return_tensors="pt",
    )
    assert torch.allclose(ours["input_boxes"].double(), theirs["input_boxes"].double().reshape(1, 1, 4), atol=1e-4)
    assert torch.allclose(ours["input_points"].double(), theirs["input_points"].double().reshape(1, 1, 2, 2), atol=1e-4)
    assert ours["input_labels"].flatten().tolist() == theirs["input_labels"].flatten().tolist()
    h, w = reshaped(height, width)  # and by hand: x scales by w / width, y by h / height
    by_hand = torch.tensor([box[0] * w / width, box[1] * h / height, box[2] * w / width, box[3] * h / height])
    assert torch.allclose(ours["input_boxes"].flatten().double(), by_hand.double(), atol=1e-3)


def test_the_tiny_model_end_to_end_returns_a_bool_mask_of_the_image(segmenter):
    pixels = image(120, 90)
    result = segmenter.segment(pixels, box=(10, 20, 60, 100), points=[(30, 50, 1)])
    assert result.mask.dtype == bool and result.mask.shape == (120, 90)
    assert isinstance(result.score, float)
    best = segmenter.segment(pixels, box=(10, 20, 60, 100), multimask=True)
    assert best.mask.shape == (120, 90)


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize(
    ("box", "points"),
    [((10, 20, 60, 100), ()), (None, ((30, 50, 1), (5, 5, 0))), ((10, 20, 60, 100), ((30, 50, 1),))],
)
def test_the_decoder_with_its_positional_embedding_kept_matches_the_models_forward(segmenter, box, points, multimask):
    """SAM's decode skips recomputing the image-wide positional embedding: same logits and scores
    as ``SamModel.forward`` on the same embedding and prompt, on every kind of prompt."""
    entry = segmenter.embed(image(120, 90), "decode-check")
    prompt = segmenter.prompt_tensors(entry.original_size, box, points)
    with torch.inference_mode():
        reference = segmenter.model(image_embeddings=entry.features, multimask_output=multimask, **prompt)
    for _ in range(2):  # the second call uses the kept embedding
        logits, score = segmenter.decode(entry, prompt, multimask=multimask)
        best = int(torch.argmax(reference.iou_scores[0, 0])) if multimask else 0
        torch.testing.assert_close(logits, reference.pred_masks[0, 0, best][None, None].float())
        assert score == pytest.approx(float(reference.iou_scores[0, 0, best]), rel=1e-5)
    assert "positional" in segmenter._memo


def test_the_embedding_is_computed_once_per_key(segmenter, monkeypatch):
    segmenter.forget()
    calls = []
    original = segmenter.model.get_image_embeddings
    monkeypatch.setattr(segmenter.model, "get_image_embeddings", lambda pv: calls.append(1) or original(pv))
    pixels = image(80, 100)
    segmenter.embed(pixels, "s/0/W400L40/axial")
    first = segmenter.segment("s/0/W400L40/axial", box=(5, 5, 50, 50))
    again = segmenter.segment(pixels, box=(5, 5, 50, 50), key="s/0/W400L40/axial")
    assert len(calls) == 1
    assert np.array_equal(first.mask, again.mask)
    bare = segmenter.segment(pixels, box=(5, 5, 50, 50))  # no key: computed, not cached
    assert len(calls) == 2 and np.array_equal(bare.mask, first.mask)


def test_the_cache_keeps_the_most_recent_few(segmenter):
    segmenter.forget()
    for k in range(segmenter.cache_size + 2):
        segmenter.embed(image(32, 32, k), f"k{k}")
    assert not segmenter.cached("k0") and not segmenter.cached("k1")
    assert all(segmenter.cached(f"k{k}") for k in range(2, segmenter.cache_size + 2))
    with pytest.raises(SegmenterError, match="embed the slice first"):
        segmenter.segment("k0", box=(1, 1, 5, 5))


@pytest.mark.parametrize(
    ("box", "words"),
    [
        ((300, 10, 400, 50), "outside the 200×100 image"),
        ((-50, -40, -1, -2), "outside"),
        ((50, 20, 50, 80), "empty"),
        ((60, 20, 40, 80), "empty"),
        ((1, 2, float("nan"), 4), "finite"),
        ((1, 2, 3), "four numbers"),
    ],
)
def test_bad_boxes_are_one_sentence(segmenter, box, words):
    with pytest.raises(SegmenterError) as err:
        segmenter.segment(image(100, 200), box=box)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_box_overhanging_the_edge_is_clipped(segmenter):
    assert segmenter.segment(image(100, 200), box=(-5, -5, 250, 120)).mask.shape == (100, 200)


def test_bad_points_and_no_prompt(segmenter):
    with pytest.raises(SegmenterError, match="outside"):
        segmenter.segment(image(100, 200), points=[(200, 10, 1)])
    with pytest.raises(SegmenterError, match="label"):
        segmenter.segment(image(100, 200), points=[(20, 10, 2)])
    with pytest.raises(SegmenterError, match="a box or at least one point"):
        segmenter.segment(image(100, 200))
    with pytest.raises(SegmenterError, match="uint8"):
        segmenter.segment(image(10, 20).astype(np.float32), box=(1, 1, 5, 5))


def test_out_of_memory_while_embedding_is_a_clear_error(segmenter, monkeypatch):
    def boom(pixel_values):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(segmenter.model, "get_image_embeddings", boom)
    with pytest.raises(SegmenterOutOfMemory, match="Ran out of memory on cpu while computing the image embedding"):
        segmenter.segment(image(50, 50), box=(1, 1, 20, 20))
