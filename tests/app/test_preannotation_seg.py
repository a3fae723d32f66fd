"""Assistant > Pre-annotate… with the seg task: each label's ClinKD box (the tiny Qwen2-VL, its tokens
scripted) prompts the segmenter (the tiny SAM, its decoder scripted to a known square) on the
worker, through the same engine function as `main.py annotate --task seg`; the masks land pending
with both models in their provenance, are listed, drawn, accepted with A and taken back with one
Ctrl+Z. The dialog enables the label list and says when the segmentation model is missing."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.assistant.preannotation import PreannotateDialog
from app.inference.settings import AssistantSettings
from engine.annotations import Review, Source
from engine.preannotate import PreTask
from tests.app.test_annotation_tools import panel_rows
from tests.app.test_assistant import make_window, open_and_wait
from tests.engine.tiny_qwen import TINY_MAX_PIXELS

# The scripted SAM square: image pixels 20..49 of CT_small (128 x 128); see test_segmentation_window.
INSIDE, OUTSIDE = (35, 35), (100, 100)


def choose(dialog: PreannotateDialog, task: PreTask) -> None:
    dialog.task.setCurrentIndex(list(PreTask).index(task))


def test_the_seg_task_from_the_menu_proposes_reviewable_masks(
    qtbot, ct, tiny_folder, scripted, sam_dir, square, monkeypatch
):
    settings = AssistantSettings(
        clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, segmentation_model=str(sam_dir), device="cpu"
    )
    main = make_window(qtbot, settings)
    open_and_wait(qtbot, main, ct)
    seen = []

    def pick_seg(dialog) -> int:  # what the user does in the dialog: the seg task, one label, Start
        choose(dialog, PreTask.SEG)
        dialog.labels.setText("spine")
        seen.append((dialog.labels.isEnabled(), dialog.start_button.isEnabled(), dialog.model_row.isVisibleTo(dialog)))
        return 1

    monkeypatch.setattr(PreannotateDialog, "exec", pick_seg)
    assistant = next(a.menu() for a in main.menuBar().actions() if a.text() == "&Assistant")
    pre = next(a for a in assistant.actions() if a.text().startswith("&Pre-annotate"))
    with qtbot.waitSignal(main.preannotation.finished, timeout=180000) as finished:
        pre.trigger()
    summary = finished.args[0]
    assert seen == [(True, True, False)]
    assert "1 of 1 images, 0 boxes, 1 masks" in summary and "0 failed" in summary, summary

    doc, image_id = main.annotations.doc, main.annotations.image_id
    [mask] = doc.masks(image_id)
    assert mask.label == "spine" and mask.source is Source.MODEL and mask.review is Review.PENDING
    assert mask.frame_indices == (main.state.frame_index,) and mask.score == pytest.approx(0.87)
    pixels = mask.array(mask.frame)
    assert pixels[INSIDE[1], INSIDE[0]] and not pixels[OUTSIDE[1], OUTSIDE[0]]
    provenance = mask.provenance
    assert provenance.task == "seg" and provenance.run == main.preannotation.run_id
    assert provenance.model.count(" + ") == 1  # grounding model + segmentation model
    assert provenance.question == "Where is the spine located in the image?"
    assert "<|box_start|>(250,500),(750,1000)<|box_end|>" in provenance.answer
    used = json.loads(provenance.settings)
    assert used["segmenter"] and used["boxes"] == [[32.0, 64.0, 96.0, 128.0]] and used["task"] == "seg"
    assert {v.name for v in mask.values} >= {"area", "mean"}

    row = next(r for r in panel_rows(main) if r[0] == "spine (mask)")
    assert row[4] == "pending" and row[5] == "model"
    image = main.segmentation.overlay.items[mask.id].pixmap().toImage()
    assert image.pixelColor(*INSIDE).alpha() > 0 and image.pixelColor(*OUTSIDE).alpha() == 0

    # review like boxes: Ctrl+A selects the frame's mask, A accepts it
    main.activateWindow()
    qtbot.wait_until(lambda: QApplication.activeWindow() is main)
    main.set_tool(main.tools.tool)
    main.select_all_on_frame()  # Edit > Select all (Ctrl+A)
    assert main.annotations.selected == {mask.id}
    QTest.keyClick(main, Qt.Key.Key_A)
    assert [m.review for m in doc.masks(image_id)] == [Review.ACCEPTED]
    assert next(r for r in panel_rows(main) if r[0] == "spine (mask)")[4] == "accepted"
    # one Ctrl+Z undoes the accept, the next takes the run back
    QTest.keyClick(main, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(main, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert doc.masks(image_id) == [] and main.segmentation.overlay.items == {}


def test_a_label_without_a_box_is_a_note_in_the_summary(qtbot, ct, tiny_folder, scripted, sam_dir, square):
    scripted["answer"] = "I cannot find it in this image."
    settings = AssistantSettings(
        clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, segmentation_model=str(sam_dir), device="cpu"
    )
    main = make_window(qtbot, settings)
    open_and_wait(qtbot, main, ct)
    from engine.preannotate import PreannotateSpec

    with qtbot.waitSignal(main.preannotation.finished, timeout=180000) as finished:
        main.preannotation.start(PreannotateSpec(PreTask.SEG, ("spine",)))
    summary = finished.args[0]
    assert "0 masks" in summary and "spine: ClinKD found no box, so there is no mask" in summary, summary
    assert main.annotations.doc.masks(main.annotations.image_id) == []


def test_the_dialog_says_the_segmentation_model_is_missing_and_how_to_choose_it(qtbot, tmp_path) -> None:
    chosen = []

    def choose_model() -> AssistantSettings:
        chosen.append(True)
        return AssistantSettings(clinkd_dir=str(tmp_path), segmentation_model=str(tmp_path))

    dialog = PreannotateDialog(
        ["heart"],
        None,
        1,
        1,
        "tuberculosis-cxr",
        settings=AssistantSettings(clinkd_dir=str(tmp_path)),
        choose_model=choose_model,
    )
    qtbot.addWidget(dialog)
    dialog.show()
    choose(dialog, PreTask.MIA)
    assert dialog.start_button.isEnabled() and not dialog.labels.isEnabled()
    choose(dialog, PreTask.SEG)
    note = dialog.model_note.text()
    assert dialog.labels.isEnabled() and not dialog.start_button.isEnabled() and dialog.model_note.isVisible()
    assert "segmentation model" in note and "Assistant > Choose segmentation model…" in note
    dialog.accept()
    assert dialog.result() == 0 and dialog.isVisible()
    dialog.grab().save(str(tmp_path / "seg-dialog-missing.png"))
    QTest.mouseClick(dialog.choose_button, Qt.MouseButton.LeftButton)
    assert chosen and dialog.start_button.isEnabled() and not dialog.model_note.isVisible()
    dialog.labels.setText("liver, spleen")
    spec = dialog.spec()
    assert spec.task is PreTask.SEG and spec.labels == ("liver", "spleen")
    dialog.labels.setText("liver, Liver")
    dialog.accept()
    assert dialog.result() == 0 and "duplicated" in dialog.error.text()


def test_a_segmentation_folder_that_does_not_exist_is_named(qtbot, tmp_path) -> None:
    settings = AssistantSettings(clinkd_dir=str(tmp_path), segmentation_model=str(tmp_path / "gone"))
    dialog = PreannotateDialog(["heart"], None, 1, 1, "tuberculosis-cxr", settings=settings)
    qtbot.addWidget(dialog)
    choose(dialog, PreTask.SEG)
    assert not dialog.start_button.isEnabled()
    assert "gone does not exist" in dialog.model_note.text()
