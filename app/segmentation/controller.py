"""Segmentation in the window: the Segment tool, "Segment" on a selected box, propagation, masks drawn.

A prompt becomes a ``SegmentJob`` on the one inference worker (which owns the models and loads
the segmenter on first use); the answer comes back as plain arrays and becomes a pending model
``Mask`` in the document, one undo step per prompt, with its provenance (model, prompt box,
window) and its measurements. The GUI never waits: it renders the shown frame (the pixels as
displayed, as the model must see them) and submits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QInputDialog, QToolBar

from app.inference.segmenting import SegmentJob, SegmentOutcome
from app.segmentation.brush import BrushController
from app.segmentation.mask_overlay import MaskOverlay
from app.segmentation.measurements import WorkerStack, mask_measurements
from app.segmentation.segment_tool import SegmentTool, claim_canvas
from app.widgets.key_bindings import bind
from app.widgets.missing_model_banner import MissingModelBanner
from app.widgets.shortcuts import shortcut
from engine.annotations import AddAnnotations, Box, Mask, Provenance, SetMaskFrames
from engine.imaging import ImageStack, Window, render_rgb

MISSING_MESSAGE = "Segment needs a segmentation model: choose a SAM or MedSAM folder."
MISSING_DETAILS = (
    "The Segment tool turns a box into a mask with a local SAM-family checkpoint: SAM ViT-B/L/H "
    "(facebook/sam-vit-base, Apache-2.0) or MedSAM (Apache-2.0), downloaded once as a folder with "
    "config.json and model.safetensors. Choose it with Assistant > Choose segmentation model…"
)


@dataclass(frozen=True)
class _Pending:
    """What a submitted prompt needs when its answer comes back (the user may have moved on)."""

    stack: ImageStack
    frame: int
    box: tuple[float, float, float, float]
    window: Window | None
    label: str
    key: str
    extend: str | None = None  # a mask id: the answer's frames are added to that mask (propagation)
    points: tuple[tuple[float, float, int], ...] = ()  # (x, y, 1 positive / 0 negative)
    text: str = "Propagate mask"  # the undo step's name when ``extend`` is set


class SegmentationController(QObject):
    mask_added = Signal(object)  # the Mask just added (or extended) in the document
    message = Signal(str)  # a one-line status for the status bar

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.state, self.annotations, self.service = window.state, window.annotations, window.service
        self.overlay = MaskOverlay(window.canvas.scene(), self.state, self.annotations)
        self.banner = MissingModelBanner(MISSING_MESSAGE, "Choose model…", MISSING_DETAILS)
        self.banner.set_missing(False)
        self.banner.action.connect(self.choose_model)
        layout = window.centralWidget().layout()
        layout.insertWidget(layout.indexOf(window.banner) + 1, self.banner)
        self.tool = SegmentTool(window.canvas, self.state, self.segment_box, window.canvas.tools, self.add_point)
        window.canvas.tools = self.tool
        self.jobs: dict[int, _Pending] = {}
        self.points: dict[str, tuple[tuple[float, float, int], ...]] = {}  # mask id -> its refining points
        worker = self.service.worker
        worker.result.connect(self._on_result)
        worker.error.connect(self._on_error)
        worker.cancelled.connect(self._on_cancelled)
        worker.progress.connect(self._on_progress)
        self.message.connect(lambda text: window.statusBar().showMessage(text, 8000))
        self._build_actions()
        self.brush = BrushController(
            window, self.overlay, self.selected_mask, lambda: self.set_active(False), self.tool_action
        )

    # ----- settings
    def settings(self):
        return self.window.assistant_settings

    def configured(self) -> bool:
        return bool(self.settings().segmentation_model)

    def choose_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "SAM / MedSAM checkpoint folder")
        if folder:
            self.window.set_assistant_settings(replace(self.settings(), segmentation_model=folder))

    def refresh_settings(self) -> None:
        if self.configured():
            self.banner.set_missing(False)

    # ----- actions
    def _build_actions(self) -> None:
        window = self.window
        row = shortcut("tool.segment")
        self.tool_action = bind(QAction(f"{row.text} ({row.keys[0]})", window, checkable=True), "tool.segment")
        self.tool_action.setStatusTip(row.does)
        self.tool_action.triggered.connect(lambda on: self.set_active(bool(on)))
        toolbar = window.findChild(QToolBar, "toolsBar")
        toolbar.addAction(self.tool_action)
        window.addAction(self.tool_action)
        others = list(window.tool_actions.values()) + list(getattr(window.mpr, "tool_actions", {}).values())
        for action in others:  # any other tool ends Segment
            action.triggered.connect(lambda _=False: self.set_active(False))
        assistant = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Assistant")
        first = assistant.actions()[0] if assistant.actions() else None
        self.segment_box_action = QAction("Segment the selected &box", window)
        self.segment_box_action.setStatusTip(
            "Turn the selected box annotation into a mask (its rectangle is the prompt)"
        )
        self.segment_box_action.triggered.connect(self.segment_selected_box)
        self.propagate_action = QAction("&Propagate mask through slices…", window)
        self.propagate_action.setStatusTip("Carry the selected mask through a range of frames, one undo step")
        self.propagate_action.triggered.connect(self.ask_propagate)
        self.choose_action = QAction("Choose &segmentation model…", window)
        self.choose_action.setStatusTip("A SAM or MedSAM checkpoint folder for the Segment tool")
        self.choose_action.triggered.connect(self.choose_model)
        for action in (self.segment_box_action, self.propagate_action, self.choose_action):
            assistant.insertAction(first, action)
            window.addAction(action)
        assistant.insertSeparator(first)

    def set_active(self, on: bool) -> None:
        """Choose (or leave) the Segment tool; without a model the banner says what is missing."""
        self.tool.cancel()
        self.tool.active = on
        self.tool_action.setChecked(on)
        if on:
            claim_canvas(self.window)
        self.banner.set_missing(on and not self.configured())

    # ----- prompts
    def segment_box(self, frame: int, box: tuple[float, float, float, float], label: str | None = None) -> int | None:
        """Submit a box prompt on ``frame`` of the shown image; the job id, or None when refused."""
        return self._submit(frame, box, label)

    def add_point(self, frame: int, point: tuple[float, float], positive: bool) -> int | None:
        """A point on the selected mask: it is segmented again from its original box and every point
        so far, and the answer replaces that frame as one undo step. None (not taken) without one
        selected mask on this frame."""
        mask = self.selected_mask()
        if mask is None or mask.on(frame) is None:
            return None
        box = _prompt_box(mask, frame)
        points = (*self.points.get(mask.id, ()), (float(point[0]), float(point[1]), 1 if positive else 0))
        return self._submit(frame, box, mask.label, points=points, extend=mask.id)

    def _submit(
        self,
        frame: int,
        box: tuple[float, float, float, float],
        label: str | None,
        points: tuple[tuple[float, float, int], ...] = (),
        extend: str | None = None,
    ) -> int | None:
        stack = self.state.stack
        if stack is None or self.annotations.doc is None:
            return None
        if not self.configured():
            self.banner.set_missing(True)
            self.message.emit(MISSING_MESSAGE)
            return None
        pixels = self._pixels(stack, frame)
        if pixels is None:
            return None
        window, invert = self.state.window, self.state.invert
        key = pixels_key(stack, frame, window, invert)
        settings = self.settings()
        job = SegmentJob(
            pixels,
            key,
            frame,
            box,
            settings.segmentation_model,
            settings.device,
            settings.dtype,
            points=points,
            window=window,
            slices=_worker_slices(WorkerStack(tuple(stack.paths), stack.key), window, invert),
            neighbours=tuple(
                (index, pixels_key(stack, index, window, invert))
                for index in (frame - 1, frame + 1)
                if 0 <= index < stack.n_frames
            ),
        )
        job_id = self.service.submit(job)
        label = label or self.annotations.current_label
        self.jobs[job_id] = _Pending(stack, frame, box, window, label, key, extend, points, "Refine mask")
        self.message.emit(f"Segmenting the {'points' if points else 'box'} on frame {frame + 1}…")
        return job_id

    def segment_selected_box(self) -> int | None:
        boxes = [self.annotations.box(i) for i in sorted(self.annotations.selected)]
        boxes = [b for b in boxes if isinstance(b, Box) and b.placement is None]
        if len(boxes) != 1:
            self.message.emit("Select one box on a frame to segment it.")
            return None
        box = boxes[0]
        return self.segment_box(box.frame, box.rect, box.label)

    def ask_propagate(self) -> int | None:
        mask = self.selected_mask()
        stack = self.state.stack
        if mask is None or stack is None:
            self.message.emit("Select one mask (in the Annotations list) to propagate it.")
            return None
        text, ok = QInputDialog.getText(
            self.window,
            "Propagate mask",
            f"Frames to carry the mask through (1–{stack.n_frames}), as FIRST:LAST:",
            text=f"1:{stack.n_frames}",
        )
        if not ok:
            return None
        try:
            first, last = (int(v) - 1 for v in text.split(":"))
        except ValueError:
            self.message.emit(f"{text!r} is not a FIRST:LAST frame range.")
            return None
        return self.propagate(mask, (first, last))

    def selected_mask(self) -> Mask | None:
        doc, image_id = self.annotations.doc, self.annotations.image_id
        found = [doc.find(image_id, i) for i in self.annotations.selected] if doc and image_id else []
        masks = [m for m in found if isinstance(m, Mask)]
        return masks[0] if len(masks) == 1 else None

    def propagate(self, mask: Mask, frames: tuple[int, int]) -> int | None:
        """Carry ``mask`` from its first frame through ``frames``: one job, progress in the status bar."""
        stack = self.state.stack
        if stack is None or not self.configured():
            self.banner.set_missing(not self.configured())
            return None
        start = mask.frame
        if not 0 <= frames[0] <= start <= frames[1] < stack.n_frames:
            self.message.emit(f"The range must hold frame {start + 1} and lie within 1–{stack.n_frames}.")
            return None
        from engine.segmentation import mask_box  # numpy only

        box = tuple(float(v) for v in mask_box(mask.array(start)))
        pixels = self._pixels(stack, start)
        if pixels is None:
            return None
        window, invert = self.state.window, self.state.invert
        worker_stack = WorkerStack(tuple(stack.paths), stack.key)
        settings = self.settings()
        job = SegmentJob(
            pixels,
            pixels_key(stack, start, window, invert),
            start,
            box,
            settings.segmentation_model,
            settings.device,
            settings.dtype,
            window=window,
            frames=frames,
            slices=_worker_slices(worker_stack, window, invert),
            key_of=lambda index: pixels_key(stack, index, window, invert),
            measure=lambda masks: mask_measurements(worker_stack(), masks),
        )
        job_id = self.service.submit(job)
        self.jobs[job_id] = _Pending(stack, start, box, window, mask.label, job.key, extend=mask.id)
        self.message.emit(f"Propagating the mask through frames {frames[0] + 1}–{frames[1] + 1}…")
        return job_id

    def _pixels(self, stack: ImageStack, frame: int):
        shown = self.state.frame if frame == self.state.frame_index else stack.frame(frame)
        if shown is None:
            return None
        return render_rgb(shown, self.state.window, invert=self.state.invert)

    # ----- answers
    def _on_result(self, job_id: int, outcome: object) -> None:
        pending = self.jobs.pop(job_id, None)
        if pending is None or not isinstance(outcome, SegmentOutcome):
            return
        if not outcome.masks:
            self.message.emit(f"The model found nothing inside the box on frame {pending.frame + 1}.")
            return
        found = self.annotations.document_for(pending.stack)
        if found is None:
            return
        doc, image_id = found
        values = outcome.values if outcome.values is not None else mask_measurements(pending.stack, outcome.masks)
        if pending.extend is not None and doc.find(image_id, pending.extend) is not None:
            doc.execute(SetMaskFrames(image_id, pending.extend, outcome.masks, values=values, text=pending.text))
            mask = doc.find(image_id, pending.extend)
            if pending.points:
                self.points[mask.id] = pending.points
        else:
            label = doc.ensure_label(pending.label).name
            provenance = Provenance(
                run="",
                key=pending.key,
                model=outcome.model_id,
                task="segment",
                question=json.dumps({"box": list(pending.box), "frame": pending.frame + 1}),
                window=f"{pending.window.center:g},{pending.window.width:g}" if pending.window else "",
            )
            mask = doc.new_mask(
                image_id,
                outcome.masks,
                label,
                source="model",
                score=max(outcome.scores.values()) if outcome.scores else None,
                provenance=provenance,
                values=values,
            )
            doc.execute(AddAnnotations(image_id, [mask], text="Segment"))
        frames = len(outcome.masks)
        self.message.emit(f"Mask “{mask.label}” on {frames} frame(s), pending review.")
        self.mask_added.emit(mask)

    def _on_error(self, job_id: int, text: str) -> None:
        if self.jobs.pop(job_id, None) is not None:
            self.window.banner.show_message(f"Segmentation failed: {text}")

    def _on_cancelled(self, job_id: int) -> None:
        if self.jobs.pop(job_id, None) is not None:
            self.message.emit("Segmentation cancelled.")

    def _on_progress(self, job_id: int, stage: str, done: int, total: int) -> None:
        if job_id in self.jobs and stage == "segment":
            self.window.statusBar().showMessage(
                f"Propagating the mask: {done}/{total} frames (Assistant > Cancel the running job stops it)"
            )


def _prompt_box(mask: Mask, frame: int) -> tuple[float, float, float, float]:
    """The box that first prompted ``mask`` on ``frame`` (its provenance), else the mask's own extent."""
    try:
        prompt = json.loads(mask.provenance.question) if mask.provenance else {}
    except ValueError:
        prompt = {}
    if isinstance(prompt, dict) and prompt.get("frame") == frame + 1 and len(prompt.get("box") or ()) == 4:
        return tuple(float(v) for v in prompt["box"])
    from engine.segmentation import mask_box  # numpy only

    return tuple(float(v) for v in mask_box(mask.array(frame)))


def pixels_key(stack: ImageStack, frame: int, window: Window | None, invert: bool) -> str:
    """Names the pixels the model sees: stack, frame, window and plane (the embedding cache key)."""
    shown = f"{window.center:g},{window.width:g}" if window is not None else "header"
    return f"{stack.key}/{frame}/{shown}{'/inverted' if invert else ''}/native"


def _worker_slices(stack: WorkerStack, window: Window | None, invert: bool):
    """Each frame's displayed pixels, rendered on the worker thread (called there only)."""

    def slices(index: int):
        return render_rgb(stack().frame(index), window, invert=invert)

    return slices
