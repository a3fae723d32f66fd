"""Assistant > Pre-annotate… in the window, with the tiny Qwen2-VL through the real worker thread:
proposals pending review with provenance, progress, the review keys, one undo for the whole run,
cancel keeping what is done, pause/resume, the dialog refusing a bad label list, and the
project file that `main.py annotate` writes opening in the window."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.assistant.preannotation import PreannotateDialog, PreannotationBar
from app.inference.settings import AssistantSettings
from engine.annotations import Review, Source
from engine.preannotate import LabelListError, PreannotateSpec, PreTask
from tests.app.test_assistant import make_window
from tests.app.test_progress_bar import PaintCounter
from tests.engine.tiny_qwen import TINY_MAX_PIXELS


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), images / "CT_small.dcm")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (100, 200), dtype=np.uint8)).save(images / f"xray{i}.png")
    return images


def open_folder(qtbot, main, folder) -> None:
    with qtbot.waitSignal(main.load_finished, timeout=20000):
        main.open([str(folder)])
    qtbot.wait_until(lambda: main.state.frame is not None)


def all_boxes(main) -> list:
    out = []
    for stack in main.stacks:
        doc, image_id = main.annotations.document_for(stack)
        out.extend(doc.boxes(image_id))
    return out


def run_and_wait(qtbot, main, spec, **options) -> str:
    with qtbot.waitSignal(main.preannotation.finished, timeout=90000) as blocker:
        assert main.preannotation.start(spec, **options) is not None
    return blocker.args[0]


def test_a_run_proposes_boxes_for_review_and_one_undo_takes_it_back(qtbot, folder, tiny_folder, scripted) -> None:
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS))
    open_folder(qtbot, main, folder)
    assert len(main.stacks) == 4
    progress = []
    main.service.worker.run_progress.connect(lambda _id, p: progress.append((p.images_done, p.images_total)))
    landed_on = set()  # the threads the documents changed on (a document calls its listeners directly)
    for doc in {id(d): d for d, _image in map(main.annotations.document_for, main.stacks)}.values():
        doc.subscribe(lambda _event: landed_on.add(threading.current_thread()))
    summary = run_and_wait(qtbot, main, PreannotateSpec(PreTask.VG, ("spine", "liver")))
    assert "4 of 4 images, 8 boxes" in summary and "0 failed" in summary
    assert landed_on == {threading.main_thread()}  # outcomes land in the documents on the GUI thread
    assert progress[-1] == (4, 4)
    boxes = all_boxes(main)
    assert (
        len(boxes) == 8
        and {b.source for b in boxes} == {Source.MODEL}
        and {b.review for b in boxes} == {Review.PENDING}
    )
    assert {b.label for b in boxes} == {"spine", "liver"}
    ct = next(b for b in boxes if b.sop_instance_uid)  # the CT's boxes are bound to its SOP instance
    assert ct.rect == (32.0, 64.0, 96.0, 128.0)
    assert ct.provenance.question in (
        "Where is the spine located in the image?",
        "Where is the liver located in the image?",
    )
    assert "<|box_start|>(250,500),(750,1000)<|box_end|>" in ct.provenance.answer
    assert ct.provenance.run == main.preannotation.run_id
    assert not main.preannotation.running and "Pre-annotation: 4 of 4" in main.statusBar().currentMessage()

    # review: select the current image's proposals, accept with A
    main.activateWindow()
    main.set_tool(main.tools.tool)
    main.select_all_on_frame()
    QTest.keyClick(main, Qt.Key.Key_A)
    assert {b.review for b in main.annotations.boxes()} == {Review.ACCEPTED}

    # one Ctrl+Z undoes the accept; the next one takes the whole run back on every image
    QTest.keyClick(main, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(main, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert all_boxes(main) == []
    QTest.keyClick(main, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(all_boxes(main)) == 8


def test_needing_review_scope_and_a_whole_image_note(qtbot, folder, tiny_folder, scripted) -> None:
    scripted["answer"] = "A chest radiograph with clear lungs."
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS))
    open_folder(qtbot, main, folder)
    main.annotations.set_image_reviewed(True)  # the current image is done already
    summary = run_and_wait(qtbot, main, PreannotateSpec(PreTask.MIA), only_needing_review=True)
    assert "3 of 3 images" in summary and "3 labels" in summary
    notes = []
    for stack in main.stacks:
        doc, image_id = main.annotations.document_for(stack)
        notes.extend(doc.image_labels(image_id))
    assert len(notes) == 3 and {n.note for n in notes} == {"A chest radiograph with clear lungs."}
    assert {n.label for n in notes} == {"image analysis"} and {n.review for n in notes} == {Review.PENDING}


def test_pause_resume_and_cancel_keeping_what_is_done(qtbot, folder, tiny_folder, scripted) -> None:
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS))
    open_folder(qtbot, main, folder)
    run = main.preannotation
    run.batch_size = 1
    paused_once: list[bool] = []

    def pause_after_the_first_image() -> None:  # run.changed is emitted on the GUI thread
        if run.done >= 1 and not paused_once:
            paused_once.append(True)
            run.toggle_pause()

    run.changed.connect(pause_after_the_first_image)
    run.start(PreannotateSpec(PreTask.MIA))
    qtbot.wait_until(lambda: bool(paused_once), timeout=60000)
    assert (
        run.paused
        and run.status_text().startswith("Paused at ")
        and main.findChild(PreannotationBar).pause_button.text() == "Resume"
    )
    for _ in range(20):  # a question already in flight may still finish (however slow the CPU)
        before = run.done
        qtbot.wait(1500)
        if run.done == before:
            break
    held = run.done
    qtbot.wait(1000)
    assert run.done == held <= 2 and run.running  # nothing new starts while paused
    summaries: list[str] = []  # recorded from now on: on a loaded machine the run may end before cancel
    run.finished.connect(summaries.append)
    run.toggle_pause()  # resume
    qtbot.wait_until(lambda: run.done > held, timeout=60000)
    run.cancel()  # nothing to cancel if the last images finished in the same event-loop turn
    qtbot.wait_until(lambda: bool(summaries), timeout=60000)
    kept = 0
    for stack in main.stacks:
        doc, image_id = main.annotations.document_for(stack)
        kept += len(doc.image_labels(image_id))
    assert kept == run.done  # every finished image kept, nothing of the cut-short one
    if run.done < 4:
        assert "cancelled: what is done is kept" in summaries[0]


def test_a_progress_report_paints_with_the_next_frame_not_on_its_own(qtbot) -> None:
    """QProgressBar.setValue repaints synchronously when the bar moves; the run's bar must not, or each
    report costs the GUI thread a paint outside the event loop (the pre-annotation stall budget is 16 ms)."""
    main = make_window(qtbot, AssistantSettings())
    bar = main.findChild(PreannotationBar)
    counter = PaintCounter()
    bar.bar.installEventFilter(counter)
    run = main.preannotation
    run.job_id, run.total = -1, 10  # how a run in progress looks to its bar; no worker is needed
    run.changed.emit()
    qtbot.wait_until(lambda: bar.isVisible() and counter.paints > 0)
    painted = counter.paints
    run.done = 5
    run.changed.emit()
    assert counter.paints == painted  # nothing painted inside the report's own call
    assert bar.bar.value() == 5 and bar.bar.updatesEnabled()
    qtbot.wait_until(lambda: counter.paints > painted)  # the event loop paints it
    run.job_id = None
    run.changed.emit()
    assert not bar.isVisible()


def test_a_runs_modules_are_imported_with_the_model_not_at_the_runs_start(tiny_folder) -> None:
    """Compiling a module holds the interpreter lock; a run's start must not compile while the window
    shows it. A fresh interpreter, so nothing else has imported them before."""
    code = textwrap.dedent(f"""
        import sys
        from app.inference.worker import _Worker
        from app.inference.settings import AssistantSettings
        worker = _Worker()   # the worker object alone, loading in this thread
        assert "engine.preannotate.job" not in sys.modules
        settings = AssistantSettings(clinkd_dir={str(tiny_folder)!r}, max_pixels={TINY_MAX_PIXELS}, device="cpu")
        worker._load_clinkd(settings)
        print(sorted(name for name in sys.modules if name.startswith("engine.preannotate.")))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'engine.preannotate.job'" in done.stdout and "'engine.preannotate.dispatch'" in done.stdout


