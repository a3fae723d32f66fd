"""How long does the window stall while the model works? A timer probe on the GUI thread.

A 5 ms QTimer records when it actually fires; the longest gap minus 5 ms is the longest time the
event loop could not run (a stall the user would feel as a frozen window). Measured in one run:
the idle window (baseline), while the model loads, and while answers are generated, with a tiny
random Qwen2-VL through the real worker thread and engine. Target: the longest stall while
generating under 50 ms. Then a second opinion (the same question to two models, a copy of the tiny
model under another folder name): two answers streaming into the side-by-side view, one after the
other on the one worker, their boxes matched by IoU as they land; target, at most 16 ms (one frame
at 60 Hz). Then two pre-annotation runs (Assistant > Pre-annotate: one grounding
question per label on every open image, then a whole-image note per image; proposals land in the
documents as they come, the progress bar updates): target, the longest stall at most 16 ms (one
frame at 60 Hz). The random model seldom writes a box, so the note run is the one whose every
answer lands in a document. The first run starts half a second after the images are opened, once
the window has painted them (that paint is reported on its own line: it belongs to opening the
images, not to the run). The GUI-thread work per report is timed inside the run's own slots,
which must still be queued to the GUI thread (a wrapper without the slot's name is connected
directly and would run them on the worker; the timing wrapper asserts the thread).

Then segmentation (target: at most 16 ms): a box prompt with the Segment tool's code path on the
demo CT, whose image embedding a ViT-B-sized random-weight SAM computes for seconds on the worker
("segmenting (embedding)"); and a mask carried through ``--propagate`` frames of the 15-frame
pydicom test dose image ("propagating"). Random weights make random masks, so propagation visits
every frame (``stop_when_empty=False``, as in bench/bench_segment.py). The masks' GUI-thread work
(the result and progress slots: measurements, the document, the overlay) is timed like the runs'.

Wall-clock stalls are noisy on a machine shared with other work (a stall is also the time the GUI
thread waited for a core), so every phase also reports the longest GUI-thread handler: the
application's ``notify`` is timed for every event the GUI thread dispatches (queued slot calls,
timers, paints, layout), top level only, with the receiver and event type of the longest; and the
streaming slots are timed by name (the panel's token, redraw, result and finish slots, the status
bar's), with the chat's re-layout and the overlay's rebuild inside them.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_responsiveness.py [--seconds 3] [--images 12]
    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_responsiveness.py --streaming-only
    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_responsiveness.py --segmentation-only
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

PROBE_MS = 5


class TimedApplication(QApplication):
    """Times every event the GUI thread dispatches (top level: what keeps the event loop from running)."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.gui = threading.get_ident()
        self.depth = 0
        self.longest: tuple[float, str] = (0.0, "")

    def reset(self) -> None:
        self.longest = (0.0, "")

    def notify(self, receiver, event) -> bool:
        if threading.get_ident() != self.gui or self.depth:
            return super().notify(receiver, event)
        kind = event.type()  # read before dispatch: a deferred delete frees the event with its receiver
        self.depth = 1
        began = time.perf_counter()
        try:
            return super().notify(receiver, event)
        finally:
            self.depth = 0
            ms = (time.perf_counter() - began) * 1000
            if ms > self.longest[0]:
                self.longest = (ms, f"{type(receiver).__name__} {kind.name}")


