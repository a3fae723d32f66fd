"""The Segment tool's mouse input: drag a box on the canvas, hand it on as the prompt; Shift+click
(a positive point) and Alt+click (a negative one) refine the selected mask.

It sits in front of the canvas's other tools (measurements, boxes) and takes the left button only
while it is the chosen tool; otherwise every event goes to the tools behind it unchanged. The box
is snapped to whole pixels and kept inside the image, like a drawn box annotation.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

MIN_PROMPT_PX = 2.0
PREVIEW_COLOUR = "#4fc3f7"

Prompt = Callable[[int, tuple[float, float, float, float]], object]
"""(frame index, (x1, y1, x2, y2) in image pixels) -> whatever the controller does with it."""

PointPrompt = Callable[[int, tuple[float, float], bool], object]
"""(frame index, (x, y) in image pixels, positive) -> truthy when the point was taken (a mask is
selected); otherwise the click starts a box as usual."""


def claim_canvas(window) -> None:
    """A segmentation tool takes the canvas: the window's other tools and the MPR's are unchecked,
    and the cursor becomes a cross (the Segment tool and the brush both start this way)."""
    for action in window.tool_actions.values():
        action.setChecked(False)
    mpr = getattr(window, "mpr", None)
    if mpr is not None:
        mpr.set_tool(None)
    window.canvas.viewport().setCursor(Qt.CursorShape.CrossCursor)


class SegmentTool:
    def __init__(self, canvas, state, on_box: Prompt, behind, on_point: PointPrompt | None = None) -> None:
        self.canvas, self.state, self.on_box, self.behind = canvas, state, on_box, behind
        self.on_point = on_point
        self.active = False
        self._origin: QPointF | None = None
        self._preview: QGraphicsRectItem | None = None

    def _snap(self, event) -> QPointF:
        point = self.canvas.mapToScene(event.position().toPoint())
        stack = self.state.stack
        return QPointF(min(max(round(point.x()), 0), stack.columns), min(max(round(point.y()), 0), stack.rows))

    def press(self, event) -> bool:
        if not self.active:
            return self.behind.press(event)
        if self.state.stack is None or self.state.frame is None:
            return False
        modifiers = event.modifiers()
        shift, alt = Qt.KeyboardModifier.ShiftModifier, Qt.KeyboardModifier.AltModifier
        if self.on_point is not None and modifiers & (shift | alt):
            point = self.canvas.mapToScene(event.position().toPoint())
            if self.on_point(self.state.frame_index, (point.x(), point.y()), not modifiers & alt):
                return True
        self._origin = self._snap(event)
        return True

    def move(self, event) -> None:
        if self._origin is None:
            if not self.active:
                self.behind.move(event)
            return
        rect = QRectF(self._origin, self._snap(event)).normalized()
        if self._preview is None:
            self._preview = QGraphicsRectItem()
            self._preview.setZValue(20)
            pen = QPen(QColor(PREVIEW_COLOUR), 1.5, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            self._preview.setPen(pen)
            self.canvas.scene().addItem(self._preview)
        self._preview.setRect(rect)

    def release(self, event) -> None:
        if self._origin is None:
            if not self.active:
                self.behind.release(event)
            return
        rect = QRectF(self._origin, self._snap(event)).normalized()
        self.cancel()
        if rect.width() >= MIN_PROMPT_PX and rect.height() >= MIN_PROMPT_PX:
            self.on_box(self.state.frame_index, (rect.left(), rect.top(), rect.right(), rect.bottom()))

    def cancel(self) -> None:
        if self._preview is not None:
            self.canvas.scene().removeItem(self._preview)
            self._preview = None
        self._origin = None
        self.behind.cancel()

    def __getattr__(self, name: str):  # tool state the window reads (tool, kind, ...) stays the tools' behind
        return getattr(self.behind, name)