def test_the_dialog_refuses_a_bad_label_list(qtbot) -> None:
    configured = AssistantSettings(server_url="http://127.0.0.1:9", clip_model="ViT-B-32:openai")
    dialog = PreannotateDialog(["heart", "lung"], None, 2, 3, "tuberculosis-cxr", settings=configured)
    qtbot.addWidget(dialog)
    assert dialog.start_button.isEnabled() and not dialog.model_row.isVisibleTo(dialog)
    assert dialog.labels.text() == "heart, lung" and "All open images (3)" in dialog.all_images.text()
    dialog.labels.setText("heart,, Heart")
    dialog.accept()
    assert dialog.result() == 0 and "entry 2 is empty" in dialog.error.text() and "duplicated" in dialog.error.text()
    with pytest.raises(LabelListError):
        dialog.spec()
    dialog.task.setCurrentIndex(list(PreTask).index(PreTask.MIA))
    assert not dialog.labels.isEnabled() and dialog.spec().task is PreTask.MIA


def test_the_window_opens_the_project_that_annotate_writes(qtbot, folder, tmp_path) -> None:
    from cli import annotate
    from tests.engine.openai_stub import OpenAIStub, StubBehaviour

    out = tmp_path / "project.json"
    parser = argparse.ArgumentParser()
    annotate.register(parser.add_subparsers(dest="command"))
    answer = "It is at <|box_start|>(100,100),(500,500)<|box_end|>."
    with OpenAIStub(StubBehaviour(answer=lambda body: answer)) as stub:
        args = parser.parse_args(
            ["annotate", str(folder), "--task", "vg", "--labels", "heart", "--server", stub.url, "--out", str(out)]
        )
        assert args.func(args) == 0
    main = make_window(qtbot, AssistantSettings())
    with qtbot.waitSignal(main.load_finished, timeout=20000):
        main.open([str(out)])
    assert len(main.stacks) == 4
    boxes = all_boxes(main)
    assert len(boxes) == 4 and {b.review for b in boxes} == {Review.PENDING} and {b.label for b in boxes} == {"heart"}
    assert main.annotations.document_path() == out.absolute()


