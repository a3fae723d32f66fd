"""Left-button tools of the canvas: pan, draw a box, select / move / resize boxes.

Coordinates snap to whole pixels and stay inside the image. A move or resize executes one
``SetGeometry`` per mouse move with the same drag token, which the engine merges into a single
undo step, so the document is always what the user sees.
"""

from __future__ import annotations

from enum import StrEnum

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from app.annotations.box_overlay import HANDLE_PX, BoxOverlay, handle_points
from app.annotations.controller import AnnotationController
from app.viewer.state import ViewerState

MIN_BOX_PX = 1.0


class Tool(StrEnum):
    PAN = "pan"
    BOX = "box"
    SELECT = "select"


class BoxTools:
    def __init__(self, canvas, state: ViewerState, controller: AnnotationController, overlay: BoxOverlay) -> None:
        self.canvas = canvas
        self.state = state
        self.controller = controller
        self.overlay = overlay
        self.tool = Tool.PAN
        self._mode: str | None = None  # "draw" | "move" | "resize" | "band"
        self._origin = QPointF()
        self._box_id: str | None = None
        self._start_rect: tuple[float, float, float, float] = (0, 0, 0, 0)
        self._handle = ""
        self._drag = 0
        self._preview: QGraphicsRectItem | None = None

    # ----- helpers
    def _snap(self, point: QPointF) -> QPointF:
        stack = self.state.stack
        x = min(max(round(point.x()), 0), stack.columns)
        y = min(max(round(point.y()), 0), stack.rows)
        return QPointF(x, y)

    def _show_preview(self, rect: QRectF, dashed: bool) -> None:
        if self._preview is None:
            self._preview = QGraphicsRectItem()
            self._preview.setZValue(20)
            self.canvas.scene().addItem(self._preview)
        pen = QPen(QColor("#ffd54f"), 1.5, Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
        pen.setCosmetic(True)
        self._preview.setPen(pen)
        self._preview.setRect(rect.normalized())

    def _hide_preview(self) -> None:
        if self._preview is not None:
            self.canvas.scene().removeItem(self._preview)
            self._preview = None

    def _handle_at(self, view_point) -> tuple[str, str] | None:
        for box_id in self.controller.selected:
            item = self.overlay.items.get(box_id)
            if item is None:
                continue
            for name, point in handle_points(item.rect()).items():
                if (self.canvas.mapFromScene(point) - view_point).manhattanLength() <= HANDLE_PX:
                    return box_id, name
        return None

    # ----- events (return True when handled)
    def press(self, event) -> bool:
        if self.tool is Tool.PAN or self.state.stack is None or self.controller.doc is None:
            return False
        view_point = event.position().toPoint()
        scene_point = self.canvas.mapToScene(view_point)
        self._origin = self._snap(scene_point)
        if self.tool is Tool.BOX:
            self._mode = "draw"
            return True
        handle = self._handle_at(view_point)
        if handle is not None:
            self._mode, (self._box_id, self._handle) = "resize", handle
        else:
            item = self.overlay.item_at(scene_point)
            additive = bool(
                event.modifiers() & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier)
            )
            if item is None:
                if not additive:
                    self.controller.select(set())
                self._mode = "band"
                return True
            if additive:
                self.controller.select(self.controller.selected ^ {item.box_id})
                self._mode = None
                return True
            if item.box_id not in self.controller.selected:
                self.controller.select({item.box_id})
            self._mode, self._box_id = "move", item.box_id
        box = self.controller.box(self._box_id)
        self._start_rect = box.rect
        self._drag = self.controller.new_drag()
        return True

    def move(self, event) -> bool:
        if self._mode is None:
            return False
        point = self._snap(self.canvas.mapToScene(event.position().toPoint()))
        if self._mode in ("draw", "band"):
            self._show_preview(QRectF(self._origin, point), dashed=self._mode == "band")
        elif self._mode == "move":
            x1, y1, x2, y2 = self._start_rect
            stack = self.state.stack
            dx = min(max(point.x() - self._origin.x(), -x1), stack.columns - x2)
            dy = min(max(point.y() - self._origin.y(), -y1), stack.rows - y2)
            self.controller.set_geometry(self._box_id, (x1 + dx, y1 + dy, x2 + dx, y2 + dy), self._drag)
        elif self._mode == "resize":
            x1, y1, x2, y2 = self._start_rect
            if "l" in self._handle:
                x1 = point.x()
            if "r" in self._handle:
                x2 = point.x()
            if "t" in self._handle:
                y1 = point.y()
            if "b" in self._handle:
                y2 = point.y()
            if abs(x2 - x1) >= MIN_BOX_PX and abs(y2 - y1) >= MIN_BOX_PX:
                self.controller.set_geometry(self._box_id, (x1, y1, x2, y2), self._drag)
        return True

    def release(self, event) -> bool:
        if self._mode is None:
            return False
        point = self._snap(self.canvas.mapToScene(event.position().toPoint()))
        rect = QRectF(self._origin, point).normalized()
        if self._mode == "draw" and rect.width() >= MIN_BOX_PX and rect.height() >= MIN_BOX_PX:
            self.controller.add_box(self.state.frame_index, rect.left(), rect.top(), rect.right(), rect.bottom())
        elif self._mode == "band":
            hits = {box_id for box_id, item in self.overlay.items.items() if rect.intersects(item.rect())}
            additive = bool(
                event.modifiers() & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier)
            )
            self.controller.select(self.controller.selected | hits if additive else hits)
        self._hide_preview()
        self._mode = None
        return True

    def cancel(self) -> None:
        self._hide_preview()
        self._mode = None
