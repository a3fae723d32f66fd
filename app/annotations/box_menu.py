"""The menu of a box on the canvas (a right click on it): Segment, and Accept / Reject while a
model's box waits for review.

Segmenting belongs to app/segmentation, which this layer may not import; the menu says what was
asked with ``segment_requested`` and the main window connects it to the segmentation controller,
as it does for "Segment" beside an answer. The box clicked becomes the selection first, so Accept
and Reject are the same review commands (and undo steps) as the A and X keys.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QPoint, QPointF, Signal
from PySide6.QtWidgets import QMenu

from app.annotations.box_overlay import BoxOverlay
from app.annotations.controller import AnnotationController
from engine.annotations import Review, Source


class BoxMenu(QObject):
    segment_requested = Signal(int, object, str)  # frame, (x1, y1, x2, y2) in image pixels, label

    def __init__(self, canvas, overlay: BoxOverlay, controller: AnnotationController) -> None:
        super().__init__(canvas)
        self.canvas, self.overlay, self.controller = canvas, overlay, controller
        self.menu: QMenu | None = None  # the last one shown (kept so that it lives while open)
        canvas.context_requested.connect(self.open_at)

    def menu_at(self, point: QPointF) -> QMenu | None:
        """The menu of the box under ``point`` (image pixels), which becomes the selection; None off boxes."""
        item = self.overlay.item_at(point)
        box = self.controller.box(item.box_id) if item is not None else None
        if box is None:
            return None
        self.controller.select({box.id})
        menu = QMenu(self.canvas)
        segment = menu.addAction("Segment")
        segment.setStatusTip("Turn this box into a mask with the segmentation model")
        segment.triggered.connect(lambda: self.segment_requested.emit(box.frame, box.rect, box.label))
        if box.source is not Source.USER and box.review is Review.PENDING:
            menu.addSeparator()
            menu.addAction("Accept").triggered.connect(lambda: self.controller.review_selected(Review.ACCEPTED))
            menu.addAction("Reject").triggered.connect(lambda: self.controller.review_selected(Review.REJECTED))
        return menu

    def open_at(self, point: QPointF, where: QPoint) -> None:
        menu = self.menu_at(point)
        if menu is not None:
            if self.menu is not None:
                self.menu.deleteLater()
            self.menu = menu
            menu.popup(where)