def test_kpl_labels_from_the_window_with_the_tiny_clip(qtbot, tmp_path, tmp_path_factory) -> None:
    from tests.engine.tiny_clip import save_tiny_clip_dir, write_image_folder

    clip = save_tiny_clip_dir(tmp_path_factory.mktemp("clip") / "tiny")
    cxr = write_image_folder(tmp_path / "cxr", per_class=3)
    main = make_window(
        qtbot, AssistantSettings(clip_model=f"local-dir:{clip}", knowledge="tuberculosis-cxr", device="cpu")
    )
    open_folder(qtbot, main, cxr)
    summary = run_and_wait(qtbot, main, PreannotateSpec(PreTask.KPL, knowledge="tuberculosis-cxr"))
    assert "6 of 6 images" in summary and "6 labels" in summary
    labels = []
    for stack in main.stacks:
        doc, image_id = main.annotations.document_for(stack)
        labels.extend(doc.image_labels(image_id))
    assert len(labels) == 6 and {a.source for a in labels} == {Source.CLASSIFIER}
    assert {a.review for a in labels} == {Review.PENDING} and all(a.note and a.score is not None for a in labels)
    from engine.kpl import resolve_knowledge

    assert {a.label for a in labels} <= set(resolve_knowledge("tuberculosis-cxr").class_names)
    assert labels[0].provenance.task == "kpl"


