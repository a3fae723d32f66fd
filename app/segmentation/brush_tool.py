"""The brush and eraser's mouse input: a press starts a stroke, each move paints the segment since
the last position, the release hands the whole stroke on; a circle of the brush's size follows
the mouse.

It sits in front of the canvas's other tools, like the Segment tool, and takes the left button
only while the brush or the eraser is chosen. During a stroke only a working copy of one frame is
painted (numpy, a bounding window per move) and shown; the document, and the RLE encoding, see
the stroke once, on release, as one undo step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem

from engine.annotations.brush import paint_stroke

CURSOR_COLOUR = "#ffffff"
DEFAULT_RADIUS = 5


@dataclass
class Stroke:
    """One press..release: the frame's pixels as they will be, and where the mouse was last."""

    frame: int
    mask_id: str | None  # None: the stroke makes a new mask
    pixels: np.ndarray  # (rows, columns) bool, painted in place
    before: np.ndarray  # the frame's pixels when the stroke began
    erase: bool
    colour: str
    last: tuple[float, float] = (0.0, 0.0)

    @property
    def key(self) -> str:
        """The overlay item the stroke is shown in: its mask's, or one of its own for a new mask."""
        return self.mask_id or "brush-stroke"


class StrokeSink(Protocol):
    def begin_stroke(self, frame: int, erase: bool) -> Stroke | None: ...
    def show_stroke(self, stroke: Stroke) -> None: ...
    def finish_stroke(self, stroke: Stroke) -> None: ...
    def drop_stroke(self) -> None: ...


class BrushTool:
    def __init__(self, canvas, state, behind, sink: StrokeSink) -> None:
        self.canvas, self.state, self.behind, self.sink = canvas, state, behind, sink
        self.mode: str | None = None  # "brush" | "erase" | None (the tools behind take the mouse)
        self.radius = float(DEFAULT_RADIUS)
        self.stroke: Stroke | None = None
        self.circle = QGraphicsEllipseItem()
        pen = QPen(QColor(CURSOR_COLOUR), 1.0)
        pen.setCosmetic(True)
        self.circle.setPen(pen)
        self.circle.setZValue(21)
        self.circle.setVisible(False)
        canvas.scene().addItem(self.circle)
        canvas.cursor_moved.connect(self._follow)
        canvas.cursor_left.connect(lambda: self.circle.setVisible(False))

    def set_mode(self, mode: str | None) -> None:
        self.cancel()
        self.mode = mode
        self.circle.setVisible(False)

    def set_radius(self, radius: float) -> None:
        self.radius = float(radius)
        self._place(self.circle.rect().center())

    def _follow(self, x: float, y: float) -> None:
        self.circle.setVisible(self.mode is not None and self.state.stack is not None)
        self._place(QPointF(x, y))

    def _place(self, centre: QPointF) -> None:
        r = self.radius
        self.circle.setRect(QRectF(centre.x() - r, centre.y() - r, 2 * r, 2 * r))

    def _point(self, event) -> tuple[float, float]:
        point = self.canvas.mapToScene(event.position().toPoint())
        return (point.x(), point.y())

    def press(self, event) -> bool:
        if self.mode is None:
            return self.behind.press(event)
        if self.state.stack is None or self.state.frame is None:
            return False
        self.stroke = self.sink.begin_stroke(self.state.frame_index, self.mode == "erase")
        if self.stroke is not None:
            self.stroke.last = self._point(event)
            paint_stroke(self.stroke.pixels, [self.stroke.last], self.radius, not self.stroke.erase)
            self.sink.show_stroke(self.stroke)
        return True

    def move(self, event) -> None:
        if self.stroke is None:
            if self.mode is None:
                self.behind.move(event)
            return
        self._extend(self._point(event))

    def _extend(self, point: tuple[float, float]) -> None:
        stroke = self.stroke
        paint_stroke(stroke.pixels, [stroke.last, point], self.radius, not stroke.erase)
        stroke.last = point
        self.sink.show_stroke(stroke)

    def release(self, event) -> None:
        if self.stroke is None:
            if self.mode is None:
                self.behind.release(event)
            return
        self._extend(self._point(event))
        stroke, self.stroke = self.stroke, None
        self.sink.finish_stroke(stroke)

    def cancel(self) -> None:
        if self.stroke is not None:
            self.stroke = None
            self.sink.drop_stroke()
        self.behind.cancel()

    def __getattr__(self, name: str):  # tool state the window reads stays the tools' behind
        return getattr(self.behind, name)
