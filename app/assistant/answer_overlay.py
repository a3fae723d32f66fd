"""Boxes from the model's answers, drawn over the frame they were asked about.

They are not annotations until the user accepts one (A), which adds it to the document as a
model box through an undoable command. Each box carries the phrase it grounds; hovering that
phrase in the chat highlights the box. A second opinion's boxes are dotted and captioned with
their model's letter (and, when paired with a box of the first model, their IoU).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem, QGraphicsScene, QGraphicsSimpleTextItem

from app.viewer.state import ViewerState

ANSWER_COLOURS = ("#ff5fd2", "#4fd1ff", "#ffb84f", "#9dff57", "#b18cff", "#ff6b6b")


@dataclass(frozen=True)
class AnswerBox:
    """One box of one answer, in pixels of the original image."""

    turn: int  # index of the turn in this image's conversation
    index: int  # index of the box in that answer
    x1: float
    y1: float
    x2: float
    y2: float
    phrase: str
    frame: int
    caption: str = ""  # drawn beside the box instead of the phrase (a second opinion names its model)
    dotted: bool = False  # the second opinion's boxes: dotted, the first model's dash-dotted

    @property
    def key(self) -> str:
        return f"{self.turn}:{self.index}"


class AnswerItem(QGraphicsRectItem):
    def __init__(self, box: AnswerBox, colour: str) -> None:
        super().__init__(QRectF(box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1))
        self.box = box
        self.colour = QColor(colour)
        self.setZValue(15)
        caption = QGraphicsSimpleTextItem(box.caption or box.phrase or "answer", self)
        caption.setBrush(QBrush(self.colour))
        caption.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        caption.setPos(box.x1, box.y2)
        self.set_highlight(False)

    def set_highlight(self, on: bool) -> None:
        style = Qt.PenStyle.DotLine if self.box.dotted else Qt.PenStyle.DashDotLine
        pen = QPen(self.colour, 3.5 if on else 2, Qt.PenStyle.SolidLine if on else style)
        pen.setCosmetic(True)
        self.setPen(pen)


class AnswerOverlay:
    def __init__(self, scene: QGraphicsScene, state: ViewerState) -> None:
        self.scene = scene
        self.state = state
        self.boxes: list[AnswerBox] = []
        self.items: dict[str, AnswerItem] = {}
        self.highlighted: str | None = None
        state.frame_changed.connect(lambda _i: self._rebuild())

    def show(self, boxes: list[AnswerBox]) -> None:
        self.boxes = boxes
        self.highlighted = None
        self._rebuild()

    def _rebuild(self) -> None:
        for item in self.items.values():
            self.scene.removeItem(item)
        self.items = {}
        for box in self.boxes:
            if box.frame == self.state.frame_index:
                item = AnswerItem(box, ANSWER_COLOURS[box.turn % len(ANSWER_COLOURS)])
                self.scene.addItem(item)
                self.items[box.key] = item
        self.highlight(self.highlighted)

    def highlight(self, key: str | None) -> None:
        self.highlighted = key if key in {b.key for b in self.boxes} else None
        for item_key, item in self.items.items():
            item.set_highlight(item_key == self.highlighted)

    def highlighted_box(self) -> AnswerBox | None:
        return next((b for b in self.boxes if b.key == self.highlighted), None)
