"""Hooks the three-plane view and the measurement tools into the main window.

The single-plane canvas stays the default; View > Three planes (M) loads the current series
as a volume on a worker thread (progress in the status bar, cancel by toggling it off) and
swaps the canvas for the MPR view. A stack that is not a volume says why in the banner.
While the three planes are shown, the assistant is given the active plane as displayed.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QStackedWidget, QToolBar
from superqt.utils import create_worker

from app.annotations.box_tools import Tool
from app.annotations.measure_tools import CanvasMeasureTools
from app.viewer.corner_overlay import zoom_text
from app.volumes import native_slices
from app.volumes.view import LAYOUTS, MprView
from app.widgets.key_bindings import bind
from app.widgets.shortcuts import shortcut
from engine.annotations import Box, MeasureKind
from engine.imaging import ImageStack, Plane, Volume, VolumeError, iter_load_volume, volume_geometry

MEASURE_TOOLS = (  # the kind and its row in the shortcut table (app/widgets/shortcuts.py)
    (MeasureKind.LENGTH, "measure.length"),
    (MeasureKind.ANGLE, "measure.angle"),
    (MeasureKind.ELLIPSE, "measure.ellipse"),
    (MeasureKind.RECTANGLE, "measure.rectangle"),
)
LAYOUT_COMMANDS = {"1x1": "mpr.layout_1x1", "1x3": "mpr.layout_1x3", "2x2": "mpr.layout_2x2"}


class MprController(QObject):
    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.view = MprView(window.state, window.annotations)
        self.volume: Volume | None = None
        self._volume_key: str | None = None
        self._worker = None
        self._loading: ImageStack | None = None
        self.canvas_tools = CanvasMeasureTools(window.canvas, window.state, window.annotations, window.tools)
        window.canvas.tools = self.canvas_tools
        self._swap_in_stack()
        self._build_actions()
        window.state.stack_changed.connect(self._on_stack_changed)
        self.view.cursor_changed.connect(self._show_cursor)
        self.view.active_changed.connect(lambda _p: window.state.display_changed.emit())
        # one slice number everywhere: the slider follows the native plane, and the plane the slider
        self.view.frame_shown.connect(self._follow_plane)
        window.state.frame_changed.connect(self._follow_slider)
        window.corners_action.toggled.connect(self.view.set_corners_shown)
        self.view.set_corners_shown(window.corners_action.isChecked())  # as remembered
        window.corner_choices.follow(self.view.set_corner_fields)
        # the status bar's zoom is the active plane's while the planes are shown (the hidden
        # canvas still zooms on resize: its signal comes after the window's own and is answered)
        self.view.zoom_changed.connect(lambda _z: self._show_zoom())
        self.view.active_changed.connect(lambda _p: self._show_zoom())
        window.canvas.zoom_changed.connect(lambda _z: self._show_zoom())

    # ----- window plumbing
    def _swap_in_stack(self) -> None:
        canvas = self.window.canvas
        layout = self.window.centralWidget().layout()
        index = layout.indexOf(canvas)
        layout.removeWidget(canvas)
        self.pages = QStackedWidget()
        self.pages.addWidget(canvas)
        self.pages.addWidget(self.view)
        layout.insertWidget(index, self.pages, 1)

    def _build_actions(self) -> None:
        window = self.window
        view_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
        view_menu.addSeparator()
        self.toggle_action = bind(QAction(shortcut("mpr.toggle").text, window, checkable=True), "mpr.toggle")
        self.toggle_action.toggled.connect(self.set_enabled)
        view_menu.addAction(self.toggle_action)
        window.addAction(self.toggle_action)
        layouts = view_menu.addMenu("Plane &layout")
        group = QActionGroup(window)
        self.layout_actions = {}
        for name in LAYOUTS:
            action = bind(QAction(name, window, checkable=True), LAYOUT_COMMANDS[name])
            action.triggered.connect(lambda _=False, n=name: self.set_layout(n))
            group.addAction(action)
            layouts.addAction(action)
            window.addAction(action)
            self.layout_actions[name] = action
        self.layout_actions[self.view.layout_name].setChecked(True)
        toolbar = window.findChild(QToolBar, "toolsBar")
        toolbar.addSeparator()
        self.tool_actions: dict[MeasureKind, QAction] = {}
        for kind, command_id in MEASURE_TOOLS:
            row = shortcut(command_id)
            action = bind(QAction(f"{row.text} ({row.keys[0]})", window, checkable=True), command_id)
            action.triggered.connect(lambda _=False, k=kind: self.set_tool(k))
            toolbar.addAction(action)
            window.addAction(action)
            self.tool_actions[kind] = action
        for tool, action in window.tool_actions.items():  # Pan / Select / Box end a measurement tool
            action.triggered.connect(lambda _=False, t=tool: self._drawing_tool(t))

    # ----- modes
    def _drawing_tool(self, tool: Tool) -> None:
        """Pan / Select / Box chosen: no measurement tool; Box draws boxes on the planes too."""
        self.set_tool(None)
        self.view.set_box_mode(tool is Tool.BOX)

    def set_tool(self, kind: MeasureKind | None) -> None:
        for other, action in self.tool_actions.items():
            action.setChecked(other is kind)
        if kind is not None:
            for action in self.window.tool_actions.values():
                action.setChecked(False)
            self.view.box_mode = False
        self.view.set_tool(kind)  # whichever view is shown takes the clicks
        self.canvas_tools.set_kind(kind)
        cursor = Qt.CursorShape.CrossCursor if kind is not None else Qt.CursorShape.ArrowCursor
        self.window.canvas.viewport().setCursor(cursor)

    def set_layout(self, name: str) -> None:
        self.layout_actions[name].setChecked(True)
        self.view.set_layout(name)
        if not self.toggle_action.isChecked():
            self.toggle_action.setChecked(True)

    def set_enabled(self, on: bool) -> None:
        """Show the three planes of the current series (loading it first), or the single plane."""
        if self.toggle_action.isChecked() != on:
            self.toggle_action.setChecked(on)  # re-enters through toggled
            return
        if not on:
            self._cancel_loading()
            self._show_single()
            return
        stack = self.window.state.stack
        if stack is None:
            self._refuse("Open a CT or MR series first: the three-plane view reads a series as a volume.")
            return
        if self.volume is not None and self._volume_key == stack.key:
            self._show_planes()
            return
        try:
            volume_geometry(stack)  # headers only: refuse at once, before decoding anything
        except VolumeError as error:
            self._refuse(str(error))
            return
        self._load(stack)

    def _load(self, stack: ImageStack) -> None:
        self._cancel_loading()
        self._loading = stack
        self.window.statusBar().showMessage(f"Loading {stack.title} as a volume…")
        worker = create_worker(iter_load_volume, stack, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_loaded)
        worker.errored.connect(self._on_load_failed)
        self._worker = worker
        worker.start()

    def shutdown(self) -> None:
        """Stop a volume load in flight and join the planes' mask build thread (the window is closing)."""
        self._cancel_loading()
        self.view.shutdown()

    def _cancel_loading(self) -> None:
        if self._worker is not None:
            self._worker.quit()
            self._worker = None
            self._loading = None
            self.window.statusBar().clearMessage()

    def _on_progress(self, step: tuple[int, int]) -> None:
        done, total = step
        if self._loading is not None:
            self.window.statusBar().showMessage(f"Loading {self._loading.title} as a volume: slice {done} of {total}…")

    def _on_loaded(self, volume: Volume) -> None:
        stack, self._loading, self._worker = self._loading, None, None
        self.window.statusBar().clearMessage()
        current = stack is not None and stack is self.window.state.stack
        if volume is None or not current or not self.toggle_action.isChecked():
            return
        self.volume, self._volume_key = volume, stack.key
        self.view.set_volume(volume)
        for warning in volume.geometry.warnings:
            self.window.banner.show_message(warning)
        self._show_planes()

    def _on_load_failed(self, error: Exception) -> None:
        self._loading, self._worker = None, None
        self.window.statusBar().clearMessage()
        self._refuse(str(error))

    def _refuse(self, message: str) -> None:
        self.window.banner.show_message(message)
        self.toggle_action.setChecked(False)

    def _show_planes(self) -> None:
        self.pages.setCurrentWidget(self.view)
        # the axial plane (of an axial series) opens on the slice the single view showed
        volume, frame = self.view.volume, self.window.state.frame_index
        if native_slices.slice_of_frame(volume, frame) is not None:
            self.view.show_frame(frame)
        else:
            native = native_slices.native_plane(volume)
            self._follow_plane(native_slices.frame_of_slice(volume, self.view.viewports[native].index))
        self.window.state.shown_frame_source = self.view.active_plane_frame
        self.window.state.shown_frame_title = self.view.active_plane_title
        self.view.setFocus(Qt.FocusReason.OtherFocusReason)
        self._show_zoom()

    def planes_shown(self) -> bool:
        return self.pages.currentWidget() is self.view and self.view.volume is not None

    def _follow_plane(self, frame: int) -> None:
        if self.planes_shown():
            self.window.state.set_frame(frame)

    def _follow_slider(self, frame: int) -> None:
        if self.planes_shown():
            self.view.show_frame(frame)

    def _show_single(self) -> None:
        self.pages.setCurrentWidget(self.window.canvas)
        self.window.state.shown_frame_source = self.window.state.shown_frame_title = None
        if self.window.state.stack is not None:
            self.window.zoom_label.setText(zoom_text(self.window.canvas.zoom))

    def _on_stack_changed(self) -> None:
        if self.toggle_action.isChecked():
            stack = self.window.state.stack
            if stack is None or self._volume_key != stack.key:
                self.volume = None
                self._show_single()
                self.set_enabled(True)

    def show_annotation(self, annotation_id: str) -> bool:
        """Show a listed measurement, or a box drawn on a reformat; False for other annotations.

        One drawn on a plane opens the three planes with the crosshair on its centre (when the
        volume is loaded); one drawn on a frame shows that frame, in the three planes on the
        native plane (axial for an axial series) when they are shown.
        """
        controller = self.window.annotations
        found = controller.doc.find(controller.image_id, annotation_id) if controller.doc else None
        if found is None or (isinstance(found, Box) and found.placement is None):
            return False
        controller.select({annotation_id})
        if found.placement is None and self.planes_shown() and self._volume_key == self.window.state.stack.key:
            volume = self.view.volume
            index = native_slices.slice_of_frame(volume, found.frame)
            if index is not None:
                x, y = np.mean(native_slices.pixel_to_display(volume, index, found.points), axis=0)
                self.view.set_active(native_slices.native_plane(volume))
                self.view.set_index(native_slices.native_plane(volume), index)
                self.view.move_cursor(native_slices.native_plane(volume), float(x), float(y))
                return True
        if found.placement is None:
            self.toggle_action.setChecked(False)
            self.window.state.set_frame(found.frame)
            return True
        if self.volume is not None and self._volume_key == getattr(self.window.state.stack, "key", None):
            self.toggle_action.setChecked(True)
            self.view.cursor = self.volume.geometry.patient_to_voxel(np.mean(found.placement.points_mm, axis=0))
            self.view.set_active(Plane(found.placement.plane))
            self.view.set_index(Plane(found.placement.plane), found.placement.index)
        else:
            self.toggle_action.setChecked(True)  # loads the volume; the user finds it on its plane
        return True

    def _show_zoom(self) -> None:
        """The active plane's zoom in the status bar while the planes are shown."""
        zoom = self.view.active_zoom() if self.planes_shown() else None
        if zoom is not None:
            self.window.zoom_label.setText(zoom_text(zoom))

    def _show_cursor(self, point: np.ndarray) -> None:
        volume = self.view.volume
        if volume is None:
            return
        voxel = np.clip(np.rint(self.view.cursor).astype(int), 0, np.asarray(volume.geometry.shape) - 1)
        value = float(volume.modality_values(volume.data[tuple(voxel)].reshape(1, 1))[0, 0])
        letters = "".join(f"{'RAI'[i] if v < 0 else 'LPS'[i]} {abs(v):.1f}  " for i, v in enumerate(point))
        self.window.cursor_label.setText(f"{letters}mm   value {value:g}   voxel {tuple(int(v) + 1 for v in voxel)}")
