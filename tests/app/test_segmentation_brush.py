"""The brush and the eraser on the canvas (one undo step per stroke, live overlay, measurements),
and the right-click menu of a box ("Segment" through the scripted SAM, Accept / Reject)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.annotations import AddAnnotations, MeasuredValue, Review, Source
from tests.app.test_annotation_tools import at, drag, make_window, open_and_wait


@pytest.fixture
def main(qtbot, ct):
    window = make_window(qtbot)
    open_and_wait(qtbot, window, [ct])
    return window


def doc_of(main):
    return main.annotations.doc, main.annotations.image_id


def add_model_mask(main, frame: int = 0, frames=(0,)):
    doc, image_id = doc_of(main)
    square = np.zeros((128, 128), bool)
    square[20:50, 20:50] = True
    mask = doc.new_mask(
        image_id,
        dict.fromkeys(frames, square),
        doc.ensure_label("liver").name,
        source=Source.MODEL,
        values=(MeasuredValue("area", 1.0, "mm2"),),
    )
    assert doc.execute(AddAnnotations(image_id, [mask], text="Segment"))
    main.annotations.select({mask.id})
    return mask


def test_a_brush_stroke_without_a_selected_mask_makes_one_and_one_undo_takes_it_back(qtbot, main):
    brush = main.segmentation.brush
    main.annotations.set_current_label("lesion")
    brush.actions["brush"].trigger()
    assert brush.tool.mode == "brush" and brush.actions["brush"].isChecked()
    assert not main.segmentation.tool.active and not any(a.isChecked() for a in main.tool_actions.values())
    brush.radius.setValue(3)
    drag(main, (20, 30), (60, 30), steps=8)
    doc, image_id = doc_of(main)
    [mask] = doc.masks(image_id)
    assert mask.source is Source.USER and mask.review is Review.ACCEPTED and mask.label == "lesion"
    pixels = mask.array(main.state.frame_index)
    assert pixels[30, 20:61].all() and not pixels[36:, :].any() and not pixels[:, 65:].any()
    assert 40 * 5 <= pixels.sum() <= 44 * 7
    assert main.annotations.selected == {mask.id}  # the next stroke goes into it
    assert {v.name for v in mask.values} >= {"area", "mean"}
    assert main.annotations.undo_text() == "Brush stroke" and len(doc.history(image_id)) == 1
    assert list(main.segmentation.overlay.items) == [mask.id]

    assert main.annotations.undo()
    assert doc.masks(image_id) == [] and main.segmentation.overlay.items == {}
    assert main.annotations.redo()
    assert [m.id for m in doc.masks(image_id)] == [mask.id]


def test_a_stroke_into_a_model_mask_is_shown_live_then_one_step_that_marks_it_corrected(qtbot, main):
    mask = add_model_mask(main)
    doc, image_id = doc_of(main)
    brush = main.segmentation.brush
    brush.actions["brush"].trigger()
    brush.radius.setValue(2)
    viewport = main.canvas.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(main, 25, 60))
    QTest.mouseMove(viewport, at(main, 45, 60))
    assert doc.find(image_id, mask.id) == mask  # nothing in the document during the stroke
    shown = main.segmentation.overlay.items[mask.id].pixmap().toImage()
    assert shown.pixelColor(35, 60).alpha() > 0 and shown.pixelColor(35, 30).alpha() > 0
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(main, 45, 60))

    painted = doc.find(image_id, mask.id)
    assert painted.review is Review.CORRECTED and painted.source is Source.MODEL
    pixels = painted.array(0)
    assert pixels[60, 25:46].all() and pixels[20:50, 20:50].all()
    assert painted.value("area").value > 30 * 30 * 0.6 * 0.6  # measured again (mm², CT_small's spacing)
    assert main.annotations.undo_text() == "Brush stroke"
    assert main.annotations.undo() and doc.find(image_id, mask.id) == mask
    assert main.annotations.redo() and doc.find(image_id, mask.id) == painted


def test_the_eraser_removes_pixels_in_one_step_and_erasing_everything_deletes_the_mask(qtbot, main):
    mask = add_model_mask(main)
    doc, image_id = doc_of(main)
    brush = main.segmentation.brush
    brush.actions["erase"].trigger()
    assert brush.tool.mode == "erase" and not brush.actions["brush"].isChecked()
    brush.radius.setValue(2)
    drag(main, (10, 35), (60, 35), steps=6)
    erased = doc.find(image_id, mask.id).array(0)
    assert not erased[35, 20:50].any() and erased[25, 25] and erased[45, 45]
    assert erased.sum() < 30 * 30
    assert main.annotations.undo_text() == "Erase stroke"
    assert main.annotations.undo() and doc.find(image_id, mask.id) == mask

    brush.radius.setValue(40)
    drag(main, (35, 35), (36, 35))
    assert doc.find(image_id, mask.id) is None and main.annotations.undo_text() == "Erase stroke"
    assert main.annotations.undo() and doc.find(image_id, mask.id) == mask


def test_the_eraser_without_a_selected_mask_changes_nothing_and_says_why(qtbot, main):
    add_model_mask(main)
    main.annotations.select(set())
    main.segmentation.brush.actions["erase"].trigger()
    doc, image_id = doc_of(main)
    before = len(doc.history(image_id))
    drag(main, (10, 35), (60, 35))
    assert len(doc.history(image_id)) == before
    assert "Select a mask" in main.statusBar().currentMessage()


def test_brush_keys_choose_the_tool_and_size_it_and_another_tool_ends_it(qtbot, main):
    brush = main.segmentation.brush
    main.canvas.setFocus()
    QTest.keyClick(main.canvas, Qt.Key.Key_B, Qt.KeyboardModifier.ShiftModifier)
    assert brush.tool.mode == "brush"
    radius = brush.radius.value()
    QTest.keyClick(main.canvas, Qt.Key.Key_BracketRight)
    QTest.keyClick(main.canvas, Qt.Key.Key_BracketRight)
    QTest.keyClick(main.canvas, Qt.Key.Key_BracketLeft)
    assert brush.radius.value() == radius + 1 and brush.tool.radius == radius + 1
    QTest.mouseMove(main.canvas.viewport(), at(main, 30, 40))
    assert brush.tool.circle.isVisible() and brush.tool.circle.rect().width() == 2 * (radius + 1)
    QTest.keyClick(main.canvas, Qt.Key.Key_E, Qt.KeyboardModifier.ShiftModifier)
    assert brush.tool.mode == "erase"
    main.segmentation.tool_action.trigger()
    assert brush.tool.mode is None and not brush.tool.circle.isVisible() and main.segmentation.tool.active


def test_a_stroke_on_a_mask_of_several_frames_gets_its_volume_in_the_same_step(qtbot, rtdose):
    main = make_window(qtbot)
    open_and_wait(qtbot, main, [rtdose])
    frame = main.state.frame_index
    doc, image_id = doc_of(main)
    rows, columns = main.state.stack.rows, main.state.stack.columns
    square = np.zeros((rows, columns), bool)
    square[2:6, 2:6] = True
    mask = doc.new_mask(
        image_id, {frame: square, frame + 1: square}, "dose", values=(MeasuredValue("volume", 0, "mL"),)
    )
    doc.execute(AddAnnotations(image_id, [mask]))
    main.annotations.select({mask.id})
    brush = main.segmentation.brush
    brush.actions["brush"].trigger()
    brush.radius.setValue(1)
    main.canvas.set_zoom(8.0)
    main.canvas.center_on_pixel(columns / 2, rows / 2)
    drag(main, (8, 3.5), (8, 3.5))
    qtbot.wait_until(lambda: brush.measuring == 0, timeout=30000)
    brushed = doc.find(image_id, mask.id)
    assert brushed.array(frame).sum() > square.sum() and np.array_equal(brushed.array(frame + 1), square)
    assert brushed.values != mask.values and brushed.value("volume").value > 0
    assert len(doc.history(image_id)) == 2 and main.annotations.undo_text() == "Brush stroke"
    assert main.annotations.undo() and doc.find(image_id, mask.id) == mask


# ----- the box menu


def right_click(main, x: float, y: float) -> None:
    QTest.mouseClick(main.canvas.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, at(main, x, y))


def model_box(main, review=Review.PENDING):
    doc, image_id = doc_of(main)
    box = doc.new_box(
        image_id,
        main.state.frame_index,
        22,
        24,
        48,
        46,
        doc.ensure_label("kidney").name,
        source=Source.MODEL,
        review=review,
    )
    doc.execute(AddAnnotations(image_id, [box]))
    return box


def menu_texts(main) -> list[str]:
    menu = main.box_menu.menu
    return [a.text() for a in menu.actions() if not a.isSeparator()] if menu is not None and menu.isVisible() else []


def test_segment_from_the_menu_of_a_pending_model_box(qtbot, main, sam_dir, square):
    main.set_assistant_settings(replace(main.assistant_settings, segmentation_model=str(sam_dir), device="cpu"))
    box = model_box(main)
    window_before = main.state.window
    right_click(main, 90, 90)  # off every box: no menu
    assert main.box_menu.menu is None
    right_click(main, 30, 30)
    qtbot.wait_until(lambda: menu_texts(main) == ["Segment", "Accept", "Reject"])
    assert main.annotations.selected == {box.id} and main.state.window == window_before
    segment = next(a for a in main.box_menu.menu.actions() if a.text() == "Segment")
    with qtbot.waitSignal(main.segmentation.mask_added, timeout=120000) as added:
        segment.trigger()
    mask = added.args[0]
    assert mask.label == "kidney" and '"box": [22.0, 24.0, 48.0, 46.0]' in mask.provenance.question
    assert mask.array(mask.frame)[35, 35] and main.annotations.doc.masks(main.annotations.image_id) == [mask]


def test_accept_and_reject_from_the_box_menu(qtbot, main):
    box = model_box(main)
    doc, image_id = doc_of(main)
    right_click(main, 30, 30)
    qtbot.wait_until(lambda: "Accept" in menu_texts(main))
    next(a for a in main.box_menu.menu.actions() if a.text() == "Accept").trigger()
    assert doc.find(image_id, box.id).review is Review.ACCEPTED
    main.box_menu.menu.close()
    right_click(main, 30, 30)
    qtbot.wait_until(lambda: menu_texts(main) == ["Segment"])  # reviewed: nothing left to decide
