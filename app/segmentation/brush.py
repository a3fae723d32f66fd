"""The brush and the eraser in the single view: tools bar actions, the radius, and each finished
stroke turned into one undo step of the mask it edits.

A stroke goes into the selected mask on the shown frame (a frame the mask did not cover yet is
added to it); with no mask selected the brush starts a new one with the current label, drawn by
the user. Editing a model's mask through ``SetMaskFrames`` marks it corrected, as editing a
model's box does. The mask's measurements are recomputed with the stroke: one frame's are
milliseconds, on the GUI thread; a mask of several frames is a volume, whose values need every
slice, so they are measured on a pool thread and join the stroke's undo step when they arrive.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QSpinBox, QToolBar

from app.segmentation.brush_tool import DEFAULT_RADIUS, BrushTool, Stroke
from app.segmentation.mask_overlay import MaskOverlay
from app.segmentation.measurements import WorkerStack, mask_measurements
from app.segmentation.segment_tool import claim_canvas
from app.widgets.key_bindings import bind
from app.widgets.mask_image import FALLBACK_COLOUR
from app.widgets.shortcuts import shortcut
from engine.annotations import AddAnnotations, AnnotationDocument, Mask, RemoveAnnotations, SetMaskFrames, Source

MAX_RADIUS = 200
MODES = {"brush": ("tool.brush", "Brush stroke"), "erase": ("tool.eraser", "Erase stroke")}


class BrushController(QObject):
    measured = Signal(object)  # (_Measuring, values or an error text): from the pool thread, queued

    def __init__(
        self,
        window,
        overlay: MaskOverlay,
        selected_mask: Callable[[], Mask | None],
        leave_segment: Callable[[], None],
        segment_action: QAction,
    ) -> None:
        super().__init__(window)
        self.window, self.overlay, self.selected_mask = window, overlay, selected_mask
        self.state, self.annotations = window.state, window.annotations
        self.leave_segment = leave_segment
        self.tool = BrushTool(window.canvas, self.state, window.canvas.tools, self)
        window.canvas.tools = self.tool
        self._tokens = itertools.count(1)
        self.measuring = 0  # volumes being measured on the pool
        self.measured.connect(self._on_measured)
        self._build_actions(segment_action)

    # ----- actions
    def _build_actions(self, segment_action: QAction) -> None:
        window = self.window
        toolbar = window.findChild(QToolBar, "toolsBar")
        self.actions: dict[str, QAction] = {}
        for mode, (command_id, _text) in MODES.items():
            row = shortcut(command_id)
            action = bind(QAction(f"{row.text} ({row.keys[0]})", window, checkable=True), command_id)
            action.setStatusTip(row.does)
            action.triggered.connect(lambda on, m=mode: self.set_mode(m if on else None))
            toolbar.addAction(action)
            window.addAction(action)
            self.actions[mode] = action
        self.radius = QSpinBox()
        self.radius.setRange(1, MAX_RADIUS)
        self.radius.setValue(DEFAULT_RADIUS)
        self.radius.setPrefix("Radius ")
        self.radius.setSuffix(" px")
        self.radius.setToolTip("Brush and eraser radius in image pixels ([ smaller, ] larger)")
        self.radius.valueChanged.connect(self.tool.set_radius)
        toolbar.addWidget(self.radius)
        for command_id, step in (("brush.smaller", -1), ("brush.larger", 1)):
            row = shortcut(command_id)
            action = bind(QAction(row.text, window), command_id)
            action.setStatusTip(row.does)
            action.triggered.connect(lambda _=False, s=step: self.radius.setValue(self.radius.value() + s))
            window.addAction(action)
        others = [*window.tool_actions.values(), *getattr(window.mpr, "tool_actions", {}).values(), segment_action]
        for action in others:  # any other tool ends the brush
            action.triggered.connect(lambda _=False: self.set_mode(None))

    def set_mode(self, mode: str | None) -> None:
        """Choose the brush, the eraser, or neither (the other tools take the mouse)."""
        self.tool.set_mode(mode)
        for name, action in self.actions.items():
            action.setChecked(name == mode)
        if mode is not None:
            self.leave_segment()
            claim_canvas(self.window)

    # ----- strokes (the BrushTool's sink)
    def begin_stroke(self, frame: int, erase: bool) -> Stroke | None:
        doc, image_id, stack = self.annotations.doc, self.annotations.image_id, self.state.stack
        if doc is None or image_id is None or stack is None:
            return None
        mask = self.selected_mask()
        if mask is None and erase:
            self._say("Select a mask (in the Annotations list) to erase from it.")
            return None
        label = mask.label if mask is not None else self.annotations.current_label
        colours = {item.name: item.color for item in doc.labels}
        before = mask.array(frame) if mask is not None else None
        if before is None:
            before = np.zeros((stack.rows, stack.columns), dtype=bool)
        return Stroke(
            frame, mask.id if mask else None, before.copy(), before, erase, colours.get(label, FALLBACK_COLOUR)
        )

    def show_stroke(self, stroke: Stroke) -> None:
        self.overlay.show_working(stroke.key, stroke.pixels, stroke.colour)

    def drop_stroke(self) -> None:
        self.overlay.refresh()

    def finish_stroke(self, stroke: Stroke) -> None:
        doc, image_id, stack = self.annotations.doc, self.annotations.image_id, self.state.stack
        text = MODES["erase" if stroke.erase else "brush"][1]
        if doc is None or image_id is None or stack is None or np.array_equal(stroke.pixels, stroke.before):
            self.overlay.refresh()
            return
        if stroke.mask_id is None:
            label = doc.ensure_label(self.annotations.current_label).name
            values = mask_measurements(stack, {stroke.frame: stroke.pixels})
            mask = doc.new_mask(image_id, {stroke.frame: stroke.pixels}, label, source=Source.USER, values=values)
            doc.execute(AddAnnotations(image_id, [mask], text=text))
            self.annotations.select({mask.id})
            return
        mask = doc.find(image_id, stroke.mask_id)
        if not isinstance(mask, Mask):  # undone or deleted while painting
            self.overlay.refresh()
            return
        arrays = {**mask.arrays(), stroke.frame: stroke.pixels}
        covered = {index: array for index, array in arrays.items() if array.any()}
        if not covered:  # everything erased: the mask goes, in the same one step
            command = RemoveAnnotations(image_id, [mask.id])
            command.text = text
            doc.execute(command)
        elif len(covered) == 1:
            values = mask_measurements(stack, covered)
            doc.execute(SetMaskFrames(image_id, mask.id, {stroke.frame: stroke.pixels}, values=values, text=text))
        else:
            token = next(self._tokens)
            command = SetMaskFrames(image_id, mask.id, {stroke.frame: stroke.pixels}, text=text, stroke=token)
            if doc.execute(command):
                worker_stack = WorkerStack(tuple(stack.paths), stack.key)
                self._measure_volume(_Measuring(doc, image_id, mask.id, command, worker_stack, covered))

    # ----- a volume's values, off the GUI thread
    def _measure_volume(self, job: _Measuring) -> None:
        self.measuring += 1

        def run() -> None:
            try:
                values: object = mask_measurements(job.stack(), job.arrays)
            except (OSError, ValueError, StopIteration) as error:  # unreadable now: the stroke stays
                values = f"{error}"
            self.measured.emit((job, values))

        QThreadPool.globalInstance().start(run)

    def _on_measured(self, result: tuple) -> None:
        job, values = result
        self.measuring -= 1
        if isinstance(values, str):
            self._say(f"The mask's volume could not be measured again: {values}")
            return
        # Only while the stroke is still the last step: a later edit (or an undo) has its own values.
        if job.doc.history(job.image_id).peek_undo() is job.command:
            job.doc.execute(SetMaskFrames(job.image_id, job.mask_id, {}, values=values, stroke=job.command.stroke))

    def _say(self, text: str) -> None:
        self.window.statusBar().showMessage(text, 8000)


@dataclass(frozen=True, eq=False)
class _Measuring:
    """A stroke on a mask of several frames waiting for its volume: what the answer applies to."""

    doc: AnnotationDocument
    image_id: str
    mask_id: str
    command: SetMaskFrames
    stack: WorkerStack
    arrays: dict[int, np.ndarray]
