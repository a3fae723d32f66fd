"""The assistant in the window, driven through the real worker thread and the real engine loader
with a tiny random Qwen2-VL. Tests wait on the panels' GUI-thread signals: pytest-qt's blocker
called back from the worker thread can miss its own timeout. Where a test needs a known answer
(boxes at known places, a pause to cancel in), it scripts the model's tokens through the real
streamer and stopping criteria (the ``scripted`` fixture in conftest.py): the plumbing is under
test, never the model's words."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QPushButton

from app.assistant.conversation import Turn
from app.inference.settings import AssistantSettings, save_settings
from app.main_window import MainWindow
from engine.annotations import Review, Source
from engine.clinkd import Task
from engine.imaging import Window, render_rgb
from tests.app.conftest import BOX_ANSWER
from tests.app.test_viewer_window import canvas_pixels
from tests.engine.tiny_qwen import TINY_MAX_PIXELS


def make_window(qtbot, settings: AssistantSettings) -> MainWindow:
    save_settings(settings)
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1300, 800)
    main.show()
    qtbot.waitExposed(main)
    return main


def open_and_wait(qtbot, main: MainWindow, path: str) -> None:
    with qtbot.waitSignal(main.load_finished, timeout=20000):
        main.open([path])
    qtbot.wait_until(lambda: main.state.frame is not None)


def test_without_weights_the_panel_says_what_is_missing(qtbot, ct):
    main = make_window(qtbot, AssistantSettings())
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    assert panel.missing.isVisible() and "No ClinKD" in panel.missing.text()
    assert panel.choose_button.isVisible() and panel.choose_button.text() == "Choose model folder…"
    assert not panel.ask_button.isEnabled()
    # a compact banner: one line, the long explanation in its tooltip and a link to the weights doc
    assert panel.missing.height() < 3 * panel.fontMetrics().height()
    assert "docs/models/weights.md" in panel.missing.label.toolTip()
    assert "weights.md" in panel.missing.label.text() and "Details" in panel.missing.label.text()
    # one clear Ask button: the task row only chooses what to ask
    asks = [b for b in panel.findChildren(QPushButton) if b.text() == "Ask"]
    assert asks == [panel.ask_button] and panel.ask_button.isDefault()
    assert panel.ask_button.geometry().center().y() == pytest.approx(panel.question.geometry().center().y(), abs=4)
    assert main.model_status.text() == "Model: not configured"
    assert panel.notice.text().startswith("Research use only")


def test_ask_streams_and_draws_answer_boxes_at_the_right_pixels(qtbot, ct, tiny_folder, scripted):
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, device="cpu"))
    open_and_wait(qtbot, main, ct)
    worker = main.service.worker
    order: list[str] = []
    for name in ("started", "partial_text", "result", "finished"):
        getattr(worker, name).connect(lambda *_a, n=name: order.append(n))
    chunks: list[str] = []
    worker.partial_text.connect(lambda _id, text: chunks.append(text))
    main.ask_panel.set_task(Task.VG)
    main.ask_panel.question.setText("spine")
    with qtbot.waitSignal(main.ask_panel.answer_finished, timeout=60000):
        QTest.mouseClick(main.ask_panel.ask_button, Qt.MouseButton.LeftButton)
        assert main.ask_panel.ask_button.text() == "Cancel"
    assert order[0] == "started" and order[-2:] == ["result", "finished"] and "partial_text" in order
    assert "".join(chunks)  # text streamed before the result
    turn = main.ask_panel.conversations.turns(main.state.stack.key)[0]
    assert turn.status == "done" and turn.question == "spine"
    [item] = main.answer_overlay.items.values()  # 0-1000 grid of a 128 x 128 CT
    assert item.rect().getCoords() == (32.0, 64.0, 96.0, 128.0)
    assert item.box.phrase == "spine"
    assert "spine" in main.ask_panel.chat.toPlainText()
    assert main.ask_panel.ask_button.text() == "Ask"
    assert main.model_status.text().startswith("Model: ready")

    main.ask_panel._hovered(QUrl("box:0:0"))  # hovering the phrase link
    assert main.answer_overlay.items["0:0"].pen().widthF() > 3
    main.canvas.setFocus()
    QTest.keyClick(main.canvas, Qt.Key.Key_A)  # accept as an annotation
    [box] = main.annotations.boxes()
    assert (box.rect, box.source, box.review, box.label) == ((32, 64, 96, 128), Source.MODEL, Review.ACCEPTED, "spine")
    QTest.keyClick(main.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert main.annotations.boxes() == []  # the accept is undoable

    exported = main.ask_panel.conversations.export(main.state.stack.key, main.state.stack.paths)
    text = json.dumps(exported)
    assert exported["turns"][0]["boxes"][0]["x1"] == 32.0 and exported["turns"][0]["model"]["model_id"]
    assert exported["turns"][0]["dialect"] == "qwen2vl" and exported["turns"][0]["frame"] == [1000.0, 1000.0]
    assert "CompressedSamples" not in text and "1CT1" not in text  # no patient name or id


def test_streamed_text_is_shown_once_per_redraw_not_once_per_token(qtbot, ct):
    """A fast model streams hundreds of tokens a second, so the tokens that arrive within one
    redraw interval are shown together; and they are appended where the answer ends, not by
    setting the whole conversation again (which lays all of it out)."""
    main = make_window(qtbot, AssistantSettings())
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    earlier = Turn(question="What is this?", task=Task.FREE.value, box=None, frame=0, window=None, status="done")
    earlier.streamed = "An earlier answer."
    turn = Turn(question="Where is the spine?", task=Task.FREE.value, box=None, frame=0, window=None, job_id=7)
    panel.conversations.turns(main.state.stack.key).extend([earlier, turn])
    panel.refresh()  # as ask() shows the new question
    changes: list[tuple[int, int, int]] = []
    panel.chat.document().contentsChange.connect(lambda at, removed, added: changes.append((at, removed, added)))
    shown: list[int] = []
    panel.answer_updated.connect(shown.append)
    words = ("The ", "spine ", "is ", "in ", "the ", "middle.")
    with qtbot.waitSignal(panel.answer_updated, timeout=5000):
        for word in words:
            panel._on_partial(7, word)  # as the worker's queued partial_text delivers them
        assert "middle" not in panel.chat.toPlainText()
    assert shown == [7] and "The spine is in the middle." in panel.chat.toPlainText()
    assert [(removed, added) for _at, removed, added in changes] == [(0, len("".join(words)))]
    assert "An earlier answer." in panel.chat.toPlainText()
    # finished: the whole answer is rendered as usual (no stream mark left anywhere)
    turn.status = "done"
    panel.refresh()
    assert "The spine is in the middle." in panel.chat.toPlainText() and "\ue000" not in panel.chat.toPlainText()


def test_the_model_is_shown_the_pixels_the_user_sees(qtbot, tiny_folder, scripted, rtdose):
    """Window, invert and frame as the user left them: the job's image is render_rgb of exactly
    that frame in exactly that state, and the same pixels the canvas shows."""
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, device="cpu"))
    open_and_wait(qtbot, main, rtdose)  # 15 grayscale frames
    first_frame, first_window = main.state.frame, main.state.window
    main.canvas.setFocus()
    QTest.keyClick(main.canvas, Qt.Key.Key_Right)  # step a frame
    QTest.keyClick(main.canvas, Qt.Key.Key_I)  # invert
    window = Window(first_window.center - first_window.width / 8, first_window.width / 3)
    main.state.set_window(window)  # what a right-drag ends with
    assert main.state.frame_index == 1 and main.state.invert and main.state.window == window
    submitted = []
    submit = main.service.submit
    main.service.submit = lambda job: submitted.append(job) or submit(job)
    main.ask_panel.set_task(Task.MIA)
    with qtbot.waitSignal(main.ask_panel.answer_finished, timeout=60000):
        QTest.mouseClick(main.ask_panel.ask_button, Qt.MouseButton.LeftButton)
    [job] = submitted
    expected = render_rgb(main.state.frame, window, invert=True)
    np.testing.assert_array_equal(job.image, expected)
    assert job.frame == 1 and job.window == window
    for other in (
        render_rgb(first_frame, window, invert=True),
        render_rgb(main.state.frame, window),
        render_rgb(main.state.frame, first_window, invert=True),
    ):
        assert not np.array_equal(job.image, other)  # each of the three changes mattered
    main.canvas.set_zoom(1.0)
    qtbot.wait_until(lambda: main.canvas.rendered_step == 1 and not main.canvas._render_pending)
    np.testing.assert_array_equal(job.image[..., 0], canvas_pixels(main))


def test_cancel_mid_answer_keeps_no_boxes_and_frees_the_worker(qtbot, ct, tiny_folder, scripted):
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, device="cpu"))
    open_and_wait(qtbot, main, ct)
    scripted["answer"] = "The spine is here " + BOX_ANSWER
    scripted["pause_after"] = 3
    panel = main.ask_panel
    with qtbot.waitSignal(panel.answer_updated, timeout=60000):
        panel.ask("Where is the spine?", Task.FREE, None)
    with qtbot.waitSignal(panel.answer_finished, timeout=20000):
        QTest.mouseClick(panel.ask_button, Qt.MouseButton.LeftButton)  # the button is Cancel now
        scripted["gate"].set()
    turn = panel.conversations.turns(main.state.stack.key)[0]
    assert turn.status == "cancelled" and turn.boxes == () and main.answer_overlay.items == {}
    assert "cancelled" in panel.chat.toPlainText()
    scripted["pause_after"] = None  # the worker takes the next job
    with qtbot.waitSignal(panel.answer_finished, timeout=60000):
        panel.ask("spine", Task.VG, None)
    assert panel.conversations.turns(main.state.stack.key)[1].status == "done"
    assert len(main.answer_overlay.items) == 1


def test_an_error_in_the_worker_shows_in_the_panel_and_the_next_job_runs(qtbot, ct, tiny_folder, tmp_path):
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(not_a_model), max_pixels=TINY_MAX_PIXELS, device="cpu"))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    with qtbot.waitSignal(panel.answer_finished, timeout=60000):
        panel.ask("What is this?", Task.FREE, None)
    turn = panel.conversations.turns(main.state.stack.key)[0]
    assert turn.status == "error" and "config.json" in turn.error
    assert "Error" in panel.chat.toPlainText() and main.model_status.text() == "Model: error"
    from dataclasses import replace

    main.set_assistant_settings(replace(main.assistant_settings, clinkd_dir=str(tiny_folder)))
    with qtbot.waitSignal(panel.answer_finished, timeout=60000):
        panel.ask("What is this?", Task.FREE, None)  # a real (random) answer from the tiny model
    second = panel.conversations.turns(main.state.stack.key)[1]
    assert second.status == "done" and second.result.new_tokens >= 1
    assert second.result.model.max_pixels == TINY_MAX_PIXELS


def test_box_tasks_need_a_box_and_send_the_selected_one(qtbot, ct, tiny_folder, scripted):
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, device="cpu"))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    panel.set_task(Task.ROC)
    assert panel.question.text() == "What anatomical structure is present at the {box}?"
    assert panel.ask(panel.question.text(), Task.ROC, None) is None  # no box: nothing sent
    assert "box" in panel.box_label.text()
    box = main.annotations.add_box(0, 10, 20, 40, 60)
    assert panel.selected_box() == box.rect and "Box prompt" in panel.box_label.text()
    scripted["answer"] = "vertebra"
    with qtbot.waitSignal(panel.answer_finished, timeout=60000):
        panel.ask_or_cancel()
    result = panel.conversations.turns(main.state.stack.key)[0].result
    assert "<|box_start|>(78,156),(313,469)<|box_end|>" in result.question  # the box on the 0-1000 grid


def test_asking_through_an_inference_server(qtbot, ct):
    """The same panel against an OpenAI-compatible server (a stub on 127.0.0.1 speaking the
    chat-completions protocol; its fixed reply stands for the server's answer)."""
    from tests.engine.openai_stub import OpenAIStub, StubBehaviour

    with OpenAIStub(StubBehaviour(answer=lambda body: BOX_ANSWER + "<|im_end|>")) as stub:
        main = make_window(qtbot, AssistantSettings(server_url=stub.url))
        open_and_wait(qtbot, main, ct)
        assert not main.ask_panel.missing.isVisible() and main.model_status.text() == "Model: not loaded yet"
        with qtbot.waitSignal(main.ask_panel.answer_finished, timeout=60000):
            main.ask_panel.ask("spine", Task.VG, None)
        turn = main.ask_panel.conversations.turns(main.state.stack.key)[0]
        assert turn.status == "done" and turn.result.model.model_id == "clinkd-7b"
        [item] = main.answer_overlay.items.values()
        assert item.rect().getCoords() == (32.0, 64.0, 96.0, 128.0)
        assert stub.url in main.model_status.text()
        main.close()


def test_unload_frees_the_model_and_the_next_question_loads_it_again(qtbot, ct, tiny_folder, scripted):
    from app.inference.worker import UnloadJob

    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, device="cpu"))
    open_and_wait(qtbot, main, ct)
    with qtbot.waitSignal(main.ask_panel.answer_finished, timeout=60000):
        main.ask_panel.ask("spine", Task.VG, None)
    assert main.service.worker._clinkd.get("primary") is not None
    states: list[str] = []
    main.service.worker.state.connect(lambda state, _detail: states.append(state))
    main.service.submit(UnloadJob())
    qtbot.wait_until(lambda: main.model_status.text().startswith("Model: not loaded"))
    assert main.service.worker._clinkd.get("primary") is None
    with qtbot.waitSignal(main.ask_panel.answer_finished, timeout=60000):
        main.ask_panel.ask("spine", Task.VG, None)
    assert "loading" in states and main.service.worker._clinkd.get("primary") is not None
