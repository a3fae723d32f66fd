"""Second opinion: two configured models asked the same question, through the real worker and loader.

Both models are the tiny random Qwen2-VL under two folder names; the ``scripted`` fixture's
``by_model`` gives each its own tokens, so the boxes (and so their IoU) are known from the scripts.
The expected IoU is worked out here from the scripted grid numbers (IoU does not change when each
axis is scaled from the 0-1000 grid to pixels), never read back from the implementation.
"""

from __future__ import annotations

import argparse
import itertools
import threading

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtTest import QTest

from app.assistant.answer_overlay import AnswerItem
from app.assistant.conversation import Conversations, Turn
from app.inference.settings import AssistantSettings
from cli import annotate as cli
from engine.annotations import Source, load_document
from engine.clinkd import Task
from engine.preannotate import PreannotateSpec, PreTask, log_path, read_log
from tests.app.conftest import BOX_ANSWER
from tests.app.test_assistant import make_window, open_and_wait
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS

FIRST_GRID = (250, 500, 750, 1000)  # BOX_ANSWER's spine
OTHER_GRID = (500, 500, 1000, 1000)
OTHER_ANSWER = "<|object_ref_start|>spine<|object_ref_end|><|box_start|>(500,500),(1000,1000)<|box_end|>"
NO_BOX = "Nothing of the kind is visible."


