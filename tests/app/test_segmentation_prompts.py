"""Prompts for the segmenter from elsewhere in the window: a ClinKD answer box ("Segment" beside it),
a pending model box, points that refine a mask; and the worker's idle work (neighbours' embeddings,
a propagated mask's volume). The tiny SAM goes through the production loader with a scripted decoder."""

from __future__ import annotations

import json

from PySide6.QtCore import QUrl

from app.inference.settings import AssistantSettings
from engine.annotations import AddAnnotations, Review, Source
from engine.clinkd import Task
from tests.app.test_assistant import make_window, open_and_wait
from tests.app.test_segmentation_window import sam_dir, square  # noqa: F401  (fixtures)
from tests.engine.tiny_qwen import TINY_MAX_PIXELS


def test_segment_beside_an_answer_box_prompts_with_that_box(qtbot, ct, tiny_folder, scripted, sam_dir, square):  # noqa: F811
    settings = AssistantSettings(
        clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, device="cpu", segmentation_model=str(sam_dir)
    )
    main = make_window(qtbot, settings)
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    with qtbot.waitSignal(panel.answer_finished, timeout=60000):
        panel.ask("spine", Task.VG, None)
    assert "Segment" in panel.chat.toPlainText()  # the action sits beside the answer box
    with qtbot.waitSignal(main.segmentation.mask_added, timeout=120000) as added:
        panel.chat.anchorClicked.emit(QUrl("segment:0:0"))  # the link, as a click sends it
    mask = added.args[0]
    assert mask.source is Source.MODEL and mask.review is Review.PENDING and mask.label == "spine"
    prompt = json.loads(mask.provenance.question)
    assert prompt["box"] == [32.0, 64.0, 96.0, 128.0]  # the answer box in image pixels (0-1000 grid of 128 px)
    assert prompt["frame"] == main.state.frame_index + 1 and mask.provenance.task == "segment"


def test_segment_the_selected_box_takes_a_pending_model_box(qtbot, ct, sam_dir, square):  # noqa: F811
    main = make_window(qtbot, AssistantSettings(segmentation_model=str(sam_dir), device="cpu"))
    open_and_wait(qtbot, main, ct)
    doc, image_id = main.annotations.doc, main.annotations.image_id
    label = doc.ensure_label("kidney").name
    box = doc.new_box(image_id, main.state.frame_index, 22, 24, 48, 46, label, source=Source.MODEL)
    assert box.review is Review.PENDING
    doc.execute(AddAnnotations(image_id, [box], text="Pre-annotate"))
    main.annotations.select({box.id})
    with qtbot.waitSignal(main.segmentation.mask_added, timeout=120000) as added:
        main.segmentation.segment_box_action.trigger()
    mask = added.args[0]
    assert mask.label == "kidney" and json.loads(mask.provenance.question)["box"] == [22.0, 24.0, 48.0, 46.0]