class Handlers:
    """GUI-thread slots timed by name while answers stream: name -> (wall, CPU) ms per call in this phase.

    The CPU time is the GUI thread's own (``time.thread_time``): what the slot costs, without the
    time it waited for a core or for the interpreter lock, which on a shared machine is noise."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}

    def wrap(self, cls, name: str) -> None:
        method = getattr(cls, name)

        @functools.wraps(method)  # keeps the name, so Qt still queues the call to the GUI thread
        def wrapper(obj, *args):
            assert threading.current_thread() is threading.main_thread(), f"{name} ran off the GUI thread"
            began, cpu = time.perf_counter(), time.thread_time()
            try:
                return method(obj, *args)
            finally:
                wall_ms = (time.perf_counter() - began) * 1000
                cpu_ms = (time.thread_time() - cpu) * 1000
                self.ms.setdefault(f"{cls.__name__}.{name}", []).append((wall_ms, cpu_ms))

        setattr(cls, name, wrapper)

    def line(self, app: QApplication) -> str:
        """The phase's longest timed slot (its name, wall and GUI-thread CPU time), each slot's longest
        CPU time, and with --time-events the longest event of any kind."""
        if not self.ms:
            return "  longest GUI-thread handler: none ran"
        name, times = max(self.ms.items(), key=lambda item: max(w for w, _c in item[1]))
        wall, cpu = max(times)
        named = ", ".join(
            f"{n.split('.', 1)[1]} {max(c for _w, c in v):.1f}/{sum(c for _w, c in v) / len(v):.2f} x{len(v)}"
            for n, v in sorted(self.ms.items(), key=lambda item: -max(c for _w, c in item[1]))
        )
        line = (
            f"  longest GUI-thread handler: {name} {wall:.1f} ms ({cpu:.1f} ms CPU on the GUI thread); "
            f"CPU ms longest/mean per slot: {named}"
        )
        if isinstance(app, TimedApplication):
            line += f"; longest event: {app.longest[0]:.1f} ms ({app.longest[1]})"
        return line

    def reset(self, app: QApplication) -> None:
        self.ms = {}
        if isinstance(app, TimedApplication):
            app.reset()


class Probe:
    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(lambda: self.stamps.append(time.perf_counter()))

    def __enter__(self) -> Self:
        self.stamps = [time.perf_counter()]
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()

    def worst_stall_ms(self) -> float:
        gaps = [(b - a) * 1000 for a, b in pairwise(self.stamps)]
        return max(0.0, max(gaps, default=0.0) - PROBE_MS)


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(signal) -> None:
    loop = QEventLoop()
    signal.connect(loop.quit)
    loop.exec()
    signal.disconnect(loop.quit)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to keep the model generating")
    parser.add_argument("--images", type=int, default=12, help="images in the pre-annotation run (12)")
    parser.add_argument("--propagate", type=int, default=5, help="frames to propagate through (5)")
    parser.add_argument("--segmentation-only", action="store_true", help="only the two segmentation phases")
    parser.add_argument("--streaming-only", action="store_true", help="only the Ask panel's phases")
    parser.add_argument(
        "--time-events",
        action="store_true",
        help="also time every GUI-thread event (paints, layout) through a Python notify(); this slows "
        "everything down, the generating threads included, so stalls are not comparable with it on",
    )
    args = parser.parse_args()
    app = TimedApplication([]) if args.time_events else QApplication([])
    from app.application import DEMO_IMAGE
    from app.assistant.answer_overlay import AnswerOverlay
    from app.assistant.ask_panel import AskPanel
    from app.assistant.preannotation import PreannotationRun
    from app.inference.settings import AssistantSettings
    from app.main_window import MainWindow
    from engine.clinkd import Task
    from engine.preannotate import PreannotateSpec, PreTask
    from tests.engine.tiny_qwen import TINY_MAX_PIXELS, build_tiny_qwen2vl

    slot_ms: list[float] = []  # what the GUI thread itself spends on each result and progress report

    def timed(method):
        @functools.wraps(method)  # keeps the name, so Qt still queues the call to the GUI thread
        def wrapper(self, *args):
            assert threading.current_thread() is threading.main_thread(), "a result was handled off the GUI thread"
            began = time.perf_counter()
            method(self, *args)
            slot_ms.append((time.perf_counter() - began) * 1000)

        return wrapper

    PreannotationRun._on_image = timed(PreannotationRun._on_image)
    PreannotationRun._on_progress = timed(PreannotationRun._on_progress)
    handlers = Handlers()  # before the window connects them
    for name in ("_on_partial", "_show_streamed", "_on_result", "_on_finished", "_on_error", "_on_cancelled"):
        handlers.wrap(AskPanel, name)
    handlers.wrap(AskPanel, "_render_chat")  # inside the slots above: the chat's re-layout
    handlers.wrap(AnswerOverlay, "show")  # inside them too: the answer boxes on the image
    for name in ("_on_steps", "_on_model_state"):
        handlers.wrap(MainWindow, name)
    lines: dict[str, str] = {}  # phase -> its longest GUI-thread handler

    if args.segmentation_only:
        segmenting = bench_segmentation(args, timed, slot_ms, handlers, app)
        report_segmentation(segmenting)
        return 0

    with tempfile.TemporaryDirectory() as folder:
        os.environ["CLINLENS_CONFIG_DIR"] = str(Path(folder) / "config")
        model = build_tiny_qwen2vl(Path(folder) / "tiny")
        window = MainWindow()
        window.set_assistant_settings(
            AssistantSettings(clinkd_dir=str(model), max_pixels=TINY_MAX_PIXELS, max_new_tokens=200)
        )
        window.resize(1300, 800)
        window.show()
        window.open([str(DEMO_IMAGE)])
        wait_for(window.load_finished)
        panel = window.ask_panel

        handlers.reset(app)
        with Probe() as idle:
            wait(int(args.seconds * 1000))
        lines["idle"] = handlers.line(app)
        handlers.reset(app)
        with Probe() as loading:
            panel.ask("Describe the image.", Task.FREE, None)
            wait_for(panel.answer_finished)
        lines["loading"] = handlers.line(app)
        answers, tokens = 0, 0
        handlers.reset(app)
        with Probe() as generating:
            deadline = time.perf_counter() + args.seconds
            while time.perf_counter() < deadline:
                panel.ask("Describe the image.", Task.FREE, None)
                wait_for(panel.answer_finished)
                turn = panel.conversations.turns(window.state.stack.key)[-1]
                answers += 1
                tokens += turn.result.new_tokens if turn.result else 0
        lines["generating"] = handlers.line(app)

        second = Path(shutil.copytree(model, Path(folder) / "second-opinion"))
        window.set_assistant_settings(
            AssistantSettings(
                clinkd_dir=str(model), second_dir=str(second), max_pixels=TINY_MAX_PIXELS, max_new_tokens=200
            )
        )
        panel.ask("Describe the image.", Task.FREE, None, second=True)  # loads the second model
        wait_for(panel.answer_finished)
        pairs, pair_tokens = 0, 0
        handlers.reset(app)
        with Probe() as pairing:
            deadline = time.perf_counter() + args.seconds
            while time.perf_counter() < deadline:
                panel.ask("Describe the image.", Task.FREE, None, second=True)
                wait_for(panel.answer_finished)
                turns = panel.conversations.turns(window.state.stack.key)[-2:]
                pairs += 1
                pair_tokens += sum(t.result.new_tokens for t in turns if t.result)
        lines["pairing"] = handlers.line(app)
        if args.streaming_only:
            window.close()
            report_streaming(idle, loading, generating, answers, tokens, pairing, pairs, pair_tokens, lines)
            return 0

        import numpy as np
        from PIL import Image

        copies = Path(folder) / "images"  # chest-X-ray-sized grey images, one stack each
        copies.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 256, (512, 512), dtype=np.uint8)).save(copies / f"image{i:02d}.png")
        window.open([str(copies)])
        wait_for(window.load_finished)
        with Probe() as settling:  # the window paints what it opened, as a user looks before choosing Pre-annotate
            wait(500)
        run = window.preannotation
        runs = []  # (what, probe, images, boxes, labels, progress, GUI-thread work per report)
        for what, spec in (
            ("grounding 2 labels", PreannotateSpec(PreTask.VG, ("left lung", "heart"), max_new_tokens=40)),
            ("whole-image note", PreannotateSpec(PreTask.MIA, max_new_tokens=40)),
        ):
            slot_ms.clear()
            handlers.reset(app)
            with Probe() as annotating:
                run.start(spec)
                wait_for(run.finished)
            lines[what] = handlers.line(app)
            runs.append((what, annotating, run.done + run.failed, run.boxes, run.labels, run.progress, list(slot_ms)))
        window.close()
    segmenting = bench_segmentation(args, timed, slot_ms, handlers, app)

    report_streaming(idle, loading, generating, answers, tokens, pairing, pairs, pair_tokens, lines)
    print(
        f"painting the {args.images} opened images (not part of the run): {settling.worst_stall_ms():7.1f} ms over "
        f"{len(settling.stamps)} ticks"
    )
    worst = 0.0
    for what, annotating, images, boxes, labels, progress, work in runs:
        rate = f", {progress.tokens_per_second:.0f} tok/s" if progress and progress.tokens_per_second else ""
        print(
            f"pre-annotating, {what} ({images} images, {boxes} boxes and {labels} labels proposed{rate}): "
            f"{annotating.worst_stall_ms():7.1f} ms over {len(annotating.stamps)} ticks"
        )
        print(
            f"  GUI-thread work per result/progress report: longest {max(work, default=0):.1f} ms, "
            f"mean {sum(work) / max(len(work), 1):.2f} ms over {len(work)} reports"
        )
        print(lines[what])
        worst = max(worst, annotating.worst_stall_ms())
    print(f"target: worst stall while pre-annotating <= 16 ms: {worst:.1f} ms ({'met' if worst <= 16 else 'NOT met'})")
    report_segmentation(segmenting)
    return 0


def report_streaming(idle, loading, generating, answers, tokens, pairing, pairs, pair_tokens, lines) -> None:
    """The Ask panel's phases: each probe's worst stall, then its longest GUI-thread handler."""
    print(f"probe: a {PROBE_MS} ms timer on the GUI thread; worst stall = longest gap minus {PROBE_MS} ms")
    print(f"idle window (baseline):            {idle.worst_stall_ms():7.1f} ms over {len(idle.stamps)} ticks")
    print(lines["idle"])
    print(f"first answer (model load + answer): {loading.worst_stall_ms():7.1f} ms over {len(loading.stamps)} ticks")
    print(lines["loading"])
    print(
        f"generating ({answers} answers, {tokens} tokens): {generating.worst_stall_ms():7.1f} ms over "
        f"{len(generating.stamps)} ticks"
    )
    print(lines["generating"])
    ratio = generating.worst_stall_ms() / max(idle.worst_stall_ms(), 0.1)
    print(f"ratio generating / idle: {ratio:.1f}x")
    verdict = "met" if generating.worst_stall_ms() <= 16 else "NOT met"
    print(f"target: worst stall while generating <= 16 ms: {generating.worst_stall_ms():.1f} ms ({verdict})")
    print(
        f"second opinion, two answers streaming at once ({pairs} pairs, {pair_tokens} tokens): "
        f"{pairing.worst_stall_ms():7.1f} ms over {len(pairing.stamps)} ticks"
    )
    print(lines["pairing"])
    verdict = "met" if pairing.worst_stall_ms() <= 16 else "NOT met"
    print(f"target: worst stall in the second-opinion view <= 16 ms: {pairing.worst_stall_ms():.1f} ms ({verdict})")


def bench_segmentation(args, timed, slot_ms: list[float], handlers: Handlers, app: QApplication) -> list[tuple]:
    """The two segmentation phases in a fresh window: (what, probe, frames masked, GUI work per report)."""
    import functools as ft

    import numpy as np
    from pydicom.data import get_testdata_file
    from transformers import SamConfig

    import engine.segmentation
    from app.application import DEMO_IMAGE
    from app.inference.settings import AssistantSettings
    from app.main_window import MainWindow
    from app.segmentation.controller import SegmentationController
    from engine.annotations import AddAnnotations
    from tests.engine.tiny_sam import save_sam_dir

    SegmentationController._on_result = timed(SegmentationController._on_result)
    SegmentationController._on_progress = timed(SegmentationController._on_progress)
    # random weights make random (often empty) masks: visit every frame, as bench_segment.py does
    engine.segmentation.propagate = ft.partial(engine.segmentation.propagate, stop_when_empty=False)

    phases = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ["CLINLENS_CONFIG_DIR"] = str(Path(folder) / "config")
        os.environ["CLINLENS_DATA_DIR"] = str(Path(folder) / "data")  # the demo's masks are saved there
        model = save_sam_dir(Path(folder) / "sam-vit-b-random", SamConfig())  # SamConfig() is ViT-B-sized
        window = MainWindow()
        window.set_assistant_settings(AssistantSettings(segmentation_model=str(model), device="cpu"))
        window.resize(1300, 800)
        window.show()
        controller = window.segmentation

        def until_answered(job_id) -> None:
            assert job_id is not None, "the prompt was refused"
            while job_id in controller.jobs:
                wait(20)

        window.open([str(DEMO_IMAGE)])
        wait_for(window.load_finished)
        wait(500)
        rows, cols = window.state.stack.rows, window.state.stack.columns
        box = (cols * 0.3, rows * 0.3, cols * 0.7, rows * 0.7)
        slot_ms.clear()
        handlers.reset(app)
        controller.set_active(True)
        with Probe() as loading:  # the first prompt loads the model too
            until_answered(controller.segment_box(0, box))
        phases.append(
            ("segmenting (model load + embedding)", loading, _masked(window), list(slot_ms), handlers.line(app))
        )
        slot_ms.clear()
        window.state.set_window(type(window.state.window)(window.state.window.center + 10, window.state.window.width))
        wait(300)
        handlers.reset(app)
        with Probe() as embedding:  # a new window: new pixels, a new embedding
            until_answered(controller.segment_box(0, box))
        phases.append(("segmenting (embedding)", embedding, _masked(window), list(slot_ms), handlers.line(app)))
        controller.set_active(False)

        dose = Path(folder) / "rtdose" / "rtdose.dcm"  # a copy: the masks autosave beside the image
        dose.parent.mkdir()
        shutil.copy(get_testdata_file("rtdose.dcm"), dose)
        window.open([str(dose)])  # 15 frames
        wait_for(window.load_finished)
        wait(500)
        stack, annotations = window.state.stack, window.annotations
        start = min(7, stack.n_frames - 1)
        window.state.set_frame(start)
        rows, cols = stack.rows, stack.columns
        y, x = np.mgrid[0:rows, 0:cols]
        disc = (y - rows / 2) ** 2 + (x - cols / 2) ** 2 <= (min(rows, cols) / 5) ** 2
        doc, image_id = annotations.doc, annotations.image_id
        mask = doc.new_mask(image_id, {start: disc}, doc.ensure_label("dose").name)
        doc.execute(AddAnnotations(image_id, [mask], text="Mask"))
        wait(300)
        half = args.propagate // 2
        first = max(0, start - half)
        last = min(stack.n_frames - 1, first + args.propagate - 1)
        slot_ms.clear()
        handlers.reset(app)
        with Probe() as propagating:
            until_answered(controller.propagate(doc.find(image_id, mask.id), (first, last)))
        found = doc.find(image_id, mask.id)
        what = f"propagating (frames {first + 1}-{last + 1})"
        phases.append((what, propagating, len(found.frames), list(slot_ms), handlers.line(app)))
        window.close()
    return phases


def _masked(window) -> int:
    doc, image_id = window.annotations.doc, window.annotations.image_id
    return sum(len(m.frames) for m in doc.masks(image_id)) if doc and image_id else 0


def report_segmentation(phases: list[tuple]) -> None:
    worst = 0.0
    for what, probe, frames, work, line in phases:
        print(
            f"{what} ({frames} masked frames): {probe.worst_stall_ms():7.1f} ms over {len(probe.stamps)} ticks, "
            f"{probe.stamps[-1] - probe.stamps[0]:.1f} s"
        )
        print(
            f"  GUI-thread work per result/progress report: longest {max(work, default=0):.1f} ms, "
            f"mean {sum(work) / max(len(work), 1):.2f} ms over {len(work)} reports"
        )
        print(line)
        if "load" not in what:
            worst = max(worst, probe.worst_stall_ms())
    print(
        f"target: worst stall while segmenting and propagating <= 16 ms: {worst:.1f} ms "
        f"({'met' if worst <= 16 else 'NOT met'})"
    )


if __name__ == "__main__":
    sys.exit(main())
