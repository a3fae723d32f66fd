"""Pre-annotation at scale: label lists, replicas with one failing (loopback stubs), the CLI run, its
resume and Ctrl-C, failures per image, the tasks' proposals with provenance, undo of a whole run,
and local batches through the tiny Qwen2-VL.

The stub servers' answers are fixed text standing for a server's answer: the tests check the
plumbing (what is asked, where the answers land, what is recorded), never a model's words.
"""

from __future__ import annotations

import _thread
import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli import annotate as cli
from engine.annotations import AnnotationDocument, Box, Review, Source, load_document
from engine.clinkd import (
    AskRequest,
    GenerationSettings,
    LoadSettings,
    LocalBackend,
    ServerError,
    ServerSettings,
    ServerUnavailable,
    Task,
    load_model,
    open_server,
)
from engine.imaging import open_paths
from engine.preannotate import (
    DONE,
    FAILED,
    LabelListError,
    LocalDispatcher,
    PreannotateSpec,
    PreTask,
    ReplicaDispatcher,
    apply_outcome,
    check_labels,
    load_log,
    log_path,
    proposed_label,
    read_log,
    run_preannotation,
    split_labels,
)
from engine.preannotate.job import ImageWork
from tests.engine.openai_stub import OpenAIStub, StubBehaviour
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint


def grounding_answer(body: dict) -> str:
    question = body["messages"][-1]["content"][-1]["text"]
    if "left lung" in question:
        return "The left lung is located at <|box_start|>(100,200),(500,600)<|box_end|>."
    return "It is at <|box_start|>(0,0),(250,500)<|box_end|> and <|box_start|>(500,500),(1000,1000)<|box_end|>."


def write_images(folder: Path, n: int = 5, *, broken: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 80), dtype=np.uint8)).save(folder / f"img{i}.png")
    if broken:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return folder


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["annotate", *argv])
    return args.func(args)


# ------------------------------------------------------------------ label lists


def test_label_lists_with_empty_or_duplicate_names_are_one_clear_error() -> None:
    assert check_labels([" left lung", "heart "]) == ("left lung", "heart")
    assert split_labels("left lung, heart\nspine") == ["left lung", " heart", "spine"]
    with pytest.raises(LabelListError) as caught:
        check_labels(split_labels("heart,,Heart ,spine,"))
    message = str(caught.value)
    assert "entry 2, 5 are empty" in message and "duplicated: 'Heart'" in message and "Nothing was run" in message
    with pytest.raises(LabelListError, match="it is empty"):
        PreannotateSpec(PreTask.VG, ())
    assert PreannotateSpec(PreTask.MIA, ("ignored",)).labels == ()
    with pytest.raises(ValueError, match="knowledge base"):
        PreannotateSpec(PreTask.KPL)
    a, b = PreannotateSpec(PreTask.VG, ("heart",)), PreannotateSpec(PreTask.VG, ("heart",), max_new_tokens=40)
    assert a.key("m") == PreannotateSpec(PreTask.VG, (" heart",)).key("m") != b.key("m") != a.key("other")


