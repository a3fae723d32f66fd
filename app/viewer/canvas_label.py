"""A one-line label over the image (the Classify panel's KPL result) that never covers the corners.

It sits at the top left, where a reader looks first, but below the top-left corner's lines
while those are shown, so "Series / CT" and "pneumonia 0.91" never draw over each other.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

from app.viewer.corner_overlay import CornerOverlay

GAP = 4


class BelowCornerLabel(QLabel):
    """A label on a view (not its viewport: scrolling moves those), kept under the top-left corner."""

    def __init__(self, corners: CornerOverlay) -> None:
        super().__init__(corners.view)
        self.corners = corners
        self.setStyleSheet("background: rgba(0, 0, 0, 160); color: #9dff57; padding: 3px 6px;")
        corners.changed.connect(self.place)
        self.hide()
        self.place()

    def show_text(self, text: str) -> None:
        """Show ``text`` (empty hides it)."""
        self.setText(text)
        self.adjustSize()
        self.setVisible(bool(text))
        self.place()
        self.raise_()

    def place(self) -> None:
        origin = self.corners.geometry().topLeft()  # the viewport's place in the view
        corner = self.corners.text_rect("top_left") if not self.corners.isHidden() else None
        y = corner.bottom() + 1 + GAP if corner is not None and not corner.isEmpty() else 8
        self.move(origin.x() + 8, origin.y() + y)

    def viewport_rect(self):
        """Where the label is, in the viewport's pixels (the corners' coordinates)."""
        return self.geometry().translated(-self.corners.geometry().topLeft())
