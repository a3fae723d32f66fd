"""Boxes drawn over the image: one graphics item per visible box of the current frame.

Items are placed in image pixel coordinates, so zoom and pan move them with the image. The
overlay is a view of the document: it rebuilds from the controller after every change and never
edits boxes itself (the tools do, through commands).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem, QGraphicsScene, QGraphicsSimpleTextItem

from app.annotations.controller import AnnotationController
from app.viewer.state import ViewerState
from engine.annotations import Box, Review, Source

HANDLE_PX = 7  # handle size on screen, whatever the zoom
HANDLES = ("tl", "t", "tr", "r", "br", "b", "bl", "l")


def handle_points(rect: QRectF) -> dict[str, QPointF]:
    cx, cy = rect.center().x(), rect.center().y()
    return {
        "tl": rect.topLeft(),
        "t": QPointF(cx, rect.top()),
        "tr": rect.topRight(),
        "r": QPointF(rect.right(), cy),
        "br": rect.bottomRight(),
        "b": QPointF(cx, rect.bottom()),
        "bl": rect.bottomLeft(),
        "l": QPointF(rect.left(), cy),
    }


class BoxItem(QGraphicsRectItem):
    def __init__(self, box: Box, color: str) -> None:
        super().__init__(QRectF(box.x1, box.y1, box.width, box.height))
        self.box_id = box.id
        self.box = box
        self.color = QColor(color)
        self.selected_look = False
        self.setZValue(10)
        caption = box.label + (f" {box.score:.2f}" if box.score is not None else "")
        if box.review is Review.REJECTED:
            caption += " ✗"
        self.caption = QGraphicsSimpleTextItem(caption, self)
        self.caption.setBrush(QBrush(self.color))
        self.caption.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.caption.setPos(box.x1, box.y1)
        self._apply_pen()

    def _apply_pen(self) -> None:
        pen = QPen(self.color, 3 if self.selected_look else 1.5)
        pen.setCosmetic(True)
        if self.box.source is not Source.USER and self.box.review is Review.PENDING:
            pen.setStyle(Qt.PenStyle.DashLine)  # machine output not yet reviewed
        if self.box.review is Review.REJECTED:
            pen.setStyle(Qt.PenStyle.DotLine)
        self.setPen(pen)

    def set_selected_look(self, selected: bool) -> None:
        self.selected_look = selected
        self._apply_pen()
        self.update()

    def paint(self, painter: QPainter, option, widget=None) -> None:
        super().paint(painter, option, widget)
        if not self.selected_look:
            return
        scale = painter.worldTransform().m11() or 1.0
        half = HANDLE_PX / 2 / scale
        painter.setBrush(QBrush(self.color))
        pen = QPen(QColor("#000000"), 1)
        pen.setCosmetic(True)
        painter.setPen(pen)
        for point in handle_points(self.rect()).values():
            painter.drawRect(QRectF(point.x() - half, point.y() - half, 2 * half, 2 * half))

    def boundingRect(self) -> QRectF:
        margin = 8.0  # room for handles at any zoom >= 1; larger zooms shrink them in scene units
        return super().boundingRect().adjusted(-margin, -margin, margin, margin)


class BoxOverlay:
    def __init__(self, scene: QGraphicsScene, state: ViewerState, controller: AnnotationController) -> None:
        self.scene = scene
        self.state = state
        self.controller = controller
        self.items: dict[str, BoxItem] = {}
        controller.changed.connect(lambda _event: self.sync())
        controller.selection_changed.connect(self._sync_selection)
        controller.current_image_changed.connect(self.sync)
        state.frame_changed.connect(lambda _index: self.sync())

    def sync(self) -> None:
        for item in self.items.values():
            self.scene.removeItem(item)
        self.items = {}
        if self.controller.doc is None:
            return
        colours = {label.name: label.color for label in self.controller.doc.labels}
        for box in self.controller.visible_boxes(self.state.frame_index):
            item = BoxItem(box, colours.get(box.label, "#ffcc00"))
            self.scene.addItem(item)
            self.items[box.id] = item
        self._sync_selection()

    def _sync_selection(self) -> None:
        for box_id, item in self.items.items():
            item.set_selected_look(box_id in self.controller.selected)

    def item_at(self, point: QPointF) -> BoxItem | None:
        """The smallest box containing ``point`` (small boxes inside big ones stay reachable)."""
        hits = [item for item in self.items.values() if item.rect().contains(point)]
        return min(hits, key=lambda item: item.rect().width() * item.rect().height(), default=None)