def grid_iou(a, b) -> float:
    """Overlap area over union area of two (x1, y1, x2, y2) grid boxes, written out by hand."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0) * max(height, 0)
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def settings(first, second=None) -> AssistantSettings:
    return AssistantSettings(
        clinkd_dir=str(first), second_dir=str(second or ""), max_pixels=TINY_MAX_PIXELS, device="cpu"
    )


def test_without_a_second_model_the_toggle_says_which_setting_to_fill(qtbot, ct, tiny_folder) -> None:
    main = make_window(qtbot, settings(tiny_folder))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    assert not panel.second_button.isEnabled() and not panel.second_opinion
    assert "Assistant > Settings > Second opinion" in panel.second_button.toolTip()


def test_both_answers_side_by_side_with_both_box_sets_and_their_iou(
    qtbot, ct, tiny_folder, second_folder, scripted, tmp_path
) -> None:
    scripted["by_model"] = {second_folder.name: OTHER_ANSWER}
    main = make_window(qtbot, settings(tiny_folder, second_folder))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    assert panel.second_button.isEnabled()
    QTest.mouseClick(panel.second_button, Qt.MouseButton.LeftButton)
    assert panel.second_opinion
    panel.set_task(Task.VG)
    panel.question.setText("spine")
    with qtbot.waitSignal(panel.answer_finished, timeout=90000) as finished:
        QTest.mouseClick(panel.ask_button, Qt.MouseButton.LeftButton)
    first, second = panel.conversations.turns(main.state.stack.key)
    assert finished.args == [first.job_id]  # the pair is finished when both answers are
    assert (first.model, second.model, second.second_of) == ("primary", "second", 0)
    assert first.result.model.model_id == tiny_folder.name and second.result.model.model_id == second_folder.name
    expected = grid_iou(FIRST_GRID, OTHER_GRID)

    # the chat: two labelled columns, and the pair's IoU
    text = panel.chat.toPlainText()
    assert f"A · {tiny_folder.name}" in text and f"B · {second_folder.name}" in text
    assert f"IoU {expected:.2f} (disagree)" in text
    assert panel.chat.toHtml().count("<td") >= 2

    # the image: both box sets, the second dotted and lettered B with the IoU
    items = {item.box.key: item for item in main.canvas.scene().items() if isinstance(item, AnswerItem)}
    assert set(items) == {"0:0", "1:0"}
    width = main.state.stack.columns
    assert items["0:0"].box.x1 == pytest.approx(FIRST_GRID[0] / 1000 * width)
    assert items["1:0"].box.x1 == pytest.approx(OTHER_GRID[0] / 1000 * width)
    assert items["0:0"].pen().style() == Qt.PenStyle.DashDotLine and items["1:0"].pen().style() == Qt.PenStyle.DotLine
    assert items["0:0"].box.caption == "A · spine"
    assert items["1:0"].box.caption == f"B · spine · IoU {expected:.2f}"

    # either answer's box is accepted and segmented like a single answer's
    segmented = []
    panel.segment_requested.connect(lambda frame, rect, phrase: segmented.append((frame, rect, phrase)))
    panel._clicked(QUrl("segment:1:0"))
    assert segmented and segmented[0][1][0] == pytest.approx(OTHER_GRID[0] / 1000 * width)
    panel._hovered(QUrl("box:1:0"))
    assert panel.accept_highlighted()
    accepted = main.annotations.boxes(main.state.frame_index)
    assert [b.x1 for b in accepted] == [pytest.approx(OTHER_GRID[0] / 1000 * width)]
    assert accepted[0].source is Source.MODEL
    panel.grab().save(str(tmp_path / "second-opinion-panel.png"))
    main.grab().save(str(tmp_path / "second-opinion-window.png"))

    # a follow-up carries the conversation with the first model only
    history = panel.history()
    assert len(history) == 1 and history[0].answer == first.result.raw_text


def test_regenerate_asks_both_models_again(qtbot, ct, tiny_folder, second_folder, scripted) -> None:
    scripted["by_model"] = {second_folder.name: OTHER_ANSWER}
    main = make_window(qtbot, settings(tiny_folder, second_folder))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    with qtbot.waitSignal(panel.answer_finished, timeout=90000):
        panel.ask("spine", Task.VG, None, second=True)
    panel.second_button.setChecked(False)
    with qtbot.waitSignal(panel.answer_finished, timeout=90000):
        panel.regenerate()
    turns = panel.conversations.turns(main.state.stack.key)
    assert [t.model for t in turns] == ["primary", "second", "primary", "second"] and turns[3].second_of == 2


def test_history_leaves_second_opinions_out() -> None:
    conversations = Conversations()
    turns = conversations.turns("image")
    for model in ("primary", "second"):
        turn = Turn("q", "free", None, 0, None, model=model, status="done")
        turn.result = type("Result", (), {"question": f"{model} question", "raw_text": f"{model} answer"})()
        turns.append(turn)
    assert [t.answer for t in conversations.history("image", 0)] == ["primary answer"]


@pytest.fixture
def pngs(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (100, 200), dtype=np.uint8)).save(images / f"xray{i}.png")
    return images


def second_series():
    """The second model's answers, image by image: agrees on the first, a far box on the second,
    nothing on the third (a label only the first model found)."""
    answers = itertools.cycle([BOX_ANSWER, OTHER_ANSWER, NO_BOX])
    return lambda: next(answers)


def test_pre_annotation_reviews_the_images_the_models_disagree_on_first(
    qtbot, pngs, tiny_folder, second_folder, scripted
) -> None:
    scripted["by_model"] = {second_folder.name: second_series()}
    main = make_window(qtbot, settings(tiny_folder, second_folder))
    with qtbot.waitSignal(main.load_finished, timeout=20000):
        main.open([str(pngs)])
    titles = [s.title for s in main.stacks]
    assert titles == ["xray0.png", "xray1.png", "xray2.png"]
    run = main.preannotation
    run.batch_size = 1  # one image per generate() call: the second model's series follows the images
    with qtbot.waitSignal(run.finished, timeout=120000) as finished:
        run.start(PreannotateSpec(PreTask.VG, ("spine",), max_new_tokens=40), second_opinion=True)
    assert "disagree on 2 image(s)" in finished.args[0]
    assert [s.title for s in main.stacks] == ["xray1.png", "xray2.png", "xray0.png"]
    texts = [main.image_list.item(r).text() for r in range(3)]
    assert texts[0].startswith("≠ ") and texts[1].startswith("≠ ") and not texts[2].startswith("≠ ")
    assert f"spine: found by {tiny_folder.name} only" in main.image_list.item(1).toolTip()
    expected = grid_iou(FIRST_GRID, OTHER_GRID)
    assert f"spine: IoU {expected:.2f}" in main.image_list.item(0).toolTip()
    # both models' boxes are proposals, each with its own model in the provenance
    doc, image_id = main.annotations.document_for(main.stacks[2])
    assert sorted(b.provenance.model for b in doc.boxes(image_id)) == sorted([tiny_folder.name, second_folder.name])
    doc, image_id = main.annotations.document_for(main.stacks[0])
    assert any("second opinion: spine: IoU" in b.note for b in doc.boxes(image_id))
    # N walks the flagged images first
    main.image_list.setCurrentRow(0)
    main.step_image(1)
    assert main.state.stack.title == "xray2.png"


def test_the_annotate_command_takes_a_second_model(pngs, tmp_path, tiny_folder, second_folder, scripted, capsys):
    scripted["by_model"] = {second_folder.name: second_series()}
    out = tmp_path / "project.json"
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    argv = ["annotate", str(pngs), "--task", "vg", "--labels", "spine", "--model", str(tiny_folder)]
    argv += ["--second-model", str(second_folder), "--batch-size", "1", "--device", "cpu", "--out", str(out)]
    argv += ["--min-pixels", str(TINY_MIN_PIXELS), "--max-pixels", str(TINY_MAX_PIXELS), "--max-new-tokens", "40"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "the models disagree on 2 image(s)" in printed and "xray1.png, xray2.png" in printed
    doc = load_document(out)
    assert [ref.title for ref in doc.images] == ["xray1.png", "xray2.png", "xray0.png"]  # reviewed first
    records = read_log(log_path(out))
    assert sorted((r["title"], r["disagree"]) for r in records) == [
        ("xray0.png", False),
        ("xray1.png", True),
        ("xray2.png", True),
    ]
    # another task refuses a second opinion before anything runs
    args = parser.parse_args([*argv[:2], "--task", "mia", *argv[6:]])
    assert args.func(args) == 2
    assert "--task vg" in capsys.readouterr().err


def test_the_pre_annotate_dialog_offers_a_second_opinion_for_grounding_only(qtbot, tiny_folder, second_folder) -> None:
    from app.assistant.preannotation import PreannotateDialog

    dialog = PreannotateDialog(["spine"], None, 1, 1, "tuberculosis-cxr", settings=settings(tiny_folder, second_folder))
    qtbot.addWidget(dialog)
    dialog.task.setCurrentIndex(dialog.task.findData(PreTask.VG))
    assert dialog.second_opinion.isEnabled()
    dialog.task.setCurrentIndex(dialog.task.findData(PreTask.MIA))
    assert not dialog.second_opinion.isEnabled()
    alone = PreannotateDialog(["spine"], None, 1, 1, "tuberculosis-cxr", settings=settings(tiny_folder))
    qtbot.addWidget(alone)
    assert not alone.second_opinion.isEnabled() and "Second opinion" in alone.second_opinion.toolTip()


class TakingTurns:
    """Paces two scripted streams in lockstep: before its token k a model waits until the other has
    put k tokens too (or finished). The two answers can only complete if they are generated at the
    same time; one after the other, the first would wait here in vain."""

    def __init__(self, first: str, second: str) -> None:
        self.condition = threading.Condition()
        self.put = {first: -1, second: -1}  # tokens each model has put; -1 until it starts generating
        self.done: set[str] = set()

    def __call__(self, name: str, step: int | None) -> None:
        with self.condition:
            if step is None:
                self.done.add(name)
            else:
                self.put[name] = step
            self.condition.notify_all()
            if step is None:
                return
            other = next(n for n in self.put if n != name)
            caught_up = lambda: other in self.done or self.put[other] >= step  # noqa: E731
            assert self.condition.wait_for(caught_up, 20), f"{name} streamed alone: {other} was not generating"


class Arrivals(QObject):
    """The worker's step and result signals in the order the GUI thread receives them: slots of an
    object living on the GUI thread are queued there from either generating thread (a lambda would
    be called on the emitting thread, or queued behind the running job)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int]] = []

    @Slot(int, int, float)
    def step(self, job_id: int, _steps: int, _seconds: float) -> None:
        self.events.append(("step", job_id))

    @Slot(int, object)
    def result(self, job_id: int, _result: object) -> None:
        self.events.append(("result", job_id))


