"""Measurement tools and their drawing, shared by the single-plane canvas and the plane viewports.

``MeasureInput`` turns mouse presses into the points of a measurement (drag for length,
ellipse and rectangle; three clicks for an angle: arm, vertex, arm) and shows a dashed preview.
``CanvasMeasureTools`` puts it in front of the canvas box tools, and ``MeasureOverlay`` draws
the measurements of the shown frame with their values.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QMouseEvent, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsItemGroup,
    QGraphicsPathItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
)

from engine.annotations import AddAnnotations, MeasureKind, Measurement, SetMeasurement
from engine.annotations.measure import graphic_points, measure, modality_unit, outline

MEASURE_COLOUR = "#ffd23f"
LABEL_BACKGROUND = QColor(0, 0, 0, 175)  # yellow text stays readable on bright bone and contrast
LABEL_GAP = 6  # screen pixels between a shape and its value
LABEL_LINE = 18  # screen pixels from one stacked value to the next
LABEL_MARGIN = 4  # screen pixels a value keeps from the viewport's edge


class MeasureLabel(QGraphicsSimpleTextItem):
    """A measurement's value on a dark plate, in screen pixels (it ignores the zoom).

    It remembers the leftmost and rightmost points of its shape (scene coordinates) so that
    ``fit_labels`` can put it beside the shape on whichever side keeps it inside the viewport.
    """

    PAD = 3.0

    def __init__(self, text: str, left: QPointF, right: QPointF, line: int) -> None:
        super().__init__(text)
        self.left, self.right, self.line = left, right, line
        self.setBrush(QBrush(QColor(MEASURE_COLOUR)))
        self.setFont(QFont("Sans", 10))
        self.setFlag(QGraphicsSimpleTextItem.GraphicsItemFlag.ItemIgnoresTransformations, True)

    def boundingRect(self) -> QRectF:
        return super().boundingRect().adjusted(-self.PAD, -1, self.PAD, 1)

    def paint(self, painter, option, widget=None) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(LABEL_BACKGROUND)
        painter.drawRoundedRect(self.boundingRect(), 3, 3)
        super().paint(painter, option, widget)


def fit_labels(group: QGraphicsItemGroup, view: QGraphicsView) -> None:
    """Place every value beside its shape and inside the visible viewport.

    Right of the shape by default; left of it when the right side would leave the viewport;
    then clamped to the viewport, so no value is cut at a pane's edge whatever the zoom or pan.
    """
    area = view.viewport().rect().adjusted(LABEL_MARGIN, LABEL_MARGIN, -LABEL_MARGIN, -LABEL_MARGIN)
    for label in group.childItems():
        if not isinstance(label, MeasureLabel):
            continue
        size = label.boundingRect().size()
        right, left = view.mapFromScene(label.right), view.mapFromScene(label.left)
        x = right.x() + LABEL_GAP + MeasureLabel.PAD
        if x + size.width() > area.right():
            x = left.x() - LABEL_GAP - size.width() + MeasureLabel.PAD
        # inside; a value wider than the pane starts at its left edge (its beginning is what reads)
        x = max(min(x, area.right() - size.width() + MeasureLabel.PAD), area.left() + MeasureLabel.PAD)
        y = right.y() + label.line * LABEL_LINE
        y = max(min(y, area.bottom() - size.height() + 1), area.top() + 1)
        label.setPos(view.mapToScene(QPoint(round(x), round(y))))


def label_viewport_rect(label: MeasureLabel, view: QGraphicsView) -> QRectF:
    """Where a value's plate is on screen (viewport pixels)."""
    top_left = QPointF(view.mapFromScene(label.pos()))
    return label.boundingRect().translated(top_left)


