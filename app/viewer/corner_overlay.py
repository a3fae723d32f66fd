"""Text in the corners of an image view: what OHIF and Slicer show over the image.

Series, slice number and position, thickness, window and zoom, read at a glance without
looking away from the image; the patient's name only while identifiers are shown (the metadata
panel's "Show patient identifiers"). The overlay is a widget over the view's viewport, so it
stays in screen pixels whatever the zoom, and it lets every click through to the image.
One key (the shortcut table's ``view.corner_overlays``) shows or hides it in every view.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QAbstractScrollArea, QWidget

from app.viewer.corner_fields import FIELD_IDS, FIELDS
from app.viewer.state import ViewerState
from engine.imaging import Frame, ImageStack, Window
from engine.imaging.dicom_params import functional_item, slice_location

TOGGLE_CORNERS_COMMAND = "view.corner_overlays"  # its key (O) is in the shortcut table
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
TEXT_COLOUR = QColor("#e8e8e8")
MARGIN = 6


class CornerOverlay(QWidget):
    """Lines of text in the four corners of a view's viewport, outlined in black for contrast."""

    changed = Signal()  # lines, visibility or size: whatever is placed beside the corners moves

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
            self.changed.emit()

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
        self.changed.emit()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.changed.emit()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.changed.emit()

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
    """Where a slice lies along its normal (mm): ImagePositionPatient, from the frame's own
    functional group in an enhanced multi-frame file (it has no top-level position), else
    SliceLocation."""
    header = stack.header(index)
    if header is None:
        return None
    location = slice_location(header, _frame_in_file(stack, index))
    if location is not None:
        return location
    try:
        return float(header.SliceLocation)
    except (AttributeError, TypeError, ValueError):
        return None


def slice_thickness_mm(stack: ImageStack, index: int) -> float | None:
    """SliceThickness, from the frame's PixelMeasuresSequence in an enhanced file, else the header."""
    header = stack.header(index)
    if header is None:
        return None
    measures = functional_item(header, _frame_in_file(stack, index), "PixelMeasuresSequence")
    for source in (measures, header):
        try:
            return float(source.SliceThickness)
        except (AttributeError, TypeError, ValueError):
            continue
    return None


def _frame_in_file(stack: ImageStack, index: int) -> int:
    return stack.frame_source(index).frame_number - 1


def _header_text(stack: ImageStack, index: int, keyword: str) -> str:
    header = stack.header(index)
    return str(header.get(keyword, "") or "").strip() if header is not None else ""


def zoom_text(zoom: float) -> str:
    """One wording for a zoom factor (1.0 = one screen pixel per stored pixel), overlay and status bar."""
    return f"Zoom {zoom * 100:.0f}%"


def field_lines(corner_texts: dict[str, str], fields: frozenset[str]) -> dict[str, list[str]]:
    """The four corners from each field's text, keeping only the reader's chosen fields in order."""
    corners: dict[str, list[str]] = {corner: [] for corner in CORNERS}
    for item in FIELDS:
        if item.id in fields and corner_texts.get(item.id):
            corners[item.corner].append(corner_texts[item.id])
    return corners


def single_view_lines(
    state: ViewerState, zoom: float, show_phi: bool, fields: frozenset[str] = FIELD_IDS
) -> dict[str, list[str]]:
    """The four corners of the single view for the frame on screen."""
    stack, index = state.stack, state.frame_index
    if stack is None:
        return {corner: [] for corner in CORNERS}
    location = slice_location_mm(stack, index)
    thickness = slice_thickness_mm(stack, index)
    texts = {
        "patient_name": _header_text(stack, index, "PatientName").replace("^", " ") if show_phi else "",
        "description": _header_text(stack, index, "SeriesDescription") or stack.title,
        "modality": _header_text(stack, index, "Modality"),
        "slice": f"Slice {index + 1}/{stack.n_frames}",
        "location": f"Loc {location:.1f} mm" if location is not None else "",
        "thickness": f"Thk {thickness:g} mm" if thickness is not None else "",
        "window": window_text(state.window, state.frame, state.invert),
        "zoom": zoom_text(zoom),
    }
    return field_lines(texts, fields)


class SingleViewCorners(CornerOverlay):
    """The corner overlay of the single-plane canvas, kept up to date with the viewer state."""

    def __init__(self, canvas, state: ViewerState, show_phi: Callable[[], bool]) -> None:
        super().__init__(canvas)
        self.canvas, self.state, self.show_phi = canvas, state, show_phi
        self.fields = FIELD_IDS
        for signal in (state.frame_changed, state.display_changed, state.stack_changed, canvas.zoom_changed):
            signal.connect(lambda *_: self.refresh())
        self.refresh()

    def set_fields(self, fields: frozenset[str]) -> None:
        self.fields = fields
        self.refresh()

    def refresh(self) -> None:
        lines_of = single_view_lines(self.state, self.canvas.zoom, self.show_phi(), self.fields)
        for corner, lines in lines_of.items():
            self.set_lines(corner, lines)
