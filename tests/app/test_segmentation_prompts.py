"""Prompts for the segmenter from elsewhere in the window: a ClinKD answer box ("Segment" beside it),
a pending model box, points that refine a mask; and the worker's idle work (neighbours' embeddings,
a propagated mask's volume). The tiny SAM goes through the production loader with a scripted decoder."""

from __future__ import annotations

import json

import torch
from PySide6.QtCore import Qt, QUrl
from PySide6.QtTest import QTest

from app.inference.settings import AssistantSettings
from engine.annotations import AddAnnotations, Review, Source
from engine.clinkd import Task
from engine.segmentation import Segmenter
from tests.app.test_annotation_tools import at
from tests.app.test_assistant import make_window, open_and_wait
from tests.engine.tiny_qwen import TINY_MAX_PIXELS


def test_segment_beside_an_answer_box_prompts_with_that_box(qtbot, ct, tiny_folder, scripted, sam_dir, square):
    settings = AssistantSettings(
        clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, device="cpu", segmentation_model=str(sam_dir)
    )
    main = make_window(qtbot, settings)
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    with qtbot.waitSignal(panel.answer_finished, timeout=60000):
        panel.ask("spine", Task.VG, None)
    assert "Segment" in panel.chat.toPlainText()  # the action sits beside the answer box
    with qtbot.waitSignal(main.segmentation.mask_added, timeout=30000) as added:
        panel.chat.anchorClicked.emit(QUrl("segment:0:0"))  # the link, as a click sends it
    mask = added.args[0]
    assert mask.source is Source.MODEL and mask.review is Review.PENDING and mask.label == "spine"
    prompt = json.loads(mask.provenance.question)
    assert prompt["box"] == [32.0, 64.0, 96.0, 128.0]  # the answer box in image pixels (0-1000 grid of 128 px)
    assert prompt["frame"] == main.state.frame_index + 1 and mask.provenance.task == "segment"


def test_segment_the_selected_box_takes_a_pending_model_box(qtbot, ct, sam_dir, square):
    main = make_window(qtbot, AssistantSettings(segmentation_model=str(sam_dir), device="cpu"))
    open_and_wait(qtbot, main, ct)
    doc, image_id = main.annotations.doc, main.annotations.image_id
    label = doc.ensure_label("kidney").name
    box = doc.new_box(image_id, main.state.frame_index, 22, 24, 48, 46, label, source=Source.MODEL)
    assert box.review is Review.PENDING
    doc.execute(AddAnnotations(image_id, [box], text="Pre-annotate"))
    main.annotations.select({box.id})
    with qtbot.waitSignal(main.segmentation.mask_added, timeout=30000) as added:
        main.segmentation.segment_box_action.trigger()
    mask = added.args[0]
    assert mask.label == "kidney" and json.loads(mask.provenance.question)["box"] == [22.0, 24.0, 48.0, 46.0]


def test_points_refine_the_selected_mask_from_its_box_as_one_undo_step(qtbot, ct, sam_dir, square, monkeypatch):
    main = make_window(qtbot, AssistantSettings(segmentation_model=str(sam_dir), device="cpu"))
    open_and_wait(qtbot, main, ct)
    segmentation, frame = main.segmentation, main.state.frame_index
    segmentation.tool_action.trigger()
    with qtbot.waitSignal(segmentation.mask_added, timeout=30000) as added:
        segmentation.segment_box(frame, (20.0, 20.0, 50.0, 50.0))
    mask = added.args[0]
    main.annotations.select({mask.id})
    jobs = []
    submit = main.service.submit
    monkeypatch.setattr(main.service, "submit", lambda job: (jobs.append(job), submit(job))[1])
    answers = []  # the refined answers: image pixels 20..39 (20×20), then 20..29 (10×10)
    for end in (80, 60):
        logits = torch.full((1, 1, 256, 256), -10.0)
        logits[..., 40:end, 40:end] = 10.0
        answers.append(logits)
    replies = iter(answers)
    monkeypatch.setattr(Segmenter, "decode", lambda self, entry, prompt, multimask=False: (next(replies), 0.9))
    viewport = main.canvas.viewport()
    with qtbot.waitSignal(segmentation.mask_added, timeout=30000):
        QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, at(main, 25, 25))
    with qtbot.waitSignal(segmentation.mask_added, timeout=30000):
        QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.AltModifier, at(main, 45, 45))
    assert [j.box for j in jobs] == [(20.0, 20.0, 50.0, 50.0)] * 2  # the original box each time
    assert [[(round(x), round(y), p) for x, y, p in j.points] for j in jobs] == [
        [(25, 25, 1)],
        [(25, 25, 1), (45, 45, 0)],
    ]
    doc, image_id = main.annotations.doc, main.annotations.image_id
    [now] = doc.masks(image_id)
    assert now.id == mask.id and 8 * 8 <= now.array(frame).sum() <= 12 * 12
    assert main.annotations.undo()  # each point is one step: back to the first point's mask
    assert 18 * 18 <= doc.masks(image_id)[0].array(frame).sum() <= 22 * 22
    assert main.annotations.undo()
    assert doc.masks(image_id)[0].array(frame).sum() >= 28 * 28  # the box's mask again


