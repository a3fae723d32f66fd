"""Three linked planes of a volume: axial, coronal and sagittal viewports with a shared crosshair.

Every viewport renders ``Volume.plane_frame`` through the one display function with the viewer's
window (``ViewerState.window``/``invert``), so window/level, presets and invert are shared with
the single-plane view and between the three planes. Scene coordinates are the plane's display
coordinates (square pixels), so aspect is right by construction. A left click (Pan tool) moves
the crosshair, which picks the slice of the two other planes; the wheel scrolls a plane's own
slices; right-drag changes the window; Ctrl+wheel zooms; middle-drag pans.

Measurement tools draw on any plane: the measurement keeps that plane's display points and its
outline in patient coordinates (``PlanePlacement``), and every plane shows where it crosses it.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QMouseEvent, QPainter, QPainterPath, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QGraphicsItemGroup,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QGridLayout,
    QLabel,
    QWidget,
)

from app.annotations.measure_tools import MeasureInput, add_shapes, cosmetic_pen, fit_labels
from app.viewer.corner_fields import FIELD_IDS
from app.viewer.corner_overlay import CornerOverlay, field_lines, window_text, zoom_text
from app.viewer.state import ViewerState
from app.volumes import native_slices
from app.volumes.mask_planes import Z_VALUE as MASK_Z
from app.volumes.mask_planes import PlaneMasks
from app.widgets.qimage import to_qimage
from engine.annotations import AddAnnotations, Box, Mask, MeasureKind, Measurement, PlanePlacement, SetMeasurement
from engine.annotations.measure import graphic_points, measure, modality_unit, outline
from engine.imaging import Frame, Plane, Volume, Window, auto_window, render

LAYOUTS = ("1x1", "1x3", "2x2")
CROSSHAIR_COLOURS = {Plane.AXIAL: "#ff5a5a", Plane.CORONAL: "#5ad05a", Plane.SAGITTAL: "#5a9bff"}
ZOOM_STEP = 1.25
# the patient axis (LPS) each plane holds fixed, with its letters for - and +: "S 104.0 mm"
_PLANE_POSITION = {Plane.AXIAL: (2, "IS"), Plane.CORONAL: (1, "AP"), Plane.SAGITTAL: (0, "RL")}


class PlaneViewport(QGraphicsView):
    """One plane of the volume; scene coordinates are that plane's display pixels."""

    def __init__(self, view: MprView, plane: Plane) -> None:
        super().__init__()
        self.view, self.plane = view, plane
        self.index = 0
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QBrush(QColor("#000000")))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.image_item = QGraphicsPixmapItem()
        self.scene().addItem(self.image_item)
        self.crosshair = QGraphicsItemGroup()
        self.annotations = QGraphicsItemGroup()
        self.masks = QGraphicsItemGroup()  # one pixmap per mask on this plane slice (mask_planes)
        self.masks.setZValue(MASK_Z)
        for item in (self.masks, self.annotations, self.crosshair):
            self.scene().addItem(item)
        self.input = MeasureInput(
            self.scene(),
            self._drawn,
            lambda measurement, points: view.edit_measurement(plane, self.index, measurement, points),
        )
        self.letters = {edge: _overlay_label(self) for edge in ("left", "right", "top", "bottom")}
        self.info = _overlay_label(self)
        self.corners = CornerOverlay(self)
        self._drag: str | None = None
        self._origin = QPointF()
        self._start_window: Window | None = None

    # ----- content
    @property
    def volume(self) -> Volume:
        return self.view.volume

    def plane_frame(self) -> Frame:
        return self.volume.plane_frame(self.plane, self.index)

    def render_now(self) -> None:
        state = self.view.state
        pixels = render(self.plane_frame(), state.window, invert=state.invert)
        self.image_item.setPixmap(QPixmap.fromImage(to_qimage(pixels)))
        self.info.setText(self.view.plane_title(self.plane))
        self.info.adjustSize()
        self.refresh_corners()

    def refresh_corners(self) -> None:
        """Window and zoom bottom left, where the slice lies top right (what the title lacks);
        only the fields the reader chose (the title top left carries the slice number)."""
        state, axes = self.view.state, self.volume.axes(self.plane)
        axis, letters = _PLANE_POSITION[self.plane]
        centre = self.volume.display_to_patient(self.plane, self.index, axes.width / 2, axes.height / 2)
        mm = float(np.asarray(centre).reshape(-1)[axis])
        texts = {
            "location": f"{letters[mm >= 0]} {abs(mm):.1f} mm",
            "window": window_text(state.window, self.plane_frame(), state.invert),
            "zoom": zoom_text(self.zoom()),
        }
        for corner, lines in field_lines(texts, self.view.corner_fields).items():
            self.corners.set_lines(corner, lines)
        self._place_labels()

    def zoom(self) -> float:
        """Screen pixels per stored pixel of the series, as the single view counts zoom (1.0 = 100%)."""
        geometry = self.volume.geometry
        return self.transform().m11() * self.volume.axes(self.plane).pixel_mm / geometry.column_spacing_mm

    def view_moved(self) -> None:
        """Zoom, pan or resize: values stay inside the pane, the zoom line follows."""
        fit_labels(self.annotations, self)
        if self.volume is not None:
            self.refresh_corners()
            if self.plane is self.view.active:
                self.view.zoom_changed.emit(self.zoom())

    def set_geometry_labels(self) -> None:
        axes = self.volume.axes(self.plane)
        rect = QRectF(0, 0, axes.width, axes.height)
        margin = max(rect.width(), rect.height())
        self.scene().setSceneRect(rect.adjusted(-margin, -margin, margin, margin))
        for edge, label in self.letters.items():
            label.setText(axes.letters[edge])
            label.adjustSize()
        self._place_labels()

    def fit(self) -> None:
        axes = self.volume.axes(self.plane)
        self.fitInView(QRectF(0, 0, axes.width, axes.height), Qt.AspectRatioMode.KeepAspectRatio)
        self.view_moved()

    def draw_crosshair(self, x: float, y: float) -> None:
        """The other two planes as lines: the one whose fixed axis runs along screen x is vertical."""
        axes = self.volume.axes(self.plane)
        if not self.crosshair.childItems():
            for other in (p for p in Plane if p is not self.plane):
                item = QGraphicsPathItem()
                item.setPen(cosmetic_pen(CROSSHAIR_COLOURS[other], 1.0))
                item.setData(0, other.value)
                self.crosshair.addToGroup(item)
        for item in self.crosshair.childItems():
            fixed = self.volume.axes(Plane(item.data(0))).fixed_axis
            path = QPainterPath()
            if fixed == axes.u.volume_axis:
                path.moveTo(x, 0)
                path.lineTo(x, axes.height)
            elif fixed == axes.v.volume_axis:
                path.moveTo(0, y)
                path.lineTo(axes.width, y)
            item.setPath(path)

    def draw_annotations(self, shapes: list[tuple[np.ndarray, bool, bool, str]]) -> None:
        """(display points, closed, complete, text) per annotation that meets this plane."""
        add_shapes(self.annotations, shapes, 4.0 / max(self.transform().m11(), 1e-6), self)

    # ----- input
    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps == 0 or self.view.volume is None:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            factor = ZOOM_STEP**steps
            self.scale(factor, factor)
            self.view_moved()
        else:
            self.view.set_index(self.plane, self.index - int(math.copysign(max(1, round(abs(steps))), steps)))
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self.view.volume is None:
            return
        self.view.set_active(self.plane)
        scene = self.mapToScene(event.position().toPoint())
        button = event.button()
        if button == Qt.MouseButton.LeftButton and (self.view.tool is not None or self.view.box_mode):
            self.input.kind = self.view.tool or MeasureKind.RECTANGLE
            if not self.input.grab(
                scene.x(),
                scene.y(),
                self.view.measurements_on(self.plane, self.index),
                6.0 / max(self.transform().m11(), 1e-6),
            ):
                self.input.press(scene.x(), scene.y())
        elif button == Qt.MouseButton.LeftButton:
            self._drag = "cursor"
            self.view.move_cursor(self.plane, scene.x(), scene.y())
        elif button == Qt.MouseButton.RightButton:
            self._drag = "window"
            self._origin = event.position()
            self._start_window = self.view.state.effective_window() or auto_window(self.plane_frame())
        elif button == Qt.MouseButton.MiddleButton:
            self._drag = "pan"
            self._origin = event.position()
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        scene = self.mapToScene(event.position().toPoint())
        if self._drag == "cursor":
            self.view.move_cursor(self.plane, scene.x(), scene.y())
        elif self._drag == "window" and self._start_window is not None:
            delta = event.position() - self._origin
            sensitivity = max(self._start_window.width / 512.0, 1e-3)
            start = self._start_window
            self.view.state.set_window(
                Window(
                    start.center + delta.y() * sensitivity,
                    max(1.0, start.width + delta.x() * sensitivity),
                    start.function,
                    "manual",
                )
            )
        elif self._drag == "pan":
            delta = event.position() - self._origin
            self._origin = event.position()
            self.translate(delta.x() / self.transform().m11(), delta.y() / self.transform().m22())
            self.view_moved()
        elif self.view.tool is not None or self.view.box_mode:
            self.input.move(scene.x(), scene.y())
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self.input.release()
        self._drag = None
        event.accept()

    def cancel_tool(self) -> None:
        self.input.cancel()

    def _drawn(self, kind: MeasureKind, points: tuple) -> None:
        if self.view.tool is None and self.view.box_mode:
            self.view.add_box(self.plane, self.index, points)
        else:
            self.view.add_measurement(self.plane, self.index, kind, points)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.view.volume is not None:
            self.fit()
        self._place_labels()

    def _place_labels(self) -> None:
        """Title top left, orientation letters mid-edge; a letter that would touch the title or a
        corner's text moves inward past it ("Axial 31/60" and "A" never run together)."""
        w, h = self.viewport().width(), self.viewport().height()
        letters = self.letters
        self.info.move(4, 4)
        letters["left"].move(4, (h - letters["left"].height()) // 2)
        letters["right"].move(w - letters["right"].width() - 4, (h - letters["right"].height()) // 2)
        letters["top"].move((w - letters["top"].width()) // 2, 4)
        letters["bottom"].move((w - letters["bottom"].width()) // 2, h - letters["bottom"].height() - 4)
        taken = [self.info.geometry(), *self.corners.occupied()]
        for edge, inward in (("top", 1), ("bottom", -1), ("left", 1), ("right", -1)):
            label = letters[edge]
            for rect in taken:
                if label.geometry().intersects(rect.adjusted(-2, -2, 2, 2)):
                    if edge in ("top", "bottom"):
                        y = rect.bottom() + 3 if inward > 0 else rect.top() - label.height() - 3
                        label.move(label.x(), y)
                    else:
                        x = rect.right() + 3 if inward > 0 else rect.left() - label.width() - 3
                        label.move(x, label.y())


class MprView(QWidget):
    """Axial, coronal and sagittal viewports of one volume, linked by a crosshair."""

    cursor_changed = Signal(object)  # patient point (LPS mm) of the crosshair
    frame_shown = Signal(int)  # the stack frame the native plane (axial for an axial series) shows
    active_changed = Signal(str)  # the plane the user last worked in
    measurement_added = Signal(object)  # Measurement
    zoom_changed = Signal(float)  # the active plane's zoom (1.0 = one screen pixel per stored pixel)

    def __init__(self, state: ViewerState | None = None, annotations=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state or ViewerState()
        self.annotations = annotations  # AnnotationController, or None (bench, previews)
        self.volume: Volume | None = None
        self.cursor = np.zeros(3)  # crosshair, fractional voxel (slice, row, column)
        self.active = Plane.AXIAL
        self.corner_fields: frozenset[str] = FIELD_IDS
        self.tool: MeasureKind | None = None
        self.box_mode = False  # the Box tool (B): boxes drawn on any plane
        self.layout_name = "1x3"
        self.viewports = {plane: PlaneViewport(self, plane) for plane in Plane}
        self.plane_masks = PlaneMasks(self)  # label volumes built off the GUI thread
        self.plane_masks.built.connect(self.refresh_masks)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.info.setStyleSheet("color: #c8c8c8; padding: 8px;")
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self._render_pending = False
        self._rendered_display: tuple | None = None
        self.state.display_changed.connect(self._schedule_render)
        if annotations is not None:
            annotations.changed.connect(lambda _e: self.refresh_annotations())
            annotations.current_image_changed.connect(self.refresh_annotations)
        self.set_layout(self.layout_name)

    # ----- set up
    def set_volume(self, volume: Volume | None) -> None:
        self.volume = volume
        self.plane_masks.set_volume(volume)
        if volume is None:
            return
        self.cursor = (np.asarray(volume.geometry.shape, dtype=np.float64) - 1) / 2
        geometry = volume.geometry
        n, rows, columns = geometry.shape
        lines = [
            f"<b>{volume.title}</b>",
            f"{columns} × {rows} × {n} voxels",
            (
                f"{geometry.column_spacing_mm:g} × {geometry.row_spacing_mm:g} × {geometry.slice_spacing_mm:g} mm "
                "(slice spacing from positions)"
            ),
        ]
        lines += [f"<span style='color:#ffb347'>⚠ {w}</span>" for w in geometry.warnings]
        self.info.setText("<br>".join(lines))
        for port in self.viewports.values():
            port.set_geometry_labels()
            port.image_item.setPixmap(QPixmap())  # re-render even where the slice number is the same
        self._apply_cursor()
        for port in self.viewports.values():
            port.fit()
        self.refresh_annotations()

    def set_layout(self, name: str) -> None:
        """'1x1' (the active plane), '1x3' (three side by side) or '2x2' (three planes and facts)."""
        if name not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {name!r}")
        self.layout_name = name
        while self.grid.count():
            self.grid.takeAt(0)
        for widget in (*self.viewports.values(), self.info):
            widget.hide()
        if name == "1x1":
            placed = [(self.viewports[self.active], 0, 0)]
        elif name == "1x3":
            placed = [(self.viewports[p], 0, i) for i, p in enumerate(Plane)]
        else:
            placed = [
                (self.viewports[Plane.AXIAL], 0, 0),
                (self.viewports[Plane.CORONAL], 0, 1),
                (self.viewports[Plane.SAGITTAL], 1, 0),
                (self.info, 1, 1),
            ]
        for widget, row, column in placed:
            self.grid.addWidget(widget, row, column)
            widget.show()
        for i in range(3):
            self.grid.setColumnStretch(i, 1 if any(c == i for _, _, c in placed) else 0)
            self.grid.setRowStretch(i, 1 if any(r == i for _, r, _ in placed) else 0)
        if self.volume is not None:
            QTimer.singleShot(0, lambda: [port.fit() for port in self.viewports.values()])

    def set_active(self, plane: Plane) -> None:
        if plane is not self.active:
            self.active = plane
            self.active_changed.emit(plane.value)
            if self.layout_name == "1x1":
                self.set_layout("1x1")

    def active_zoom(self) -> float | None:
        return None if self.volume is None else self.viewports[self.active].zoom()

    def set_corner_fields(self, fields: frozenset[str]) -> None:
        """The reader's corner overlay choices (View > Corner overlay fields), for every plane."""
        self.corner_fields = fields
        if self.volume is not None:
            for port in self.viewports.values():
                port.refresh_corners()

    def set_corners_shown(self, on: bool) -> None:
        for port in self.viewports.values():
            port.corners.setVisible(on)
            port._place_labels()

    def set_box_mode(self, on: bool) -> None:
        self.box_mode = on
        self.set_tool(self.tool)

    def set_tool(self, tool: MeasureKind | None) -> None:
        self.tool = tool
        for port in self.viewports.values():
            port.cancel_tool()
            drawing = tool is not None or self.box_mode
            port.viewport().setCursor(Qt.CursorShape.CrossCursor if drawing else Qt.CursorShape.ArrowCursor)

    # ----- crosshair and slices
    def set_index(self, plane: Plane, index: int) -> None:
        axes = self.volume.axes(plane)
        index = min(max(index, 0), axes.n_positions - 1)
        self.cursor[axes.fixed_axis] = index
        self._apply_cursor()

    def move_cursor(self, plane: Plane, x: float, y: float) -> None:
        """A click at display (x, y) of a plane: the crosshair goes there, the other planes follow."""
        port = self.viewports[plane]
        self.cursor = self.volume.display_to_voxel(plane, port.index, x, y)
        shape = np.asarray(self.volume.geometry.shape) - 1
        self.cursor = np.clip(self.cursor, 0, shape)
        self._apply_cursor()

    def cursor_patient(self) -> np.ndarray:
        return self.volume.geometry.voxel_to_patient(self.cursor)

    def _apply_cursor(self) -> None:
        for plane, port in self.viewports.items():
            index, x, y = self.volume.voxel_to_display(plane, self.cursor)
            new_index = int(np.clip(np.rint(index), 0, self.volume.axes(plane).n_positions - 1))
            changed = new_index != port.index or port.image_item.pixmap().isNull()
            port.index = new_index
            port.draw_crosshair(float(x), float(y))
            if changed:
                port.render_now()
                self._draw_annotations(port)
                if plane is native_slices.native_plane(self.volume):
                    self.frame_shown.emit(native_slices.frame_of_slice(self.volume, new_index))
        self.cursor_changed.emit(self.cursor_patient())

    def show_frame(self, frame: int) -> None:
        """Move the native plane to the slice of stack frame ``frame`` (the slider moved)."""
        index = None if self.volume is None else native_slices.slice_of_frame(self.volume, frame)
        plane = None if index is None else native_slices.native_plane(self.volume)
        if index is not None and self.viewports[plane].index != index:
            self.set_index(plane, index)

    def slice_number(self, plane: Plane, index: int) -> int:
        """The 1-based number shown for a plane slice: on the native plane, the frame's number."""
        if plane is native_slices.native_plane(self.volume):
            return native_slices.frame_of_slice(self.volume, index) + 1
        return index + 1

    def plane_title(self, plane: Plane) -> str:
        """The plane and its 1-based slice number ("Axial 31/60"), the number the slider shows too."""
        port = self.viewports[plane]
        n = self.volume.axes(plane).n_positions
        return f"{plane.value.capitalize()} {self.slice_number(plane, port.index)}/{n}"

    def _schedule_render(self) -> None:
        shown = (self.state.window, self.state.invert)
        if shown == self._rendered_display:
            return  # a frame change only (the slider following the native plane): nothing to redraw
        self._rendered_display = shown
        if not self._render_pending and self.volume is not None:
            self._render_pending = True
            QTimer.singleShot(0, self._render_all)

    def _render_all(self) -> None:
        self._render_pending = False
        for port in self.viewports.values():
            port.render_now()

    def active_plane_frame(self) -> Frame | None:
        """The active plane as displayed: what the assistant is shown in the three-plane view."""
        return None if self.volume is None else self.viewports[self.active].plane_frame()

    def active_plane_title(self) -> str:
        return self.plane_title(self.active)

    # ----- measurements
    def add_measurement(
        self, plane: Plane, index: int, kind: MeasureKind, points: tuple[tuple[float, float], ...]
    ) -> Measurement | None:
        """A measurement drawn on a plane; on the native plane it is a measurement of that frame."""
        controller = self.annotations
        if controller is None or controller.doc is None or controller.image_id is None:
            return None
        if plane is native_slices.native_plane(self.volume):
            pixels = native_slices.display_to_pixel(self.volume, index, points)
            measurement = controller.doc.new_measurement(
                controller.image_id,
                kind,
                native_slices.frame_of_slice(self.volume, index),
                pixels,
                self._frame_values(kind, index, pixels),
                label=MeasureKind(kind).value,
            )
            controller.doc.execute(AddAnnotations(controller.image_id, [measurement]))
            self.measurement_added.emit(measurement)
            return measurement
        placement, frame = self._placement(plane, index, graphic_points(kind, points))
        measurement = controller.doc.new_measurement(
            controller.image_id,
            kind,
            frame,
            tuple(points),
            self._plane_values(plane, index, kind, points),
            label=MeasureKind(kind).value,
            placement=placement,
        )
        controller.doc.execute(AddAnnotations(controller.image_id, [measurement]))
        self.measurement_added.emit(measurement)
        return measurement

    def _plane_values(self, plane: Plane, index: int, kind: MeasureKind, points: tuple) -> tuple:
        """Values of display points on a plane (square pixels of the plane's pixel size)."""
        pixel = self.volume.axes(plane).pixel_mm
        stack = self.annotations.stack
        return measure(
            kind,
            points,
            spacing=(pixel, pixel),
            frame=self.volume.plane_frame(plane, index),
            unit=modality_unit(stack.modality if stack else ""),
        )

    def _frame_values(self, kind: MeasureKind, index: int, pixels: tuple) -> tuple:
        """Values of a native-slice measurement over the original frame, as the single view computes them."""
        geometry, stack = self.volume.geometry, self.annotations.stack
        return measure(
            kind,
            pixels,
            spacing=(geometry.row_spacing_mm, geometry.column_spacing_mm),
            frame=native_slices.original_frame(self.volume, index),
            unit=modality_unit(stack.modality if stack else ""),
        )

    def _placement(self, plane: Plane, index: int, graphic: np.ndarray) -> tuple[PlanePlacement, int]:
        """The patient-coordinate placement of display points, and the nearest real slice's frame."""
        volume = self.volume
        points_mm = volume.display_to_patient(plane, index, graphic[:, 0], graphic[:, 1])
        placement = PlanePlacement(
            plane.value, index, tuple(tuple(float(v) for v in p) for p in points_mm), volume.axes(plane).pixel_mm
        )
        return placement, volume.nearest_frame(volume.geometry.patient_to_voxel(points_mm.mean(axis=0)))

    def add_box(self, plane: Plane, index: int, points: tuple[tuple[float, float], ...]) -> Box | None:
        """A box drawn on a plane: its corners in that plane's display pixels, kept in patient space too."""
        controller = self.annotations
        if controller is None or controller.doc is None or controller.image_id is None:
            return None
        controller.doc.ensure_label(controller.current_label)
        if plane is native_slices.native_plane(self.volume):  # a box on that frame, in its pixels
            pixels = native_slices.display_to_pixel(self.volume, index, points)
            (x1, x2), (y1, y2) = sorted(p[0] for p in pixels), sorted(p[1] for p in pixels)
            frame = native_slices.frame_of_slice(self.volume, index)
            box = controller.doc.new_box(controller.image_id, frame, x1, y1, x2, y2, controller.current_label)
            controller.doc.execute(AddAnnotations(controller.image_id, [box]))
            return box
        placement, frame = self._placement(plane, index, graphic_points(None, points))
        (x1, x2), (y1, y2) = sorted(p[0] for p in points), sorted(p[1] for p in points)
        box = replace(
            controller.doc.new_box(controller.image_id, frame, x1, y1, x2, y2, controller.current_label),
            placement=placement,
        )
        controller.doc.execute(AddAnnotations(controller.image_id, [box]))
        return box

    def measurements_on(self, plane: Plane, index: int) -> list[Measurement]:
        """Measurements drawn on this very plane slice (their points can be dragged there).

        On the native plane these include the frame's own measurements, with their points given
        in this plane's display coordinates.
        """
        controller = self.annotations
        if controller is None or controller.doc is None or controller.image_id is None:
            return []
        found = [
            m
            for m in controller.doc.measurements(controller.image_id)
            if m.placement is not None and m.placement.plane == plane.value and m.placement.index == index
        ]
        if plane is native_slices.native_plane(self.volume):
            frame = native_slices.frame_of_slice(self.volume, index)
            found += [
                replace(m, points=native_slices.pixel_to_display(self.volume, index, m.points))
                for m in controller.doc.measurements(controller.image_id, frame)
            ]
        return found

    def edit_measurement(
        self, plane: Plane, index: int, measurement: Measurement, points: tuple[tuple[float, float], ...]
    ) -> None:
        """New points for a measurement on a plane: values and patient geometry recomputed, one undo step."""
        controller = self.annotations
        if measurement.placement is None:  # a frame's own measurement, dragged on the native plane
            pixels = native_slices.display_to_pixel(self.volume, index, points)
            values = self._frame_values(measurement.kind, index, pixels)
            controller.doc.execute(SetMeasurement(controller.image_id, measurement.id, pixels, values))
            return
        values = self._plane_values(plane, index, measurement.kind, points)
        placement, _ = self._placement(plane, index, graphic_points(measurement.kind, points))
        controller.doc.execute(SetMeasurement(controller.image_id, measurement.id, points, values, placement))

    def refresh_annotations(self) -> None:
        if self.volume is None:
            return
        for port in self.viewports.values():
            self._draw_annotations(port)

    def _patient_outline(self, annotation: Box | Measurement) -> tuple[np.ndarray, bool]:
        kind = annotation.kind if isinstance(annotation, Measurement) else None
        if annotation.placement is not None:
            return outline(kind, np.asarray(annotation.placement.points_mm))
        points = (
            annotation.points
            if isinstance(annotation, Measurement)
            else ((annotation.x1, annotation.y1), (annotation.x2, annotation.y2))
        )
        drawn, closed = outline(kind, graphic_points(kind, points))
        slice_of_frame = self.volume.geometry.frame_indices.index(annotation.frame)
        voxel = np.column_stack([np.full(len(drawn), slice_of_frame), drawn[:, 1] - 0.5, drawn[:, 0] - 0.5])
        return self.volume.geometry.voxel_to_patient(voxel), closed

    def refresh_masks(self) -> None:
        """Draw the masks again on every plane (a label volume has arrived from its build thread)."""
        if self.volume is None:
            return
        for port in self.viewports.values():
            self._draw_masks(port)

    def shutdown(self) -> None:
        """Join the mask build thread (the window is closing)."""
        self.plane_masks.shutdown()

    def _draw_masks(self, port: PlaneViewport) -> None:
        """The masks of the visible sources cut along this port's plane slice."""
        controller = self.annotations
        masks: list[Mask] = []
        colours: dict[str, str] = {}
        if controller is not None and controller.doc is not None and controller.image_id is not None:
            masks = [m for m in controller.doc.masks(controller.image_id) if m.source in controller.visible_sources]
            colours = {label.name: label.color for label in controller.doc.labels}
            self.plane_masks.forget_except({m.id for m in controller.doc.masks(controller.image_id)})
        self.plane_masks.draw(port.masks, port.plane, port.index, masks, colours)

    def _draw_annotations(self, port: PlaneViewport) -> None:
        self._draw_masks(port)
        controller = self.annotations
        if controller is None or controller.doc is None or controller.image_id is None:
            port.draw_annotations([])
            return
        shapes = []
        for annotation in controller.doc.annotations(controller.image_id):
            if not isinstance(annotation, (Box, Measurement)):
                continue
            if annotation.frame not in self.volume.geometry.frame_indices:
                continue
            points_mm, closed = self._patient_outline(annotation)
            points, complete = self.volume.crossings(port.plane, port.index, points_mm, closed)
            if len(points):
                text = annotation.summary() if isinstance(annotation, Measurement) else annotation.label
                shapes.append((points, closed, complete, text))
        port.draw_annotations(shapes)


def _overlay_label(parent: QGraphicsView) -> QLabel:
    label = QLabel(parent)
    label.setStyleSheet(
        "color: #f0e68c; background: rgba(0, 0, 0, 150); border-radius: 3px; padding: 0 3px;"
        " font-weight: bold; font-size: 13px;"
    )
    label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
    return label