SPOKEN = "The spine is in the middle of the image " + BOX_ANSWER  # words stream before the box
OTHER_SPOKEN = "A spine lies lower down in this slice " + OTHER_ANSWER


def test_the_two_answers_stream_at_the_same_time(qtbot, ct, tiny_folder, second_folder, scripted) -> None:
    scripted["answer"] = SPOKEN
    scripted["by_model"] = {second_folder.name: OTHER_SPOKEN}
    scripted["pace"] = TakingTurns(tiny_folder.name, second_folder.name)
    main = make_window(qtbot, settings(tiny_folder, second_folder))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    main.service.worker.stream_interval_s = 0  # every token goes to the GUI: the test follows them one by one
    arrivals = Arrivals()
    main.service.worker.steps.connect(arrivals.step)
    main.service.worker.result.connect(arrivals.result)
    with qtbot.waitSignal(panel.answer_finished, timeout=90000):
        first_id = panel.ask("Where is the spine?", Task.FREE, None, second=True)
    first, second = panel.conversations.turns(main.state.stack.key)
    assert (first.job_id, second.job_id) == (first_id, first_id + 1)
    assert first.status == second.status == "done", (first.error, second.error)
    events = arrivals.events
    steps = [job_id for kind, job_id in events if kind == "step"]
    # the columns' tokens reach the GUI interleaved: neither stream ran more than a token ahead
    switches = sum(a != b for a, b in itertools.pairwise(steps))
    shorter = min(steps.count(first.job_id), steps.count(second.job_id))
    assert shorter > 10 and switches >= shorter
    # both columns were streaming before either answer was finished
    first_result = next(i for i, (kind, _id) in enumerate(events) if kind == "result")
    assert {job_id for _kind, job_id in events[:first_result]} == {first.job_id, second.job_id}
    assert first.result.text.startswith("The spine") and second.result.text.startswith("A spine")
    assert len(first.boxes) == len(second.boxes) == 1
    text = panel.chat.toPlainText()
    assert "The spine is in the middle" in text and "A spine lies lower down" in text


