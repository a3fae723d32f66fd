"""Brush strokes as pixels (exact on known inputs), and a stroke's measurements joining its undo step."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.annotations import MeasuredValue, Review, SetMaskFrames, Source
from engine.annotations.brush import paint_stroke, stroke_mask
from tests.engine.test_annotations_support import new_doc, series_ref
from tests.engine.test_masks_model import add_mask, disc


def pixels(mask: np.ndarray) -> set[tuple[int, int]]:
    """(row, column) of every painted pixel."""
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(mask), strict=True)}


def test_a_click_on_a_pixel_corner_paints_the_four_pixels_around_it():
    assert pixels(stroke_mask((10, 10), [(5.0, 5.0)], 1.0)) == {(4, 4), (4, 5), (5, 4), (5, 5)}


def test_a_click_on_a_pixel_centre_paints_a_plus():
    assert pixels(stroke_mask((10, 10), [(5.5, 5.5)], 1.0)) == {(5, 5), (4, 5), (6, 5), (5, 4), (5, 6)}


def test_a_segment_sweeps_the_disc_along_it_and_stops_at_its_ends():
    line = stroke_mask((10, 12), [(2.5, 5.5), (8.5, 5.5)], 0.5)
    assert pixels(line) == {(5, c) for c in range(2, 9)}
    diagonal = stroke_mask((10, 10), [(0.5, 0.5), (3.5, 3.5)], 0.5)
    assert pixels(diagonal) == {(i, i) for i in range(4)}


def test_a_polyline_is_the_union_of_its_segments_whole_or_move_by_move():
    points = [(3.2, 4.1), (10.7, 6.3), (12.0, 15.5), (4.4, 17.9)]
    whole = stroke_mask((24, 20), points, 2.3)
    stepwise = np.zeros((24, 20), bool)
    for a, b in itertools.pairwise(points):
        paint_stroke(stepwise, [a, b], 2.3)
    assert np.array_equal(whole, stepwise)
    assert whole[4, 3] and whole[17, 4] and not whole[0, 19]


def test_a_stroke_off_the_edge_is_clipped_and_erasing_clears():
    mask = np.ones((6, 6), bool)
    paint_stroke(mask, [(-3.0, 0.0), (0.0, 0.0)], 1.0, value=False)
    assert pixels(~mask) == {(0, 0)}
    assert not stroke_mask((6, 6), [(40.0, 40.0)], 3.0).any()


@pytest.mark.parametrize("radius", [0, -1.0, float("nan"), float("inf")])
def test_a_brush_needs_a_positive_radius(radius):
    with pytest.raises(ValueError, match="radius"):
        stroke_mask((4, 4), [(1.0, 1.0)], radius)


def test_a_stroke_and_its_later_measurement_are_one_undo_step_and_mark_a_model_mask_corrected():
    doc = new_doc(series_ref())
    mask = add_mask(doc, source=Source.MODEL)
    before = mask.arrays()
    painted = before[0] | stroke_mask((48, 64), [(5.0, 40.0), (20.0, 40.0)], 2.0)
    assert doc.execute(SetMaskFrames("series:1.2.3", mask.id, {0: painted}, text="Brush stroke", stroke=7))
    values = (MeasuredValue("volume", 1.5, "mL"),)
    assert doc.execute(SetMaskFrames("series:1.2.3", mask.id, {}, values=values, stroke=7))
    edited = doc.find("series:1.2.3", mask.id)
    assert edited.review is Review.CORRECTED and edited.values == values
    assert np.array_equal(edited.array(0), painted)
    assert doc.history("series:1.2.3").undo_text == "Brush stroke"
    assert doc.undo("series:1.2.3")
    restored = doc.find("series:1.2.3", mask.id)
    assert restored == mask and np.array_equal(restored.array(0), disc())
    assert doc.redo("series:1.2.3") and doc.find("series:1.2.3", mask.id).values == values
