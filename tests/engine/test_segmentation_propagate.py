"""Propagation through slices: forward and back, stop where the object ends, progress, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.segmentation import SegmenterError, SegmentResult, load_segmenter, propagate
from tests.engine.tiny_sam import save_sam_dir

SLICES, SIZE = 40, 48


def ball(index: int) -> np.ndarray:
    """A sphere of radius 8 slices centred on slice 20: one disc per slice, none beyond 12..28."""
    r2 = 64 - (index - 20) ** 2
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return (y - 24) ** 2 + (x - 20) ** 2 <= r2 if r2 >= 0 else np.zeros((SIZE, SIZE), bool)


def rendered(index: int) -> np.ndarray:
    return np.repeat((ball(index) * 255).astype(np.uint8)[:, :, None], 3, axis=2)


class OracleSegmenter:
    """Finds the bright object inside the box: the perfect model, so propagation logic is tested alone."""

    def __init__(self) -> None:
        self.boxes: list[tuple[float, ...]] = []

    def segment(self, image, box=None, points=(), key=None):
        self.boxes.append(tuple(box))
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        inside = np.zeros(image.shape[:2], bool)
        inside[y1:y2, x1:x2] = True
        return SegmentResult(mask=(image[:, :, 0] > 0) & inside, score=1.0)


def test_it_follows_the_object_both_ways_and_stops_where_it_ends():
    progress = []
    run = propagate(
        OracleSegmenter(), rendered, 20, (0, SLICES - 1), box=(10, 14, 31, 35), progress=lambda d, t: progress.append(d)
    )
    assert not run.cancelled
    assert sorted(run.masks) == list(range(12, 29))
    for index, mask in run.masks.items():
        assert mask.dtype == bool and np.array_equal(mask, ball(index))
    assert progress == list(range(1, len(progress) + 1)) and len(progress) == 17 + 2  # + one empty slice each way


def test_the_range_bounds_the_run():
    run = propagate(OracleSegmenter(), rendered, 20, (18, 23), box=(10, 14, 31, 35))
    assert sorted(run.masks) == [18, 19, 20, 21, 22, 23]
    with pytest.raises(SegmenterError, match="outside the range"):
        propagate(OracleSegmenter(), rendered, 30, (0, 10), box=(10, 14, 31, 35))


def test_an_empty_start_gives_nothing():
    run = propagate(OracleSegmenter(), rendered, 5, (0, SLICES - 1), box=(10, 14, 31, 35))
    assert run.masks == {} and not run.cancelled


def test_cancel_between_slices_keeps_what_was_done():
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 4:
            cancel.set()

    run = propagate(
        OracleSegmenter(), rendered, 20, (0, SLICES - 1), box=(10, 14, 31, 35), progress=progress, cancel=cancel
    )
    assert run.cancelled
    assert sorted(run.masks) == [20, 21, 22, 23]


def test_the_tiny_model_propagates_and_caches_each_slice(tmp_path):
    segmenter = load_segmenter(save_sam_dir(tmp_path / "sam"), device="cpu")
    run = propagate(segmenter, rendered, 20, (17, 23), box=(10, 14, 31, 35), key_of=lambda k: f"stack/{k}/W/axial")
    assert 20 in run.masks or run.masks == {}
    for mask in run.masks.values():
        assert mask.dtype == bool and mask.shape == (SIZE, SIZE)
    assert any(segmenter.cached(f"stack/{k}/W/axial") for k in range(17, 24))


def test_the_whole_range_can_be_visited_through_gaps():
    run = propagate(OracleSegmenter(), rendered, 20, (10, 30), box=(10, 14, 31, 35), stop_when_empty=False)
    assert sorted(run.masks) == list(range(12, 29))
    start_empty = propagate(OracleSegmenter(), rendered, 10, (9, 14), box=(10, 14, 31, 35), stop_when_empty=False)
    assert sorted(start_empty.masks) == [12, 13, 14]
