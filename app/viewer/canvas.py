"""The image canvas: one scene whose coordinates are the original image's pixel coordinates.

Zoom and pan are view transforms, so overlays placed in pixel coordinates (boxes, answers) follow
the image without any bookkeeping. When zoomed out, the frame is rendered at viewport resolution
(every ``step``-th pixel) and scaled back up, as pyqtgraph's auto-downsampling does; at 1:1 and
above every stored pixel is rendered exactly.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QMouseEvent, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import QApplication, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

from app.viewer.state import ViewerState
from app.widgets.qimage import to_qimage
from engine.imaging import Window, auto_window, render

ZOOM_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 0.02, 64.0


class ImageCanvas(QGraphicsView):
    cursor_moved = Signal(float, float)  # image pixel coordinates (x to the right, y down)
    cursor_left = Signal()
    zoom_changed = Signal(float)
    context_requested = Signal(QPointF, QPoint)  # a right click (no drag): image pixel point, global position

    def __init__(self, state: ViewerState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QBrush(QColor("#000000")))
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.setMouseTracking(True)
        # Radiology viewers pan by dragging; scroll bars would only take space from the image.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(False)  # the main window takes dropped files
        self.image_item = QGraphicsPixmapItem()
        self.image_item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        self.scene().addItem(self.image_item)
        self.rendered_step = 1
        self._drag_kind: str | None = None
        self._drag_origin = QPointF()
        self._drag_window: Window | None = None
        self._drag_sensitivity = 1.0
        self._fit_pending = False
        self._render_pending = False
        self.tools = None  # BoxTools, installed by the main window; gets left-button events first
        state.stack_changed.connect(self._on_stack_changed)
        state.display_changed.connect(self.schedule_render)

    # ----- geometry
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def image_rect(self) -> QRectF:
        stack = self.state.stack
        return QRectF(0, 0, stack.columns, stack.rows) if stack else QRectF()

    def fit_to_window(self) -> None:
        rect = self.image_rect()
        if rect.isEmpty():
            return
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._after_zoom()

    def set_zoom(self, zoom: float) -> None:
        zoom = min(max(zoom, MIN_ZOOM), MAX_ZOOM)
        self.setTransform(self.transform().fromScale(zoom, zoom))
        self._after_zoom()

    def zoom_by(self, factor: float) -> None:
        self.set_zoom(self.zoom * factor)

    def center_on_pixel(self, x: float, y: float) -> None:
        self.centerOn(QPointF(x, y))

    def _after_zoom(self) -> None:
        if self._step_for_zoom() != self.rendered_step:
            self.render_now()
        self.zoom_changed.emit(self.zoom)

    def _step_for_zoom(self) -> int:
        return max(1, int(1.0 / self.zoom)) if self.zoom > 0 else 1

    # ----- rendering
    def schedule_render(self) -> None:
        """Coalesce bursts of window changes (a drag) into one render per event-loop pass."""
        if not self._render_pending:
            self._render_pending = True
            QTimer.singleShot(0, self.render_now)

    def render_now(self) -> None:
        self._render_pending = False
        frame = self.state.frame
        if frame is None:
            if not self.state.loading:  # while decoding, the last frame stays until the new one comes
                self.image_item.setPixmap(QPixmap())
            return
        step = self._step_for_zoom()
        pixels = render(frame, self.state.window, invert=self.state.invert, step=step)
        self.image_item.setPixmap(QPixmap.fromImage(to_qimage(pixels)))
        self.image_item.setScale(step)
        self.rendered_step = step

    def _on_stack_changed(self) -> None:
        rect = self.image_rect()
        margin = max(rect.width(), rect.height())
        self.scene().setSceneRect(rect.adjusted(-margin, -margin, margin, margin))
        self._fit_pending = True
        QTimer.singleShot(0, self._fit_if_pending)

    def _fit_if_pending(self) -> None:
        if self._fit_pending:
            self._fit_pending = False
            self.fit_to_window()
            self.render_now()

    # ----- input
    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps == 0:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier or self.state.n_frames <= 1:
            self.zoom_by(ZOOM_STEP**steps)
        else:
            self.state.step_frame(-int(math.copysign(max(1, round(abs(steps))), steps)))
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if button == Qt.MouseButton.LeftButton and self.tools is not None and self.tools.press(event):
            self._drag_kind = "tool"
            event.accept()
        elif button == Qt.MouseButton.RightButton and self.state.frame is not None:
            self._start_drag("window" if not self.state.frame.is_color else "context", event)
        elif button in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._start_drag("pan", event)
        else:
            super().mousePressEvent(event)

    def _start_drag(self, kind: str, event: QMouseEvent) -> None:
        self._drag_kind = kind
        self._drag_origin = event.position()
        if kind == "window":
            self._drag_window = self.state.effective_window()
            # A pixel of mouse travel moves the window by 1/512 of the image's robust value range.
            self._drag_sensitivity = max(auto_window(self.state.frame).width / 512.0, 1e-3)
        elif kind == "pan":
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        position = event.position()
        if self._drag_kind == "tool":
            self.tools.move(event)
        elif self._drag_kind == "window" and self._drag_window is not None:
            delta = position - self._drag_origin
            start = self._drag_window
            self.state.set_window(
                Window(
                    center=start.center + delta.y() * self._drag_sensitivity,
                    width=max(1.0, start.width + delta.x() * self._drag_sensitivity),
                    function=start.function,
                    explanation="manual",
                )
            )
        elif self._drag_kind == "pan":
            delta = position - self._drag_origin
            self._drag_origin = position
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
        scene_point = self.mapToScene(position.toPoint())
        self.cursor_moved.emit(scene_point.x(), scene_point.y())
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag_kind is not None:
            if self._drag_kind == "tool":
                self.tools.release(event)
            elif self._drag_kind in ("window", "context") and self._is_click(event):
                # A right click that did not drag the window asks for the menu of what is under it.
                self.context_requested.emit(
                    self.mapToScene(event.position().toPoint()), event.globalPosition().toPoint()
                )
            self._drag_kind = None
            self.viewport().unsetCursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def _is_click(self, event: QMouseEvent) -> bool:
        return (event.position() - self._drag_origin).manhattanLength() < QApplication.startDragDistance()

    def leaveEvent(self, event) -> None:
        self.cursor_left.emit()
        super().leaveEvent(event)