def test_cancel_stops_both_answers(qtbot, ct, tiny_folder, second_folder, scripted) -> None:
    scripted["answer"] = SPOKEN
    scripted["by_model"] = {second_folder.name: OTHER_SPOKEN}
    scripted["pause_after"] = 4  # both models wait here until the gate opens
    main = make_window(qtbot, settings(tiny_folder, second_folder))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    arrivals = Arrivals()
    main.service.worker.steps.connect(arrivals.step)
    panel.ask("Where is the spine?", Task.FREE, None, second=True)
    first, second = panel.conversations.turns(main.state.stack.key)
    both = {first.job_id, second.job_id}
    qtbot.wait_until(lambda: {job_id for _kind, job_id in arrivals.events} == both, timeout=60000)  # both generating
    assert panel.ask_button.text() == "Cancel"
    with qtbot.waitSignal(panel.answer_finished, timeout=20000):
        QTest.mouseClick(panel.ask_button, Qt.MouseButton.LeftButton)
        scripted["gate"].set()
    assert first.status == second.status == "cancelled"
    assert first.boxes == second.boxes == () and main.answer_overlay.items == {}
    assert panel.chat.toPlainText().count("cancelled") == 2
    assert panel.running_job is None and panel.ask_button.text() == "Ask"


def test_one_model_failing_leaves_the_other_answer(qtbot, ct, tiny_folder, second_folder, scripted) -> None:
    def fail_midway(name: str, step: int | None) -> None:
        if name == second_folder.name and step == 3:
            raise RuntimeError("the second model stopped mid-answer")

    scripted["pace"] = fail_midway
    main = make_window(qtbot, settings(tiny_folder, second_folder))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    with qtbot.waitSignal(panel.answer_finished, timeout=90000):
        panel.ask("spine", Task.VG, None, second=True)
    first, second = panel.conversations.turns(main.state.stack.key)
    assert first.status == "done" and len(first.boxes) == 1
    assert second.status == "error" and "stopped mid-answer" in second.error
    text = panel.chat.toPlainText()
    assert "Error: the second model stopped mid-answer" in text and "spine" in text
    assert [item.box.key for item in main.answer_overlay.items.values()] == ["0:0"]


def test_a_second_model_that_cannot_load_shows_its_error_in_its_column(
    qtbot, ct, tiny_folder, scripted, tmp_path
) -> None:
    broken = tmp_path / "broken-second"
    broken.mkdir()
    main = make_window(qtbot, settings(tiny_folder, broken))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    with qtbot.waitSignal(panel.answer_finished, timeout=90000):
        panel.ask("spine", Task.VG, None, second=True)
    first, second = panel.conversations.turns(main.state.stack.key)
    assert first.status == "done" and len(first.boxes) == 1
    assert second.status == "error" and "config.json" in second.error


def test_two_servers_stream_their_answers_at_the_same_time(qtbot, ct) -> None:
    """Against two inference servers (stubs on 127.0.0.1 speaking the chat-completions protocol):
    each stalls after its first streamed delta until the test releases it, so both columns can have
    text at once only if the two requests are in flight together."""
    from tests.engine.openai_stub import OpenAIStub, StubBehaviour

    release = threading.Event()
    first_stub = StubBehaviour(answer=lambda body: "The spine is central " + BOX_ANSWER, stall=release)
    second_stub = StubBehaviour(answer=lambda body: "A spine lies low " + OTHER_ANSWER, stall=release)
    with OpenAIStub(first_stub) as one, OpenAIStub(second_stub) as two:
        main = make_window(qtbot, AssistantSettings(server_url=one.url, second_server_url=two.url))
        open_and_wait(qtbot, main, ct)
        panel = main.ask_panel
        arrivals = Arrivals()
        main.service.worker.steps.connect(arrivals.step)
        try:
            panel.ask("spine", Task.VG, None, second=True)
            first, second = panel.conversations.turns(main.state.stack.key)
            both = {first.job_id, second.job_id}
            qtbot.wait_until(lambda: {job_id for _kind, job_id in arrivals.events} == both, timeout=20000)
        finally:
            release.set()
        qtbot.wait_until(lambda: panel.running_job is None, timeout=20000)
        assert first.status == second.status == "done"
        assert len(first.boxes) == len(second.boxes) == 1
        assert first.result.text.startswith("The spine") and second.result.text.startswith("A spine")
        main.close()