def cosmetic_pen(colour: str, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(QColor(colour), width, style)
    pen.setCosmetic(True)
    return pen


def shape_path(points: np.ndarray, closed: bool, complete: bool = True, marker: float = 3.0) -> QPainterPath:
    """The outline through ``points``; when not ``complete`` (where a shape crosses another
    plane) small crosses at the points, joined when a closed shape is cut through."""
    path = QPainterPath()
    if len(points) == 0:
        return path
    if complete:
        path.moveTo(*points[0])
        for point in points[1:]:
            path.lineTo(*point)
        if closed:
            path.closeSubpath()
        return path
    for px, py in points:
        path.moveTo(px - marker, py - marker)
        path.lineTo(px + marker, py + marker)
        path.moveTo(px - marker, py + marker)
        path.lineTo(px + marker, py - marker)
    if closed and len(points) == 2:
        path.moveTo(*points[0])
        path.lineTo(*points[1])
    return path


def add_shapes(
    group: QGraphicsItemGroup,
    shapes: list[tuple[np.ndarray, bool, bool, str]],
    marker: float,
    view: QGraphicsView | None = None,
) -> None:
    """Replace a group's items by (points, closed, complete, text) shapes with their values.

    ``marker`` is the size of a crossing marker in scene units (about 4 screen pixels); with
    ``view`` the values are placed inside its viewport (``fit_labels``).
    """
    scene = group.scene()
    for item in group.childItems():
        scene.removeItem(item)
    pen = cosmetic_pen(MEASURE_COLOUR, 2.0)
    labels = 0
    for points, closed, complete, text in shapes:
        item = QGraphicsPathItem(shape_path(points, closed, complete, marker))
        item.setPen(pen)
        group.addToGroup(item)
        if complete and text:
            right = max(points, key=lambda p: p[0])
            left = min(points, key=lambda p: p[0])
            label = MeasureLabel(text, QPointF(*map(float, left)), QPointF(*map(float, right)), labels)
            # one text line (about 16 screen pixels, 4 markers) below the previous one
            label.setPos(float(right[0]) + marker, float(right[1]) + labels * 4 * marker)
            labels += 1
            group.addToGroup(label)
    if view is not None:
        fit_labels(group, view)


class MeasureInput:
    """Collects the points of one measurement in scene coordinates and previews it.

    A press on a point of an existing measurement (``grab``) drags that point instead; the
    edit is committed once, on release, through ``edited(measurement, points)``.
    """

    def __init__(
        self,
        scene: QGraphicsScene,
        finished: Callable[[MeasureKind, tuple], None],
        edited: Callable[[Measurement, tuple], None] | None = None,
    ) -> None:
        self.kind: MeasureKind | None = None
        self.points: list[tuple[float, float]] = []
        self.dragging = False
        self.editing: tuple[Measurement, int] | None = None
        self._finished, self._edited = finished, edited
        self.preview = QGraphicsPathItem()
        self.preview.setPen(cosmetic_pen(MEASURE_COLOUR, 1.5, Qt.PenStyle.DashLine))
        self.preview.setZValue(10)
        scene.addItem(self.preview)

    def grab(self, x: float, y: float, candidates: list[Measurement], tolerance: float) -> bool:
        """Start dragging the point of a candidate measurement within ``tolerance`` of (x, y)."""
        if self.points or self._edited is None:
            return False
        for measurement in candidates:
            for i, (px, py) in enumerate(measurement.points):
                if math.hypot(px - x, py - y) <= tolerance:
                    self.editing, self.points, self.dragging = (measurement, i), list(measurement.points), True
                    self._show()
                    return True
        return False

    def press(self, x: float, y: float) -> None:
        if self.kind is MeasureKind.ANGLE:
            if not self.points:
                self.points = [(x, y), (x, y)]
            elif len(self.points) == 2:
                self.points[-1] = (x, y)
                self.points.append((x, y))
            else:
                self.points[-1] = (x, y)
                self._finish()
                return
        else:
            self.points = [(x, y), (x, y)]
            self.dragging = True
        self._show()

    def move(self, x: float, y: float) -> None:
        if self.editing is not None:
            self.points[self.editing[1]] = (x, y)
            self._show()
        elif self.points and (self.dragging or self.kind is MeasureKind.ANGLE):
            self.points[-1] = (x, y)
            self._show()

    def release(self) -> None:
        if self.editing is not None:
            (measurement, _), points = self.editing, tuple(self.points)
            self.cancel()
            if points != measurement.points:
                self._edited(measurement, points)
        elif self.dragging:
            self.dragging = False
            self._finish()

    def cancel(self) -> None:
        self.points, self.dragging, self.editing = [], False, None
        self.preview.setPath(QPainterPath())

    def _show(self) -> None:
        kind = self.editing[0].kind if self.editing is not None else self.kind
        graphic, closed = outline(kind, graphic_points(kind, self.points))
        self.preview.setPath(shape_path(graphic, closed))

    def _finish(self) -> None:
        points, kind = tuple(self.points), self.kind
        self.cancel()
        if kind is not None and len(points) == kind.n_points and math.dist(points[0], points[-1]) > 0.5:
            self._finished(kind, points)


class CanvasMeasureTools:
    """The canvas's left-button tools: a measurement tool when one is chosen, else the box tools."""

    def __init__(self, canvas, state, annotations, box_tools) -> None:
        self.canvas, self.state, self.annotations, self.box_tools = canvas, state, annotations, box_tools
        self.input = MeasureInput(canvas.scene(), self._add, self._edit)
        self.overlay = MeasureOverlay(canvas.scene(), state, annotations, lambda: canvas.zoom, canvas)

    @property
    def kind(self) -> MeasureKind | None:
        return self.input.kind

    def set_kind(self, kind: MeasureKind | None) -> None:
        self.input.cancel()
        self.input.kind = kind

    def _scene(self, event: QMouseEvent) -> QPointF:
        return self.canvas.mapToScene(event.position().toPoint())

    def press(self, event: QMouseEvent) -> bool:
        if self.input.kind is None:
            return self.box_tools.press(event)
        if self.state.frame is None:
            return False
        point = self._scene(event)
        controller = self.annotations
        mine = controller.doc.measurements(controller.image_id, self.state.frame_index) if controller.doc else []
        if not self.input.grab(point.x(), point.y(), mine, 6.0 / max(self.canvas.zoom, 1e-6)):
            self.input.press(point.x(), point.y())
        return True

    def move(self, event: QMouseEvent) -> None:
        if self.input.kind is None:
            self.box_tools.move(event)
        else:
            point = self._scene(event)
            self.input.move(point.x(), point.y())

    def release(self, event: QMouseEvent) -> None:
        if self.input.kind is None:
            self.box_tools.release(event)
        else:
            self.input.release()

    def cancel(self) -> None:
        self.input.cancel()
        self.box_tools.cancel()

    def __getattr__(self, name: str):  # tool state the window reads (tool, ...) stays the box tools'
        return getattr(self.box_tools, name)

    def _values(self, kind: MeasureKind, points: tuple) -> tuple:
        stack = self.state.stack
        spacing = (stack.spacing.row_mm, stack.spacing.col_mm) if stack.spacing else None
        return measure(kind, points, spacing=spacing, frame=self.state.frame, unit=modality_unit(stack.modality))

    def _edit(self, measurement: Measurement, points: tuple) -> None:
        controller = self.annotations
        if controller.doc is not None and self.state.frame is not None:
            controller.doc.execute(
                SetMeasurement(controller.image_id, measurement.id, points, self._values(measurement.kind, points))
            )

    def _add(self, kind: MeasureKind, points: tuple) -> None:
        controller, frame = self.annotations, self.state.frame
        if controller.doc is None or controller.image_id is None or frame is None:
            return
        values = self._values(kind, points)
        measurement = controller.doc.new_measurement(
            controller.image_id, kind, self.state.frame_index, points, values, label=kind.value
        )  # its own kind, never the box label picked for the next box
        controller.doc.execute(AddAnnotations(controller.image_id, [measurement]))


class MeasureOverlay:
    """The shown frame's own measurements, with their values, on the canvas scene."""

    def __init__(
        self,
        scene: QGraphicsScene,
        state,
        annotations,
        scale: Callable[[], float] = lambda: 1.0,
        view: QGraphicsView | None = None,
    ) -> None:
        self.state, self.annotations, self.scale, self.view = state, annotations, scale, view
        self.group = QGraphicsItemGroup()
        self.group.setZValue(5)
        scene.addItem(self.group)
        state.frame_changed.connect(lambda _i: self.refresh())
        annotations.changed.connect(lambda _e: self.refresh())
        annotations.current_image_changed.connect(self.refresh)
        if view is not None:  # zoom, pan and resize move the shapes: their values follow, inside
            for bar in (view.horizontalScrollBar(), view.verticalScrollBar()):
                bar.valueChanged.connect(lambda _v: fit_labels(self.group, view))
            if hasattr(view, "zoom_changed"):
                view.zoom_changed.connect(lambda _z: fit_labels(self.group, view))

    def refresh(self) -> None:
        controller = self.annotations
        shapes = []
        if controller.doc is not None and controller.image_id is not None:
            for m in controller.doc.measurements(controller.image_id, self.state.frame_index):
                graphic, closed = outline(m.kind, graphic_points(m.kind, m.points))
                shapes.append((graphic, closed, True, m.summary()))
        add_shapes(self.group, shapes, 4.0 / max(self.scale(), 1e-6), self.view)