def test_the_idle_worker_embeds_the_neighbours_and_the_next_prompt_there_is_instant(qtbot, sam_dir, square, rtdose):

    from app.segmentation.controller import pixels_key

    main = make_window(qtbot, AssistantSettings(segmentation_model=str(sam_dir), device="cpu"))
    open_and_wait(qtbot, main, rtdose)  # 15 frames of 10×10
    main.state.set_frame(2)
    qtbot.wait_until(lambda: main.state.frame is not None)
    stack, window, invert = main.state.stack, main.state.window, main.state.invert
    keys = {index: pixels_key(stack, index, window, invert) for index in (1, 2, 3)}
    prefetched = []
    main.service.worker.prefetched.connect(prefetched.append)
    with qtbot.waitSignal(main.service.worker.finished, timeout=30000):
        assert main.segmentation.segment_box(2, (1.0, 1.0, 9.0, 9.0)) is not None, main.statusBar().currentMessage()
    qtbot.wait_until(lambda: len(prefetched) == 2, timeout=60000)
    segmenter = main.service.worker._segmenter.segmenter  # the holder's loaded segmenter
    assert sorted(prefetched) == sorted([keys[1], keys[3]]) and all(segmenter.cached(k) for k in keys.values())
    computed = []
    encoder = segmenter.model.get_image_embeddings
    segmenter.model.get_image_embeddings = lambda *a, **k: (computed.append(1), encoder(*a, **k))[1]
    main.state.set_frame(3)
    qtbot.wait_until(lambda: main.state.frame is not None)
    with qtbot.waitSignal(main.service.worker.finished, timeout=30000):
        main.segmentation.segment_box(3, (1.0, 1.0, 9.0, 9.0))
    assert computed == []  # frame 3's embedding came from the prefetch
    qtbot.wait_until(lambda: len(prefetched) == 3, timeout=60000)  # frame 4 now (2 is still cached)
    assert prefetched[-1] == pixels_key(stack, 4, window, invert)


def test_a_queued_job_goes_before_the_prefetch(qtbot, sam_dir, square, rtdose):

    main = make_window(qtbot, AssistantSettings(segmentation_model=str(sam_dir), device="cpu"))
    open_and_wait(qtbot, main, rtdose)
    worker = main.service.worker
    order = []
    worker.prefetched.connect(lambda key: order.append(key.split("/")[-3]))  # the frame index
    worker.started.connect(order.append)
    first = main.segmentation.segment_box(0, (1.0, 1.0, 9.0, 9.0))
    second = main.segmentation.segment_box(7, (1.0, 1.0, 9.0, 9.0))
    qtbot.wait_until(lambda: len(order) == 4, timeout=60000)
    assert order == [first, second, "6", "8"]  # frame 0's neighbour was dropped for the newer prompt's
    main.service.cancel()  # cancel all drops the idle work too
    assert worker._prefetch == []


def test_a_propagated_masks_volume_is_measured_on_the_worker_and_arrives_with_it(
    qtbot, sam_dir, square, monkeypatch, rtdose
):
    import threading

    from app.segmentation import controller

    main = make_window(qtbot, AssistantSettings(segmentation_model=str(sam_dir), device="cpu"))
    open_and_wait(qtbot, main, rtdose)
    with qtbot.waitSignal(main.segmentation.mask_added, timeout=30000) as added:
        main.segmentation.segment_box(0, (1.0, 1.0, 9.0, 9.0))
    mask = added.args[0]
    threads = []
    measure = controller.mask_measurements
    monkeypatch.setattr(
        controller,
        "mask_measurements",
        lambda stack, masks: (threads.append(threading.current_thread()), measure(stack, masks))[1],
    )
    outcomes = []
    main.service.worker.result.connect(lambda _job, outcome: outcomes.append(outcome))
    with qtbot.waitSignal(main.segmentation.mask_added, timeout=60000) as extended:
        main.segmentation.propagate(mask, (0, 4))
    [outcome] = outcomes
    assert len(outcome.masks) > 1 and outcome.values is not None
    assert threads and threading.main_thread() not in threads  # measured on the worker only
    assert extended.args[0].values == outcome.values
    assert "volume" in {v.name for v in outcome.values}