def test_without_a_model_start_is_disabled_and_the_dialog_says_what_is_missing(qtbot, tmp_path) -> None:
    """No weights configured: Start is off, the dialog names the missing weights and offers
    Choose model…, which (after the settings are chosen) turns Start on without closing."""
    chosen = []

    def choose_model() -> AssistantSettings:
        chosen.append(True)
        return AssistantSettings(clinkd_dir=str(tmp_path))

    dialog = PreannotateDialog(
        ["heart"], None, 1, 1, "tuberculosis-cxr", settings=AssistantSettings(), choose_model=choose_model
    )
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.start_button.isEnabled()
    assert dialog.model_note.isVisible() and "Qwen2-VL weights" in dialog.model_note.text()
    assert "Choose model…" in dialog.model_note.text() and dialog.choose_button.isVisible()
    dialog.accept()  # Enter does not start a run bound to fail either
    assert dialog.result() == 0 and dialog.isVisible()
    dialog.task.setCurrentIndex(list(PreTask).index(PreTask.KPL))
    assert not dialog.start_button.isEnabled() and "CLIP model" in dialog.model_note.text()
    dialog.task.setCurrentIndex(list(PreTask).index(PreTask.VG))
    QTest.mouseClick(dialog.choose_button, Qt.MouseButton.LeftButton)
    assert chosen and dialog.start_button.isEnabled() and not dialog.model_note.isVisible()
    dialog.grab().save(str(tmp_path / "dialog.png"))


def test_the_window_offers_pre_annotate_without_starting_when_no_model_is_set(qtbot, folder, monkeypatch) -> None:
    """Assistant > Pre-annotate on a window without weights: the dialog opens with Start disabled;
    nothing is submitted and nothing is written to the status bar."""
    main = make_window(qtbot, AssistantSettings())
    open_folder(qtbot, main, folder)
    seen = []

    def fake_exec(dialog) -> int:
        seen.append((dialog.start_button.isEnabled(), dialog.model_note.text()))
        return 0

    monkeypatch.setattr(PreannotateDialog, "exec", fake_exec)
    action = next(a for a in main.menuBar().actions() if a.text() == "&Assistant")
    pre = next(a for a in action.menu().actions() if a.text().startswith("&Pre-annotate"))
    pre.trigger()
    assert seen and seen[0][0] is False and "weights" in seen[0][1]
    assert not main.preannotation.running and main.statusBar().currentMessage() == ""


def test_a_model_that_fails_to_load_is_reported_in_the_red_strip_with_its_reason(qtbot, folder, tmp_path) -> None:
    """The failed run's summary once went to one status-bar line that ran into "Model: error"."""
    damaged = tmp_path / "damaged-model"
    damaged.mkdir()
    (damaged / "config.json").write_text('{"model_type": "no_such_architecture", "architectures": ["Nope"]}')
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(damaged), max_pixels=TINY_MAX_PIXELS))
    open_folder(qtbot, main, folder)
    summary = run_and_wait(qtbot, main, PreannotateSpec(PreTask.VG, ("spine",)))
    assert "0 of 4 images" in summary
    text = main.banner.label.text()
    assert main.banner.isVisible() and text.startswith("Pre-annotation stopped: ")
    reason = text.split("\n")[0].removeprefix("Pre-annotation stopped: ")
    assert "damaged-model is missing: model weights" in reason
    assert text.endswith(summary)
    assert main.statusBar().currentMessage() == ""  # nothing runs into the permanent "Model: …" label
    assert main.model_status.text() == "Model: error"
    assert main.grab().save(str(tmp_path / "preannotate-failed.png"))
