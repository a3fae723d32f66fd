"""Text in the corners of an image view: what OHIF and Slicer show over the image.

Series, slice number and position, thickness, window and zoom, read at a glance without
looking away from the image; the patient's name only while identifiers are shown (the metadata
panel's "Show patient identifiers"). The overlay is a widget over the view's viewport, so it
stays in screen pixels whatever the zoom, and it lets every click through to the image.
One key (the shortcut table's ``view.corner_overlays``) shows or hides it in every view.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QAbstractScrollArea, QWidget

from app.viewer.state import ViewerState
from engine.imaging import Frame, ImageStack, Window

TOGGLE_CORNERS_COMMAND = "view.corner_overlays"  # its key (O) is in the shortcut table
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
TEXT_COLOUR = QColor("#e8e8e8")
MARGIN = 6


class CornerOverlay(QWidget):
    """Lines of text in the four corners of a view's viewport, outlined in black for contrast."""

    def __init__(self, view: QAbstractScrollArea) -> None:
        super().__init__(view)  # a child of the view, not of its viewport: scrolling moves those
        self.view = view
        self._lines: dict[str, list[str]] = {corner: [] for corner in CORNERS}
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
        self.setFont(QFont("Sans", 9))
        self._viewport = view.viewport()
        self._viewport.installEventFilter(self)  # its Resize comes once its new size is set
        self._fit()

    # ----- content
    def set_lines(self, corner: str, lines: list[str]) -> None:
        lines = [line for line in lines if line]
        if self._lines[corner] != lines:
            self._lines[corner] = lines
            self.update()

    def lines(self, corner: str) -> list[str]:
        return list(self._lines[corner])

    def text(self) -> str:
        """Every line shown, corner by corner (what a reader sees, for tests and the clipboard)."""
        return "\n".join(line for corner in CORNERS for line in self._lines[corner])

    # ----- geometry
    def text_rect(self, corner: str) -> QRect:
        """Where a corner's text is drawn, in viewport pixels (empty when it has none)."""
        lines = self._lines[corner]
        if not lines:
            return QRect()
        metrics = QFontMetrics(self.font())
        width = max(metrics.horizontalAdvance(line) for line in lines)
        height = metrics.height() * len(lines)
        area = self._viewport.rect()  # not this widget's size: it may not have followed yet
        x = MARGIN if corner.endswith("left") else area.width() - MARGIN - width
        y = MARGIN if corner.startswith("top") else area.height() - MARGIN - height
        return QRect(x, y, width, height)

    def occupied(self) -> list[QRect]:
        """The rectangles of every non-empty corner while shown (labels placed nearby avoid them)."""
        if self.isHidden():
            return []
        return [rect for rect in (self.text_rect(c) for c in CORNERS) if not rect.isEmpty()]

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._viewport and event.type() in (QEvent.Type.Resize, QEvent.Type.Show):
            self._fit()
        return False

    def _fit(self) -> None:
        self.setGeometry(self._viewport.geometry())
        self.raise_()

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        metrics = QFontMetrics(self.font())
        path = QPainterPath()
        for corner in CORNERS:
            rect = self.text_rect(corner)
            for i, line in enumerate(self._lines[corner]):
                x = rect.left() if corner.endswith("left") else rect.right() - metrics.horizontalAdvance(line)
                path.addText(QPoint(x, rect.top() + i * metrics.height() + metrics.ascent()), self.font(), line)
        painter.strokePath(path, QPen(QColor(0, 0, 0, 220), 3.0))  # a dark outline on any tissue
        painter.fillPath(path, TEXT_COLOUR)


# ----- what the single view shows
def window_text(window: Window | None, frame: Frame | None, invert: bool) -> str:
    if frame is None:
        return ""
    if frame.is_color:
        text = "Colour"
    elif window is None:
        text = "VOI LUT (header)"
    else:
        text = f"C {window.center:.0f} / W {window.width:.0f}"
    return text + ("  inverted" if invert else "")


def slice_location_mm(stack: ImageStack, index: int) -> float | None:
    """Where a slice lies along its normal (mm), from ImagePositionPatient, else SliceLocation."""
    header = stack.header(index)
    if header is None:
        return None
    try:
        position = np.asarray([float(v) for v in header.ImagePositionPatient])
        orientation = np.asarray([float(v) for v in header.ImageOrientationPatient])
        return float(position @ np.cross(orientation[:3], orientation[3:]))
    except (AttributeError, TypeError, ValueError):
        pass
    try:
        return float(header.SliceLocation)
    except (AttributeError, TypeError, ValueError):
        return None


def _header_text(stack: ImageStack, index: int, keyword: str) -> str:
    header = stack.header(index)
    return str(header.get(keyword, "") or "").strip() if header is not None else ""


def single_view_lines(state: ViewerState, zoom: float, show_phi: bool) -> dict[str, list[str]]:
    """The four corners of the single view for the frame on screen."""
    stack, index = state.stack, state.frame_index
    if stack is None:
        return {corner: [] for corner in CORNERS}
    name = _header_text(stack, index, "PatientName").replace("^", " ") if show_phi else ""
    description = _header_text(stack, index, "SeriesDescription") or stack.title
    location = slice_location_mm(stack, index)
    thickness = _header_text(stack, index, "SliceThickness")
    return {
        "top_left": [name, description, _header_text(stack, index, "Modality")],
        "top_right": [
            f"Slice {index + 1}/{stack.n_frames}",
            f"Loc {location:.1f} mm" if location is not None else "",
            f"Thk {float(thickness):g} mm" if _is_number(thickness) else "",
        ],
        "bottom_left": [window_text(state.window, state.frame, state.invert), f"Zoom {zoom * 100:.0f}%"],
        "bottom_right": [],
    }


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class SingleViewCorners(CornerOverlay):
    """The corner overlay of the single-plane canvas, kept up to date with the viewer state."""

    def __init__(self, canvas, state: ViewerState, show_phi: Callable[[], bool]) -> None:
        super().__init__(canvas)
        self.canvas, self.state, self.show_phi = canvas, state, show_phi
        for signal in (state.frame_changed, state.display_changed, state.stack_changed, canvas.zoom_changed):
            signal.connect(lambda *_: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        for corner, lines in single_view_lines(self.state, self.canvas.zoom, self.show_phi()).items():
            self.set_lines(corner, lines)