def test_cli_refuses_a_bad_label_list_before_anything_runs(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images", 1, broken=False)
    out = tmp_path / "project.json"
    with OpenAIStub() as stub:
        code = run_cli(str(images), "--task", "vg", "--labels", "heart,,heart", "--server", stub.url, "--out", str(out))
        assert stub.behaviour.requests == []
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err.count("error:") == 1


def test_proposed_labels_come_from_the_first_line() -> None:
    assert proposed_label("Pneumothorax.\nMore text") == "Pneumothorax"
    assert proposed_label("  ") == ""
    assert len(proposed_label("x" * 200)) == 80


# ------------------------------------------------------------------ the CLI run, replicas, resume


def test_cli_run_over_two_replicas_with_one_failing_then_resume(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images")
    out = tmp_path / "project.json"
    good_behaviour = StubBehaviour(answer=grounding_answer)
    down = StubBehaviour(answer=grounding_answer, status=503, error_message="replica restarting")
    with OpenAIStub(good_behaviour) as good, OpenAIStub(down) as bad:
        argv = [
            str(images),
            "--task",
            "vg",
            "--labels",
            "left lung,heart",
            "--server",
            bad.url,
            "--server",
            good.url,
            "--concurrency",
            "2",
            "--out",
            str(out),
        ]
        assert run_cli(*argv) == 0
        printed = capsys.readouterr()
        assert len(good_behaviour.requests) == 10  # 5 images x 2 labels, all answered by the good replica
        assert printed.err.count(f"the inference server {bad.url} stopped answering") == 1
        assert "replica restarting" in printed.err
        assert "images: 6 of 6 annotated" in printed.out and "questions: 10" in printed.out
        assert "boxes proposed: 15" in printed.out and "failures: 1" in printed.out
        assert "failed: broken.png: cannot be opened" in printed.out

        doc = load_document(out)
        assert len(doc.images) == 5  # the broken file is a failure, not an image
        boxes = [b for ref in doc.images for b in doc.boxes(ref.image_id)]
        assert len(boxes) == 15
        assert {b.source for b in boxes} == {Source.MODEL} and {b.review for b in boxes} == {Review.PENDING}
        lung = next(b for b in boxes if b.label == "left lung")
        assert lung.rect == pytest.approx((8.0, 8.0, 40.0, 24.0))  # 0-1000 grid of an 80 x 40 image
        assert lung.provenance.question == "Where is the left lung located in the image?"
        assert lung.provenance.answer == grounding_answer({"messages": [{"content": [{"text": "left lung"}]}]})
        assert lung.provenance.model == "clinkd-7b" and lung.provenance.task == "vg"
        assert json.loads(lung.provenance.settings)["labels"] == ["left lung", "heart"]
        assert lung.provenance.window.startswith("as displayed")
        records = read_log(log_path(out))
        assert sorted(r["status"] for r in records) == [DONE] * 5 + [FAILED]

        # rerun: the done images are skipped, the broken one is tried again
        assert run_cli(*argv) == 0
        assert len(good_behaviour.requests) == 10
        printed = capsys.readouterr()
        assert "5 skipped, already done" in printed.out and "images: 1 of 1 annotated" in printed.out
        assert sum(len(load_document(out).boxes(r.image_id)) for r in load_document(out).images) == 15

        # other settings are another run: --limit takes a few images at a time
        other = [str(images), "--task", "vg", "--labels", "heart", "--server", good.url, "--out", str(out)]
        assert run_cli(*other, "--limit", "2") == 0
        assert len(good_behaviour.requests) == 12
        assert run_cli(*other) == 0
        assert len(good_behaviour.requests) == 15
    assert sum(len(load_document(out).boxes(r.image_id)) for r in load_document(out).images) == 25


def test_no_replica_answering_fails_and_keeps_what_is_done(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images", 3, broken=False)
    out = tmp_path / "project.json"
    with OpenAIStub(StubBehaviour(status=503)) as a, OpenAIStub(StubBehaviour(status=502)) as b:
        code = run_cli(str(images), "--task", "mia", "--server", a.url, "--server", b.url, "--out", str(out))
    err = capsys.readouterr().err
    assert code == 1 and "No inference server answers any more" in err
    assert err.count("stopped answering") == 2
    # a replica down from the start is left out with a warning
    with OpenAIStub() as closed:
        url = closed.url
    with OpenAIStub(StubBehaviour(answer=lambda body: "A chest X-ray.")) as good:
        assert run_cli(str(images), "--task", "mia", "--server", url, "--server", good.url, "--out", str(out)) == 0
    printed = capsys.readouterr()
    assert "connection refused" in printed.err and "This server is left out" in printed.err
    doc = load_document(out)
    notes = [a for ref in doc.images for a in doc.image_labels(ref.image_id)]
    assert [n.label for n in notes] == ["image analysis"] * 3 and notes[0].note == "A chest X-ray."
    assert notes[0].source is Source.MODEL and notes[0].review is Review.PENDING


class _FailingReplica:
    """A replica that goes down on its first question, after ``wait_for`` is set (then at once)."""

    def __init__(self, url: str, went_down: threading.Event, wait_for: threading.Event | None = None) -> None:
        self.settings = ServerSettings(url)
        self.went_down, self.wait_for = went_down, wait_for

    def ask(self, request, settings, cancel=None):
        if self.wait_for is not None:
            self.wait_for.wait(10)
        self.went_down.set()
        raise ServerUnavailable(f"{self.settings.url} refused the connection")


def test_replicas_going_down_together_are_each_reported_before_the_run_fails() -> None:
    """The second replica fails while the run is still reporting the first: it must get its own
    warning and its reason in the final error, not be lost because it was already marked down."""
    first_warned, second_down = threading.Event(), threading.Event()
    replicas = [
        _FailingReplica("http://127.0.0.1:9", threading.Event()),
        _FailingReplica("http://127.0.0.1:10", second_down, wait_for=first_warned),
    ]
    warnings: list[str] = []

    def on_warning(text: str) -> None:
        warnings.append(text)
        if len(warnings) == 1:
            first_warned.set()
            second_down.wait(10)
            time.sleep(0.05)  # the second replica's thread marks itself down meanwhile

    dispatcher = ReplicaDispatcher(replicas, GenerationSettings(), 1, on_warning=on_warning)
    requests = ((n, AskRequest(np.zeros((8, 8, 3), np.uint8), "", Task.MIA)) for n in range(3))
    with pytest.raises(ServerError) as raised:
        list(dispatcher.answers(requests))
    assert len(warnings) == 2 and sorted(dispatcher.down) == [0, 1]
    assert "127.0.0.1:9" in str(raised.value) and "127.0.0.1:10" in str(raised.value)


def test_failed_questions_are_recorded_per_image_and_the_run_goes_on(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images", 2, broken=False)
    out = tmp_path / "project.json"
    with OpenAIStub(StubBehaviour(status=500, error_message="CUDA out of memory")) as stub:
        code = run_cli(str(images), "--task", "vg", "--labels", "heart", "--server", stub.url, "--out", str(out))
        assert len(stub.behaviour.requests) == 2  # both images were asked
    printed = capsys.readouterr().out
    assert code == 1  # every image failed
    assert printed.count("CUDA out of memory") == 2 and "failures: 2" in printed


def test_ctrl_c_keeps_what_is_done_and_a_rerun_finishes(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images", 6, broken=False)
    out = tmp_path / "project.json"
    asked = []

    def answer(body: dict) -> str:
        asked.append(body)
        if len(asked) == 3:
            _thread.interrupt_main()  # the user presses Ctrl-C while the third question is answered
        return "Normal."

    with OpenAIStub(StubBehaviour(answer=answer)) as stub:
        argv = [str(images), "--task", "mia", "--server", stub.url, "--concurrency", "1", "--out", str(out)]
        assert run_cli(*argv) == 130
        printed = capsys.readouterr()
        assert "interrupted: what is done is kept" in printed.err
        kept = sum(len(load_document(out).image_labels(r.image_id)) for r in load_document(out).images)
        assert 1 <= kept < 6
        assert run_cli(*argv) == 0
    doc = load_document(out)
    assert sorted(len(doc.image_labels(r.image_id)) for r in doc.images) == [1] * 6  # no duplicates


def test_a_damaged_run_log_is_reported_once_and_the_run_resumes_from_what_was_recovered(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images", 4, broken=False)
    out = tmp_path / "project.json"
    log = log_path(out)
    behaviour = StubBehaviour(answer=grounding_answer)
    with OpenAIStub(behaviour) as stub:
        argv = [str(images), "--task", "vg", "--labels", "heart", "--server", stub.url, "--out", str(out)]
        assert run_cli(*argv) == 0
        lines = log.read_bytes().splitlines(keepends=True)
        assert len(lines) == 4 and len(behaviour.requests) == 4
        # record 2 has bad UTF-8, record 3 was torn with record 4 glued after it (an older ClinLens),
        # and a fifth write died half-way: records 1 and 4 survive
        log.write_bytes(lines[0] + b'{"image_id": "\xff\xfe"}\n' + lines[2][:30] + lines[3] + lines[1][:25])
        capsys.readouterr()
        assert run_cli(*argv) == 0
        printed = capsys.readouterr()
        notes = [n for n in printed.err.splitlines() if n.startswith("note:")]
        assert len(notes) == 1 and "project.json.preannotation.jsonl is damaged (line 2 is not UTF-8 text" in notes[0]
        assert "and 2 more damaged line(s)); the 2 readable record(s) are used" in notes[0]
        assert "the run resumes from what was recovered" in notes[0]
        assert len(behaviour.requests) == 6  # the two images whose records were lost, nothing else
        assert "2 skipped, already done" in printed.out
    after = load_log(log)
    assert after.problems == [] and len(after.records) == 4 and {r["status"] for r in after.records} == {DONE}
    assert len(list(tmp_path.glob("project.json.preannotation.jsonl.damaged-*"))) == 1


def test_an_empty_run_log_is_an_empty_history(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images", 2, broken=False)
    out = tmp_path / "project.json"
    log_path(out).write_bytes(b"")
    with OpenAIStub(StubBehaviour(answer=grounding_answer)) as stub:
        assert run_cli(str(images), "--task", "vg", "--labels", "heart", "--server", stub.url, "--out", str(out)) == 0
    assert "note:" not in capsys.readouterr().err
    assert load_log(log_path(out)) == load_log(log_path(out)) and len(read_log(log_path(out))) == 2


# ------------------------------------------------------------------ the engine job


def _works(folder: Path) -> list[ImageWork]:
    return [ImageWork.of(stack) for stack in open_paths([str(folder)]).stacks]


def test_what_is_here_relabels_existing_boxes_as_proposals_and_undo_removes_the_run(tmp_path) -> None:
    images = write_images(tmp_path / "images", 3, broken=False)
    doc = AnnotationDocument()
    works = []
    for work in _works(images):
        doc.add_image(work.ref)
        box = doc.new_box(work.ref.image_id, 0, 4, 4, 20, 20, "finding")
        from engine.annotations import AddAnnotations

        doc.execute(AddAnnotations(work.ref.image_id, [box]))
        works.append(ImageWork(work.stack, work.ref, (box,)))
    spec = PreannotateSpec(PreTask.ROC)
    with OpenAIStub(StubBehaviour(answer=lambda body: "Pneumothorax.")) as stub:
        backend = open_server(ServerSettings(stub.url))
        outcomes = []
        stats = run_preannotation(
            works,
            spec,
            ReplicaDispatcher([backend], GenerationSettings(), 4),
            model_id="clinkd-7b",
            on_image=outcomes.append,
            run_id="run-1",
        )
        sent = [r["messages"][-1]["content"][-1]["text"] for r in stub.behaviour.requests]
    assert sent == ["What anatomical structure is present at the <|box_start|>(50,100),(250,500)<|box_end|>?"] * 3
    assert stats.done == 3 and stats.questions == 3
    for outcome in outcomes:
        apply_outcome(doc, outcome, "run-1")
    relabelled = [doc.boxes(w.ref.image_id)[0] for w in works]
    assert {b.label for b in relabelled} == {"Pneumothorax"} and {b.review for b in relabelled} == {Review.PENDING}
    assert relabelled[0].note == "was: finding" and relabelled[0].provenance.answer == "Pneumothorax."
    assert relabelled[0].id == works[0].boxes[0].id  # the same box, relabelled
    # one undo, on any image of the run, takes the whole run back; redo brings it back
    assert doc.undo(works[1].ref.image_id)
    assert {doc.boxes(w.ref.image_id)[0].label for w in works} == {"finding"}
    assert doc.redo(works[2].ref.image_id)
    assert {doc.boxes(w.ref.image_id)[0].label for w in works} == {"Pneumothorax"}
    # the user's own box drawn before the run is still one more undo away on its image
    doc.undo(works[0].ref.image_id)
    assert doc.undo(works[0].ref.image_id) and doc.boxes(works[0].ref.image_id) == []
    assert len(doc.boxes(works[1].ref.image_id)) == 1


def test_pause_holds_the_queue_and_cancel_keeps_finished_images(tmp_path) -> None:
    images = write_images(tmp_path / "images", 4, broken=False)
    works = _works(images)
    pause, cancel = threading.Event(), threading.Event()
    outcomes = []

    def on_image(outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 1:
            pause.set()
            threading.Timer(0.3, cancel.set).start()  # paused, then cancelled

    with OpenAIStub(StubBehaviour(answer=lambda body: "Normal.")) as stub:
        backend = open_server(ServerSettings(stub.url))
        stats = run_preannotation(
            works,
            PreannotateSpec(PreTask.MIA),
            ReplicaDispatcher([backend], GenerationSettings(), 1),
            model_id="m",
            on_image=on_image,
            cancel=cancel,
            pause=pause,
        )
        asked = len(stub.behaviour.requests)
    assert stats.cancelled and len(outcomes) == stats.done < 4
    assert asked <= 3  # nothing new was sent while paused (one question may have been in flight)


def test_local_batches_through_the_tiny_model(tmp_path, tmp_path_factory, monkeypatch) -> None:
    folder = tiny_checkpoint(tmp_path_factory)
    backend = LocalBackend(
        load_model(LoadSettings(str(folder), min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
    )
    batches: list[int] = []
    real = backend.ask_batch
    monkeypatch.setattr(
        backend, "ask_batch", lambda requests, *a, **k: batches.append(len(requests)) or real(requests, *a, **k)
    )
    works = _works(write_images(tmp_path / "images", 3, broken=False))
    spec = PreannotateSpec(PreTask.VG, ("left lung", "heart"), max_new_tokens=4)
    outcomes = []
    stats = run_preannotation(
        works,
        spec,
        LocalDispatcher(backend, GenerationSettings(max_new_tokens=4), 4),
        model_id=backend.info.model_id,
        on_image=outcomes.append,
    )
    assert batches == [4, 2]  # 6 questions in batches of 4
    assert stats.done == 3 and stats.questions == 6 and {o.status for o in outcomes} == {DONE}
    assert all(isinstance(a, Box) and a.source is Source.MODEL for o in outcomes for a in o.annotations)


def test_an_image_that_cannot_be_decoded_fails_alone(tmp_path, monkeypatch) -> None:
    works = _works(write_images(tmp_path / "images", 2, broken=False))
    monkeypatch.setattr(
        type(works[0].stack), "frame", lambda self, i: (_ for _ in ()).throw(OSError("truncated pixel data"))
    )
    outcomes = []
    with OpenAIStub() as stub:
        backend = open_server(ServerSettings(stub.url))
        stats = run_preannotation(
            works,
            PreannotateSpec(PreTask.MIA),
            ReplicaDispatcher([backend], GenerationSettings()),
            model_id="m",
            on_image=outcomes.append,
        )
    assert stats.failed == 2 and "truncated pixel data" in outcomes[0].reason


def test_dispatcher_needs_a_server() -> None:
    with pytest.raises(ValueError, match="at least one server is needed"):
        ReplicaDispatcher([], GenerationSettings())
    assert issubclass(type(ServerError("x")), Exception)


def test_kpl_labels_with_the_tiny_clip(tmp_path, tmp_path_factory, capsys) -> None:
    from tests.engine.tiny_clip import save_tiny_clip_dir, write_image_folder

    clip = f"local-dir:{save_tiny_clip_dir(tmp_path_factory.mktemp('clip') / 'tiny')}"
    folder = write_image_folder(tmp_path / "data")
    out = tmp_path / "project.json"
    argv = [
        str(folder),
        "--task",
        "kpl",
        "--knowledge",
        "tuberculosis-cxr",
        "--clip",
        clip,
        "--kpl-iterations",
        "20",
        "--out",
        str(out),
    ]
    assert run_cli(*argv) == 0
    doc = load_document(out)
    labels = [a for ref in doc.images for a in doc.image_labels(ref.image_id)]
    assert len(labels) == len(doc.images) > 1
    assert {a.source for a in labels} == {Source.CLASSIFIER} and {a.review for a in labels} == {Review.PENDING}
    assert all(a.score is not None and 0 <= a.score <= 1 and a.note for a in labels)
    assert labels[0].provenance.task == "kpl" and "knowledge tuberculosis-cxr" in labels[0].provenance.question
    assert run_cli(*argv) == 0  # resumed: nothing left to do
    assert "skipped, already done" in capsys.readouterr().out
    assert len([a for ref in load_document(out).images for a in load_document(out).image_labels(ref.image_id)]) == len(
        labels
    )


def test_cli_with_the_local_tiny_model_batches_and_records_every_image(tmp_path, tmp_path_factory, capsys) -> None:
    folder = tiny_checkpoint(tmp_path_factory)
    images = write_images(tmp_path / "images", 3, broken=False)
    out = tmp_path / "project.json"
    argv = [
        str(images),
        "--task",
        "mia",
        "--model",
        str(folder),
        "--min-pixels",
        str(TINY_MIN_PIXELS),
        "--max-pixels",
        str(TINY_MAX_PIXELS),
        "--max-new-tokens",
        "4",
        "--batch-size",
        "2",
        "--out",
        str(out),
    ]
    assert run_cli(*argv) == 0
    records = read_log(log_path(out))
    assert [r["status"] for r in records] == [DONE] * 3 and sum(r["questions"] for r in records) == 3
    assert {r["model"] for r in records} == {folder.name}
    assert "images: 3 of 3 annotated · questions: 3" in capsys.readouterr().out
    doc = load_document(out)
    notes = [a for ref in doc.images for a in doc.image_labels(ref.image_id)]
    assert all(n.source is Source.MODEL and n.provenance.model == folder.name for n in notes)
