"""SAM 2 through the production loader: one slice with Sam2Model (embedding cache, exact mapping
back to the image on injected logits), propagation with Sam2VideoModel's memory, wrong folders."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from engine.segmentation import Propagation, SegmenterError, VideoSegmenter, load_segmenter, propagate
from tests.engine.test_segmentation_predictor import image, lerp_resize
from tests.engine.tiny_sam import save_sam2_dir, save_sam2_video_dir

SIZES = [(100, 200), (333, 512), (300, 97), (64, 64)]


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory):
    return save_sam2_dir(tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="module")
def segmenter(sam2_dir):
    return load_segmenter(sam2_dir, device="cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return load_segmenter(save_sam2_video_dir(tmp_path_factory.mktemp("sam2video")), device="cpu")


def test_sam2_loads_and_segments_one_slice(segmenter):
    assert segmenter.info.family == "Sam2Model" and segmenter.info.device == "cpu"
    result = segmenter.segment(image(120, 90), box=(10, 20, 60, 100), points=[(30, 50, 1), (50, 90, 0)])
    assert result.mask.dtype == bool and result.mask.shape == (120, 90)
    assert isinstance(result.score, float)
    assert segmenter.segment(image(120, 90), points=[(30, 50, 1)], multimask=True).mask.shape == (120, 90)


def test_a_second_prompt_reuses_the_cached_embedding(segmenter, monkeypatch):
    segmenter.forget()
    calls = []
    original = segmenter.model.get_image_embeddings
    monkeypatch.setattr(segmenter.model, "get_image_embeddings", lambda pv: calls.append(1) or original(pv))
    pixels = image(80, 100)
    first = segmenter.segment(pixels, box=(5, 5, 50, 50), key="s/0/W/axial")
    again = segmenter.segment("s/0/W/axial", box=(5, 5, 50, 50))
    segmenter.segment("s/0/W/axial", points=[(20, 20, 1)])
    assert len(calls) == 1 and np.array_equal(first.mask, again.mask)


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_a_known_low_res_rectangle_lands_on_the_expected_image_pixels(segmenter, monkeypatch, height, width):
    """SAM 2 stretches the image to 1024×1024 (no padding), so its 256×256 logits are resized
    straight to the image: a pixel is in where the bilinear product of the two axes is over 1/2."""
    rows, cols = (37, 180), (60, 201)
    logits = torch.full((1, 1, 256, 256), -10.0)
    logits[..., rows[0] : rows[1], cols[0] : cols[1]] = 10.0
    monkeypatch.setattr(segmenter, "decode", lambda entry, prompt, multimask=False: (logits, 0.5))
    mask = segmenter.segment(image(height, width), box=(0, 0, width, height)).mask
    assert mask.dtype == bool and mask.shape == (height, width)
    cells_y, cells_x = np.zeros(256), np.zeros(256)
    cells_y[rows[0] : rows[1]], cells_x[cols[0] : cols[1]] = 1.0, 1.0
    product = np.outer(lerp_resize(cells_y, height), lerp_resize(cells_x, width))
    assert np.all(np.abs(product - 0.5) > 1e-6), "tie"
    assert np.array_equal(mask, product > 0.5)


def test_the_mapping_written_out_for_a_512_by_512_image(segmenter, monkeypatch):
    """256 -> 512: low-res cell k covers image pixels 2k and 2k+1 on both axes."""
    logits = torch.full((1, 1, 256, 256), -10.0)
    logits[..., 10:40, 20:100] = 10.0
    monkeypatch.setattr(segmenter, "decode", lambda entry, prompt, multimask=False: (logits, 0.5))
    expected = np.zeros((512, 512), bool)
    expected[20:80, 40:200] = True
    assert np.array_equal(segmenter.segment(image(512, 512), box=(1, 1, 5, 5)).mask, expected)


def test_prompts_are_mapped_as_the_sam2_processor_maps_them(segmenter):
    height, width = 300, 97
    box = (9.7, 60, 67.9, 270)
    points = [(48.5, 150, 1), (19.4, 240, 0)]
    ours = segmenter.prompt_tensors((height, width), box, points)
    theirs = segmenter.processor(
        image(height, width),
        input_boxes=[[list(box)]],
        input_points=[[[[p[0], p[1]] for p in points]]],
        input_labels=[[[p[2] for p in points]]],
        return_tensors="pt",
    )
    assert torch.allclose(ours["input_boxes"].double(), theirs["input_boxes"].double().reshape(1, 1, 4), atol=1e-4)
    assert torch.allclose(ours["input_points"].double(), theirs["input_points"].double().reshape(1, 1, 2, 2), atol=1e-4)
    by_hand = torch.tensor(
        [box[0] * 1024 / width, box[1] * 1024 / height, box[2] * 1024 / width, box[3] * 1024 / height]
    )
    assert torch.allclose(ours["input_boxes"].flatten().double(), by_hand.double(), atol=1e-3)


def test_a_sam2_folder_without_weights_is_one_sentence(tmp_path, sam2_dir):
    for name in ("config.json", "processor_config.json"):
        (tmp_path / name).write_bytes((sam2_dir / name).read_bytes())
    with pytest.raises(SegmenterError) as err:
        load_segmenter(tmp_path)
    text = str(err.value)
    assert "missing model weights" in text and "\n" not in text and "SAM 2.1" in text


SIZE = 48


def disc(index: int) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return (y - 24) ** 2 + (x - 20 - index) ** 2 <= 64


def rendered(index: int) -> np.ndarray:
    return np.repeat((disc(index) * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def test_a_video_checkpoint_also_segments_one_slice_on_shared_weights(video):
    """SAM 2.1 downloads are model_type sam2_video: their one-slice Sam2Model uses the same tensors."""
    shared = dict(video.video_model.named_parameters())
    for name, weight in video.model.named_parameters():
        assert weight.data_ptr() == shared[name].data_ptr(), name
    video.forget()
    first = video.segment(image(70, 90), box=(5, 5, 60, 50), key="v/0")
    assert first.mask.dtype == bool and first.mask.shape == (70, 90)
    assert video.cached("v/0")


def test_the_video_model_propagates_through_the_range_with_progress(video):
    assert isinstance(video, VideoSegmenter) and video.info.family == "Sam2VideoModel"
    progress, asked = [], []

    def slices(index: int) -> np.ndarray:
        asked.append(index)
        return rendered(index)

    run = propagate(
        video,
        slices,
        11,
        (10, 13),
        box=(10, 14, 31, 35),
        stop_when_empty=False,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert isinstance(run, Propagation) and not run.cancelled
    assert set(run.masks) <= {10, 11, 12, 13}
    for mask in run.masks.values():
        assert mask.dtype == bool and mask.shape == (SIZE, SIZE)
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]  # random weights: every slice visited, none stops it
    assert set(asked) == {10, 11, 12, 13}


def test_the_video_model_honours_cancel_and_bad_prompts(video):
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 2:
            cancel.set()

    run = propagate(
        video, rendered, 5, (3, 9), box=(10, 14, 31, 35), stop_when_empty=False, progress=progress, cancel=cancel
    )
    assert run.cancelled and set(run.masks) <= {5, 6}
    with pytest.raises(SegmenterError, match="outside the range"):
        propagate(video, rendered, 12, (0, 10), box=(10, 14, 31, 35))
    with pytest.raises(SegmenterError, match="outside"):
        propagate(video, rendered, 2, (0, 4), box=(100, 100, 120, 120))


def test_propagate_stays_the_function_whatever_loads_first():
    """engine.segmentation.propagate is both a submodule and a lazy function; the video module
    must not import the submodule behind the package's back (it would shadow the function)."""
    import subprocess
    import sys

    code = (
        "import engine.segmentation as s; s.VideoSegmenter; s.Propagation; "
        "from engine.segmentation import propagate; print(callable(propagate) and propagate.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "engine.segmentation.propagate"


def test_lazy_frames_render_a_slice_only_when_reached_and_keep_few():
    from engine.segmentation.video import LazyFrames

    loaded = []
    frames = LazyFrames(5, lambda k: loaded.append(k) or torch.full((1,), float(k)), keep=2)
    assert len(frames) == 5 and 4 in frames and 5 not in frames and loaded == []
    assert float(frames[3]) == 3.0 and float(frames[3]) == 3.0 and loaded == [3]
    frames[1], frames[0]
    assert loaded == [3, 1, 0] and len(frames._recent) == 2
    with pytest.raises(KeyError):
        frames[7]
