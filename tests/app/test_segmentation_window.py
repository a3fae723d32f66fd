"""Segmentation in the window: the Segment tool and "Segment" on a box, through the production
loader with a tiny random-weight SAM whose mask decoder is scripted (a known square), so the
plumbing (worker job, pending mask, undo, overlay, list) is under test, never the model's weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.annotations import Review, Source
from tests.app.test_annotation_tools import drag, make_window, open_and_wait, panel_rows

# CT_small is 128×128: the model's 1024-pixel input is 8× it, the 256×256 low-res logits 2×.
# Logits +10 on low-res rows/columns 40..99 are image pixels 20..49 (within a pixel at the edges).
INSIDE, OUTSIDE = (35, 35), (100, 100)


@pytest.fixture
def main(qtbot, ct):
    window = make_window(qtbot)
    open_and_wait(qtbot, window, [ct])
    return window


def with_model(main, sam_dir) -> None:
    main.set_assistant_settings(replace(main.assistant_settings, segmentation_model=str(sam_dir), device="cpu"))


def test_segment_tool_adds_a_pending_mask_that_is_drawn_listed_and_undone(qtbot, main, sam_dir, square):
    with_model(main, sam_dir)
    main.segmentation.tool_action.trigger()
    assert main.segmentation.tool.active and not main.segmentation.banner.isVisible()
    with qtbot.waitSignal(main.segmentation.mask_added, timeout=120000):
        drag(main, (20, 20), (50, 50))
    doc, image_id = main.annotations.doc, main.annotations.image_id
    [mask] = doc.masks(image_id)
    assert mask.source is Source.MODEL and mask.review is Review.PENDING and mask.score == pytest.approx(0.87)
    assert mask.frame_indices == (main.state.frame_index,)
    pixels = mask.array(mask.frame)
    assert pixels[INSIDE[1], INSIDE[0]] and not pixels[OUTSIDE[1], OUTSIDE[0]]
    assert 28 * 28 <= pixels.sum() <= 32 * 32
    assert mask.provenance.model and mask.provenance.task == "segment" and '"box": [20' in mask.provenance.question
    assert {v.name for v in mask.values} >= {"area", "mean"}
    assert list(main.segmentation.overlay.items) == [mask.id]
    image = main.segmentation.overlay.items[mask.id].pixmap().toImage()
    assert image.pixelColor(*INSIDE).alpha() > 0 and image.pixelColor(*OUTSIDE).alpha() == 0
    row = next(r for r in panel_rows(main) if r[0].endswith("(mask)"))
    assert row[1] == str(mask.frame + 1) and "mm²" in row[3] and row[4] == "pending"

    assert main.annotations.undo()
    assert doc.masks(image_id) == [] and main.segmentation.overlay.items == {}
    assert not any(r[0].endswith("(mask)") for r in panel_rows(main))
    assert main.annotations.redo()
    assert [m.id for m in doc.masks(image_id)] == [mask.id] and list(main.segmentation.overlay.items) == [mask.id]

    main.state.set_frame(main.state.frame_index)  # a frame change redraws from the document
    assert list(main.segmentation.overlay.items) == [mask.id]


def test_segment_on_the_selected_box_uses_its_rectangle_and_label(qtbot, main, sam_dir, square):
    with_model(main, sam_dir)
    main.annotations.set_current_label("liver")
    box = main.annotations.add_box(main.state.frame_index, 22, 24, 48, 46)
    assert main.annotations.selected == {box.id}
    with qtbot.waitSignal(main.segmentation.mask_added, timeout=120000) as added:
        main.segmentation.segment_box_action.trigger()
    mask = added.args[0]
    assert mask.label == "liver" and '"box": [22.0, 24.0, 48.0, 46.0]' in mask.provenance.question
    assert len(main.annotations.doc.annotations(main.annotations.image_id)) == 2  # the box stays


def test_without_a_model_the_tool_says_what_is_missing_and_submits_nothing(qtbot, main, monkeypatch):
    submitted = []
    monkeypatch.setattr(main.service, "submit", submitted.append)
    main.segmentation.tool_action.trigger()
    banner = main.segmentation.banner
    assert banner.isVisible() and "SAM or MedSAM" in banner.text()
    drag(main, (20, 20), (50, 50))
    assert submitted == [] and main.annotations.doc.masks(main.annotations.image_id) == []
    assert "segmentation model" in main.statusBar().currentMessage()
    main.set_tool(main.tools.tool)  # another tool: the notice goes with the Segment tool
    assert not banner.isVisible() and not main.segmentation.tool.active


def test_a_folder_that_is_not_a_sam_model_is_one_sentence(qtbot, main, tmp_path):
    (tmp_path / "not-sam").mkdir()
    main.set_assistant_settings(replace(main.assistant_settings, segmentation_model=str(tmp_path / "not-sam")))
    with qtbot.waitSignal(main.service.worker.finished, timeout=60000):
        main.segmentation.segment_box(main.state.frame_index, (20, 20, 50, 50))
    qtbot.wait_until(lambda: main.banner.isVisible())
    text = main.banner.label.text()
    assert text.startswith("Segmentation failed") and "Traceback" not in text, text
    assert main.annotations.doc.masks(main.annotations.image_id) == []


def test_mask_overlay_outline_is_opaque_and_fill_translucent():
    from app.segmentation.mask_overlay import FILL_ALPHA, mask_rgba

    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    rgba = mask_rgba(mask, "#ff0000")
    assert rgba[1, 1, 3] == 255 and rgba[2, 2, 3] == FILL_ALPHA and rgba[0, 0, 3] == 0
    assert tuple(rgba[2, 2, :3]) == (255, 0, 0)
