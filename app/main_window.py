"""The ClinLens main window: canvas in the middle, image list and metadata at the sides."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QSlider,
    QToolBar,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from app.annotations.box_menu import BoxMenu
from app.annotations.box_overlay import BoxOverlay
from app.annotations.box_tools import BoxTools, Tool
from app.annotations.controller import AnnotationController
from app.annotations.export_dialog import ask_export
from app.annotations.panel import AnnotationPanel
from app.assistant.answer_overlay import AnswerOverlay
from app.assistant.ask_panel import AskPanel
from app.assistant.preannotation import PreannotationBar, PreannotationRun, ask_and_start
from app.inference.settings import AssistantSettings, read_settings, save_settings
from app.inference.settings_dialog import SettingsDialog
from app.inference.worker import InferenceService, UnloadJob
from app.kpl.classify_panel import ClassifyPanel
from app.pacs.controller import PacsController
from app.report.controller import ReportController
from app.report.panel import ReportPanel
from app.segmentation.controller import SegmentationController
from app.viewer import recent_files
from app.viewer.canvas import ImageCanvas
from app.viewer.canvas_label import BelowCornerLabel
from app.viewer.cine import CineBar, CinePlayer
from app.viewer.corner_menu import CornerChoicesMenu
from app.viewer.corner_overlay import TOGGLE_CORNERS_COMMAND, SingleViewCorners, zoom_text
from app.viewer.decode_failures import DecodeFailureMarks
from app.viewer.decode_status import DecodeStatusOverlay
from app.viewer.metadata_panel import MetadataPanel
from app.viewer.preset_bar import PresetBar
from app.viewer.series_browser import SeriesBrowser
from app.viewer.series_names import ORIGIN_ROLE, item_text, item_tooltip
from app.viewer.state import ViewerState
from app.volumes.controller import MprController
from app.widgets.about_dialog import AboutDialog
from app.widgets.error_banner import ErrorBanner, ProblemsIndicator, skipped_text
from app.widgets.key_bindings import bind, bind_preset
from app.widgets.shortcuts import PAGE_FRAMES, shortcut
from app.widgets.shortcuts_dialog import ShortcutsDialog
from app.widgets.window_layout import restore_layout, save_layout
from engine.annotations import DocumentError, Mask, Review
from engine.annotations.formats import FORMATS, REVIEWED_ONLY, ExportError, ReviewScope, import_annotations
from engine.imaging import (
    ImageStack,
    OpenResult,
    Preset,
    Window,
    load_presets,
    open_paths,
    save_user_preset,
    set_decode_timeout,
)
from engine.imaging.presets import read_presets
from engine.kpl import available_knowledge
from engine.report.model import Observer

IMAGE_FILTER = "Images (*.dcm *.DCM *.dicom *.ima *.png *.jpg *.jpeg *.tif *.tiff);;All files (*)"


class MainWindow(QMainWindow):
    load_finished = Signal(object)  # OpenResult, after the stacks are listed and errors shown

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("ClinLens")
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        self.state = ViewerState()
        self.stacks: list[ImageStack] = []
        self.disagreeing: dict[str, str] = {}  # stack key -> what the two models disagree on (reviewed first)
        self.canvas = ImageCanvas(self.state)
        self.annotations = AnnotationController()
        self.overlay = BoxOverlay(self.canvas.scene(), self.state, self.annotations)
        self.tools = BoxTools(self.canvas, self.state, self.annotations, self.overlay)
        self.canvas.tools = self.tools
        self.annotation_panel = AnnotationPanel(self.state, self.annotations)
        settings = read_settings()
        self.assistant_settings = settings.value
        set_decode_timeout(self.assistant_settings.decode_timeout_s)
        self.service = InferenceService(self)
        self.answer_overlay = AnswerOverlay(self.canvas.scene(), self.state)
        self.ask_panel = AskPanel(
            self.state,
            self.annotations,
            self.service,
            self.answer_overlay,
            lambda: self.assistant_settings,
            self.choose_clinkd_folder,
        )
        self.classify_panel = ClassifyPanel(
            self.state,
            self.annotations,
            self.service,
            lambda: self.assistant_settings,
            self.set_assistant_settings,
            self.edit_settings,
            self.open_image_paths,
        )
        self.report = ReportController(
            self.annotations,
            self.state,
            lambda: Observer(self.assistant_settings.observer_name, self.assistant_settings.observer_organization),
            lambda: self.stacks,
        )
        self.report_panel = ReportPanel(self.report)
        self.preannotation = PreannotationRun(
            self.service, self.annotations, lambda: self.stacks, lambda: self.assistant_settings
        )
        self.decode_status = DecodeStatusOverlay(self.canvas, self.state)
        self.needs_review_only = QCheckBox("Only images needing review")
        self.banner = ErrorBanner()
        self.frame_slider = QSlider(Qt.Orientation.Horizontal)
        self.frame_slider.setMinimum(0)
        self.frame_label = QLabel()
        self.image_list = QListWidget()
        self.metadata = MetadataPanel(self.state)
        self.corners = SingleViewCorners(self.canvas, self.state, self.metadata.reveal_phi.isChecked)
        self.metadata.reveal_phi.toggled.connect(lambda _on: self.corners.refresh())
        self.canvas_label = BelowCornerLabel(self.corners)  # the KPL result, under the corner text
        self.decode_failures = DecodeFailureMarks(self.state, self.image_list, lambda: self.stacks, self.banner, self)
        self._build_central()
        self._build_docks()
        self._build_status_bar()
        self._build_menus()
        self._connect()
        self._build_series_browser_and_cine()
        self.mpr = MprController(self)
        self.segmentation = SegmentationController(self)  # in front of the MPR's canvas tools
        self.ask_panel.segment_requested.connect(self.segmentation.segment_box)
        self.box_menu = BoxMenu(self.canvas, self.overlay, self.annotations)
        self.box_menu.segment_requested.connect(self.segmentation.segment_box)
        self.ask_panel.report_requested.connect(self.report.add_answer)  # "Add to report" reaches the report here
        self.annotation_panel.report_requested.connect(self.report.add_annotations)
        self.classify_panel.report_requested.connect(self.report.add_annotations)
        self.report_panel.evidence_requested.connect(self.show_evidence)
        self.report.problem.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.report.done.connect(lambda text: self.statusBar().showMessage(text, 5000))  # a refusal's is stale now
        self._update_frame_controls()
        self._update_undo_actions()
        if settings.problem:
            self.report_damaged_file("Assistant settings", settings.problem, settings.kept_as)
        if self.corner_choices.problem:
            self.report_damaged_file("Corner overlay choices", self.corner_choices.problem, self.corner_choices.kept_as)

    # ----- layout
    def _build_central(self) -> None:
        slider_row = QHBoxLayout()
        slider_row.setContentsMargins(6, 0, 6, 2)
        slider_row.addWidget(self.frame_slider, 1)
        slider_row.addWidget(self.frame_label)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(slider_row)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        images_widget = QWidget()
        images_layout = QVBoxLayout(images_widget)
        images_layout.setContentsMargins(2, 2, 2, 2)
        images_layout.addWidget(self.image_list, 1)
        images_layout.addWidget(self.needs_review_only)
        images = QDockWidget("Images", self)
        images.setObjectName("imagesDock")
        images.setWidget(images_widget)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, images)
        boxes = QDockWidget("Annotations", self)
        boxes.setObjectName("boxesDock")
        boxes.setWidget(self.annotation_panel)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, boxes)
        metadata = QDockWidget("Metadata", self)
        metadata.setObjectName("metadataDock")
        metadata.setWidget(self.metadata)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, metadata)
        self.ask_dock = QDockWidget("Ask ClinKD", self)
        self.ask_dock.setObjectName("askDock")
        self.ask_dock.setWidget(self.ask_panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.ask_dock)
        self.classify_dock = QDockWidget("Classify (KPL)", self)
        self.classify_dock.setObjectName("classifyDock")
        self.classify_dock.setWidget(self.classify_panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.classify_dock)
        self.report_dock = QDockWidget("Report", self)
        self.report_dock.setObjectName("reportDock")
        self.report_dock.setWidget(self.report_panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.report_dock)
        self.tabifyDockWidget(metadata, self.ask_dock)
        self.tabifyDockWidget(self.ask_dock, self.classify_dock)
        self.tabifyDockWidget(self.classify_dock, self.report_dock)
        self.ask_dock.raise_()
        self.resizeDocks([images, metadata], [330, 380], Qt.Orientation.Horizontal)
        self.resizeDocks([images, boxes], [250, 500], Qt.Orientation.Vertical)

    def _build_series_browser_and_cine(self) -> None:
        """Thumbnails on the Images list, the cine bar and the window-preset toolbar (app/viewer)."""
        self.series_browser = SeriesBrowser(self.image_list, lambda: self.stacks, self)
        images, boxes = self.findChild(QDockWidget, "imagesDock"), self.findChild(QDockWidget, "boxesDock")
        self.resizeDocks([images, boxes], [380, 370], Qt.Orientation.Vertical)  # room for a few thumbnails
        self.cine = CinePlayer(self.state, self)
        self.cine_bar = CineBar(self.cine)
        self.addAction(self.cine_bar.play_action)  # the key works wherever the focus is
        cine_tools = self.addToolBar("Cine")
        cine_tools.setObjectName("cineBar")
        cine_tools.addWidget(self.cine_bar)
        self.preset_bar = PresetBar(self.state, self.apply_preset, self)
        self.preset_bar.set_presets(load_presets())
        self.addToolBar(self.preset_bar)

    def _build_status_bar(self) -> None:
        self.cursor_label = QLabel()
        self.window_label = QLabel()
        self.zoom_label = QLabel()
        self.frame_status = QLabel()
        self.model_status = QLabel()
        self.model_status.setStyleSheet("padding: 0 6px; border-left: 1px solid palette(mid);")  # apart from messages
        bar = self.statusBar()
        bar.addWidget(self.cursor_label, 1)
        bar.addPermanentWidget(PreannotationBar(self.preannotation))
        self.problems_indicator = ProblemsIndicator(self.banner)
        bar.addPermanentWidget(self.problems_indicator)
        self.preannotation.run_succeeded.connect(lambda text: bar.showMessage(text, 20000))
        self.preannotation.run_failed.connect(self.banner.show_message)  # with its reason, not into "Model: …"
        self.preannotation.review_first.connect(self.review_first)
        for label in (self.model_status, self.window_label, self.zoom_label, self.frame_status):
            bar.addPermanentWidget(label)

    def _action(self, menu: QMenu, text: str, slot, command_id: str | None = None, tip: str = "") -> QAction:
        """A menu action; its keys, if any, come from the shortcut table row ``command_id``."""
        action = QAction(text, self)
        if command_id is not None:
            bind(action, command_id)
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)  # shortcuts work even when the menu bar is hidden
        return action

    def _command(self, menu: QMenu, command_id: str, slot) -> QAction:
        """A menu action whose text, keys and status tip are the shortcut table's row ``command_id``."""
        return self._action(menu, shortcut(command_id).text, slot, command_id)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._command(file_menu, "file.open", self.choose_files)
        self._command(file_menu, "file.open_folder", self.choose_folder)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._refresh_recent_menu(recent_files.load_recent())
        self.pacs = PacsController(self, file_menu)
        self.report.send_requested.connect(self.pacs.send_report)  # the panel's Send to PACS takes the PACS path
        self.pacs.report_send_finished.connect(self.report_panel.show_sent)
        file_menu.addSeparator()
        self._action(file_menu, "&Import annotations (COCO or ClinLens JSON)…", self.choose_import)
        export_menu = file_menu.addMenu("&Export annotations")
        for name, spec in FORMATS.items():
            export_menu.addAction(f"{name.upper()}: {spec.description}", lambda n=name: self.choose_export(n))
        self._command(file_menu, "file.save", self.annotations.save_all)
        self._command(file_menu, "file.save_as", self.choose_project_file)
        file_menu.addSeparator()
        self._command(file_menu, "file.quit", self.close)

        edit = bar.addMenu("&Edit")
        self.undo_action = self._command(edit, "edit.undo", self.annotations.undo)
        self.redo_action = self._command(edit, "edit.redo", self.annotations.redo)
        edit.aboutToShow.connect(self._update_undo_actions)
        edit.addSeparator()
        self._command(edit, "edit.delete", self.annotations.delete_selected)
        self._command(edit, "edit.select_all", self.select_all_on_frame)
        self._command(edit, "edit.clear_selection", lambda: (self.tools.cancel(), self.annotations.select(set())))
        edit.addSeparator()
        self._command(edit, "review.accept", self.accept)
        self._command(edit, "review.reject", lambda: self.annotations.review_selected(Review.REJECTED))
        self._command(edit, "review.image_done", self.mark_reviewed_and_next)

        tools = self.addToolBar("Tools")
        tools.setObjectName("toolsBar")
        group = QActionGroup(self)
        self.tool_actions: dict[Tool, QAction] = {}
        for tool, command_id in ((Tool.PAN, "tool.pan"), (Tool.SELECT, "tool.select"), (Tool.BOX, "tool.box")):
            row = shortcut(command_id)
            action = bind(QAction(f"{row.text} ({row.keys[0]})", self, checkable=True), command_id)
            action.triggered.connect(lambda _=False, t=tool: self.set_tool(t))
            group.addAction(action)
            tools.addAction(action)
            self.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions[Tool.PAN].setChecked(True)

        view = bar.addMenu("&View")
        self._command(view, "view.fit", self.canvas.fit_to_window)
        self._command(view, "view.actual_size", lambda: self.canvas.set_zoom(1.0))
        self._command(view, "view.zoom_in", lambda: self.canvas.zoom_by(1.25))
        self._command(view, "view.zoom_out", lambda: self.canvas.zoom_by(0.8))
        self.corners_action = self._command(view, TOGGLE_CORNERS_COMMAND, lambda: None)
        self.corners_action.setCheckable(True)
        self.corners_action.setChecked(True)
        self.corners_action.toggled.connect(self.corners.setVisible)
        self.corner_choices = CornerChoicesMenu(self.corners_action, view, self)  # remembered on/off and fields
        self.corner_choices.follow(self.corners.set_fields)
        view.addSeparator()
        self._command(view, "view.next_frame", lambda: self.state.step_frame(1))
        self._command(view, "view.previous_frame", lambda: self.state.step_frame(-1))
        self._command(view, "view.page_forward", lambda: self.state.step_frame(PAGE_FRAMES))
        self._command(view, "view.page_back", lambda: self.state.step_frame(-PAGE_FRAMES))
        self._command(view, "view.first_frame", lambda: self.state.set_frame(0))
        self._command(view, "view.last_frame", lambda: self.state.set_frame(self.state.n_frames - 1))
        view.addSeparator()
        self._command(view, "view.next_image", lambda: self.step_image(1))
        self._command(view, "view.previous_image", lambda: self.step_image(-1))
        view.addAction(self.decode_failures.retry_action)
        self.addAction(self.decode_failures.retry_action)
        self.show_problems_action = self._action(
            view, "Show &problems", self.show_problems, tip="Show the red strip's last problems again after closing it"
        )
        view.addSeparator()
        self._command(view, "view.report", self.show_report)
        self.panels_menu = view.addMenu("Pa&nels")
        self.panels_menu.aboutToShow.connect(self._refresh_panels_menu)

        self.window_menu = bar.addMenu("&Window")
        self.header_windows_menu = QMenu("From DICOM &header", self)
        self._rebuild_window_menu()

        assistant = bar.addMenu("&Assistant")
        self._action(
            assistant,
            "&Pre-annotate open images…",
            lambda: ask_and_start(
                self.preannotation,
                self,
                [label.name for label in self.annotations.doc.labels] if self.annotations.doc else [],
                self.state.window,
                self.assistant_settings,
                self.state.invert,
                choose_model=lambda: (self.edit_settings(), self.assistant_settings)[1],
            ),
        )
        self._action(assistant, "&Settings…", self.edit_settings)
        self._action(assistant, "Choose ClinKD &folder…", self.choose_clinkd_folder)
        self._action(assistant, "&Unload models (free memory)", lambda: self.service.submit(UnloadJob()))
        self._action(assistant, "&Cancel the running job", lambda: self.service.cancel())

        self._build_help_menu(bar.addMenu("&Help"))

    def _build_help_menu(self, help_menu: QMenu) -> None:
        self._command(help_menu, "help.shortcuts", self.show_shortcuts)
        self._action(help_menu, "&About ClinLens", self.show_about)

    def show_shortcuts(self) -> ShortcutsDialog:
        """Help > Keyboard shortcuts: every row of the table the window binds from (not modal)."""
        dialog = self.findChild(ShortcutsDialog) or ShortcutsDialog(self)
        dialog.show()
        dialog.raise_()
        return dialog

    def show_report(self) -> None:
        """View > Report: bring the Report panel to the front (shown again if it was closed)."""
        self.report_dock.show()
        self.report_dock.raise_()

    def show_evidence(self, image_id: str, annotation_id: str, frame: int) -> None:
        """A report finding was clicked: show the image, frame and annotation it cites."""
        for row, stack in enumerate(self.stacks):
            found = self.annotations.document_for(stack)
            if found is not None and found[1] == image_id:
                self.image_list.setCurrentRow(row)
                if annotation_id and found[0].find(image_id, annotation_id) is not None:
                    self.show_box(annotation_id)
                else:
                    self.state.set_frame(frame)
                return
        self.banner.show_message("The image this finding cites is not open: open it to see the evidence.")

    def show_about(self) -> AboutDialog:
        dialog = self.findChild(AboutDialog) or AboutDialog(self)
        dialog.show()
        dialog.raise_()
        return dialog

    def _refresh_panels_menu(self) -> None:
        """View > Panels: every dock and tool bar, checked when shown; unchecked ones come back from here.

        Rebuilt each time it opens, so panels another capability adds later are listed too."""
        self.panels_menu.clear()
        for dock in self.findChildren(QDockWidget):
            self.panels_menu.addAction(dock.toggleViewAction())
        self.panels_menu.addSeparator()
        for toolbar in self.findChildren(QToolBar):
            self.panels_menu.addAction(toolbar.toggleViewAction())

    def _update_undo_actions(self, *_args) -> None:
        """Undo and Redo say what they would do ("Undo Add box"), and are off when there is nothing."""
        for action, command_id, text in (
            (self.undo_action, "edit.undo", self.annotations.undo_text()),
            (self.redo_action, "edit.redo", self.annotations.redo_text()),
        ):
            base = shortcut(command_id).text
            action.setText(f"{base} {text}" if text else base)
            action.setEnabled(bool(text))

    def _rebuild_window_menu(self) -> None:
        menu = self.window_menu
        for action in menu.actions():
            self.removeAction(action)
        menu.clear()
        menu.addMenu(self.header_windows_menu)
        menu.addSeparator()
        presets = read_presets()
        if presets.problem:
            self.report_damaged_file(
                "Your window presets", presets.problem, presets.kept_as, "the built-in presets only"
            )
        for preset in presets.value:
            label = f"{preset.name}  (C {preset.center:g} / W {preset.width:g})" + ("  ★" if preset.user else "")
            bind_preset(self._action(menu, label, lambda _=False, p=preset: self.apply_preset(p)), preset.key)
        menu.addSeparator()
        self._command(menu, "window.invert", self.state.toggle_invert)
        self._command(menu, "window.reset", self.reset_display)
        self._action(menu, "&Save current window as preset…", self._ask_preset_name)

    def report_damaged_file(self, what: str, problem: str, kept_as: Path | None, instead: str = "the defaults") -> None:
        """Say in the red strip that a damaged settings-type file was set aside (added to what it shows)."""
        kept = f" The damaged file was kept as {kept_as.name}." if kept_as else ""
        self.banner.add_message(f"{what} could not be read: {problem}. Using {instead}.{kept}")

    def show_problems(self) -> None:
        """View > Show problems: the strip's last problems again, after it was closed."""
        if not self.banner.reopen():
            self.statusBar().showMessage("No problems to show.", 5000)

    def _rebuild_header_windows(self) -> None:
        self.header_windows_menu.clear()
        frame = self.state.frame
        windows = frame.windows if frame is not None else ()
        if frame is not None and frame.has_voi_lut:
            self.header_windows_menu.addAction("VOI LUT (header)", self.reset_display)
        for window in windows:
            text = f"C {window.center:g} / W {window.width:g}"
            if window.explanation:
                text = f"{window.explanation}: {text}"
            self.header_windows_menu.addAction(text, lambda w=window: self.state.set_window(w))
        self.header_windows_menu.setEnabled(bool(windows) or (frame is not None and frame.has_voi_lut))

    def _connect(self) -> None:
        self.state.frame_changed.connect(self._update_frame_controls)
        self.state.frame_changed.connect(lambda _i: self._rebuild_header_windows())
        self.state.stack_changed.connect(self._update_frame_controls)
        self.state.display_changed.connect(self._update_window_label)
        self.state.frame_failed.connect(self.banner.add_message)
        self.frame_slider.valueChanged.connect(self.state.set_frame)
        self.canvas.cursor_moved.connect(self._update_cursor_label)
        self.canvas.cursor_left.connect(self.cursor_label.clear)
        self.canvas.zoom_changed.connect(lambda z: self.zoom_label.setText(zoom_text(z)))
        self.image_list.currentRowChanged.connect(self._show_stack_at)
        self.state.frame_changed.connect(self.annotations.remember_frame)
        self.annotations.problem.connect(self.banner.show_message)
        self.annotations.changed.connect(lambda _e: self._refresh_review_filter())
        self.annotation_panel.box_activated.connect(self.show_box)
        self.annotation_panel.label_entered.connect(self.focus_image)
        self.annotations.changed.connect(self._update_undo_actions)
        self.annotations.current_image_changed.connect(self._update_undo_actions)
        self.needs_review_only.toggled.connect(lambda _on: self._refresh_review_filter())
        self.classify_panel.image_requested.connect(self.show_image)
        self.classify_panel.label_changed.connect(self._show_canvas_label)
        worker = self.service.worker
        worker.state.connect(self._on_model_state)
        worker.steps.connect(self._on_steps)
        self._on_model_state("not loaded" if self.assistant_settings.clinkd_configured else "not configured", "")

    # ----- opening
    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", "", IMAGE_FILTER)
        if paths:
            self.open(paths)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images (searched recursively)")
        if folder:
            self.open([folder])

    def open(self, paths: list[str]) -> None:
        """Index and open ``paths`` on a worker thread; the window stays responsive meanwhile.

        A ClinLens project file (``main.py annotate --out``, File > Save as project) opens its
        images with its annotations.

        Results come back through bound methods of this window, so Qt queues them to the GUI
        thread (a lambda would run in the worker's thread and touch widgets from there).
        """
        if len(paths) == 1 and str(paths[0]).lower().endswith(".json"):
            try:
                paths = self.annotations.use_project(str(paths[0]))
            except (DocumentError, OSError) as error:
                self.banner.show_message(f"Could not open the project {Path(paths[0]).name}: {error}")
                return
        self.statusBar().showMessage(f"Opening {len(paths)} item(s)…")
        worker = create_worker(_open_in_background, [str(p) for p in paths], _start_thread=False)
        worker.returned.connect(self._on_opened)
        worker.errored.connect(self._on_open_failed)
        worker.start()

    def _on_open_failed(self, error: Exception) -> None:
        self.statusBar().clearMessage()
        self.banner.show_message(f"Opening failed: {error}")

    def _on_opened(self, opened: tuple[OpenResult, list[str]]) -> None:
        result, paths = opened
        self.statusBar().clearMessage()
        if result.errors:
            self.banner.show_errors(result.errors, len(result.skipped))
        elif result.skipped:  # not failures: one count, where the status messages go
            self.statusBar().showMessage(f"{skipped_text(len(result.skipped))}.", 10000)
        if result.stacks:
            self._refresh_recent_menu(recent_files.remember(paths))
            self.annotations.attach(result.stacks, [str(p) for p in paths])
            first_new = len(self.stacks)
            for stack in result.stacks:
                self.stacks.append(stack)
                item = QListWidgetItem(item_text(stack))
                item.setToolTip(item_tooltip(stack))
                self.image_list.addItem(item)
            self.image_list.setCurrentRow(first_new)
        self.load_finished.emit(result)

    def _refresh_recent_menu(self, recent: list[str]) -> None:
        self.recent_menu.clear()
        for path in recent:
            self.recent_menu.addAction(path, lambda p=path: self.open([p]))
        self.recent_menu.setEnabled(bool(recent))

    def _show_stack_at(self, row: int) -> None:
        if 0 <= row < len(self.stacks) and self.stacks[row] is not self.state.stack:
            stack = self.stacks[row]
            last_frame = self.annotations.show_stack(stack)
            self.state.set_stack(stack, last_frame)
            self.setWindowTitle(f"ClinLens — {stack.title}")

    def open_image_paths(self) -> list[str]:
        """Every file of every open image: the pool KPL classifies transductively."""
        return [path for stack in self.stacks for path in stack.paths]

    def show_image(self, path: str, frame_number: int = 1) -> None:
        """Show the frame of ``path`` (a result row was clicked)."""
        for row, stack in enumerate(self.stacks):
            for index in range(stack.n_frames):
                source = stack.frame_source(index)
                if source.path == path and source.frame_number == frame_number:
                    self.image_list.setCurrentRow(row)
                    self.state.set_frame(index)
                    return

    def _show_canvas_label(self, text: str) -> None:
        self.canvas_label.show_text(text)

    def step_image(self, delta: int) -> None:
        """N / P: the next or previous image in the list, skipping images hidden by the review filter."""
        row = self.image_list.currentRow()
        for _ in range(len(self.stacks)):
            row += delta
            if not 0 <= row < len(self.stacks):
                return
            if not self.image_list.item(row).isHidden():
                self.image_list.setCurrentRow(row)
                return

    def _refresh_review_filter(self) -> None:
        only_pending = self.needs_review_only.isChecked()
        for row, stack in enumerate(self.stacks):
            reviewed = self.annotations.is_reviewed(stack)
            item = self.image_list.item(row)
            disagree = stack.key in self.disagreeing
            item.setText(item_text(stack, item.data(ORIGIN_ROLE), reviewed, disagree))
            item.setHidden(only_pending and reviewed and row != self.image_list.currentRow())

    def review_first(self, key: str, why: str) -> None:
        """A second opinion found the two models disagreeing on this image: it moves up, after the
        images already flagged, and is marked ≠ (its tooltip says on what), so N reaches it first."""
        row = next((r for r, stack in enumerate(self.stacks) if stack.key == key), None)
        if row is None or key in self.disagreeing:
            return
        self.disagreeing[key] = why
        target = len(self.disagreeing) - 1
        current = self.state.stack
        self.stacks.insert(target, self.stacks.pop(row))
        with QSignalBlocker(self.image_list):  # the image on screen stays on screen
            self.image_list.insertItem(target, self.image_list.takeItem(row))
            if current is not None:
                self.image_list.setCurrentRow(next(r for r, s in enumerate(self.stacks) if s is current))
        item = self.image_list.item(target)
        item.setToolTip(item_tooltip(self.stacks[target], item.data(ORIGIN_ROLE)) + f"\nSecond opinion: {why}")
        self._refresh_review_filter()

    # ----- annotations
    def set_tool(self, tool: Tool) -> None:
        if hasattr(self, "segmentation"):
            self.segmentation.set_active(False)
        self.tools.cancel()
        self.tools.tool = tool
        self.tool_actions[tool].setChecked(True)
        cursor = Qt.CursorShape.CrossCursor if tool is Tool.BOX else Qt.CursorShape.ArrowCursor
        self.canvas.viewport().setCursor(cursor)

    def focus_image(self) -> None:
        """Give the keyboard to the image (the canvas or the three planes), so that B, V, H pick tools again."""
        self.mpr.pages.currentWidget().setFocus(Qt.FocusReason.OtherFocusReason)

    def accept(self) -> None:
        if not self.ask_panel.accept_highlighted():
            self.annotations.review_selected(Review.ACCEPTED)

    # ----- assistant
    def set_assistant_settings(self, settings: AssistantSettings) -> None:
        self.assistant_settings = settings
        save_settings(settings)
        set_decode_timeout(settings.decode_timeout_s)
        self.ask_panel.refresh_settings()
        self.classify_panel.refresh_settings()
        self.segmentation.refresh_settings()
        if self.service.running is None:
            self._on_model_state("not loaded" if settings.clinkd_configured else "not configured", "")

    def choose_clinkd_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "ClinKD / Qwen2-VL checkpoint folder")
        if folder:
            self.set_assistant_settings(replace(self.assistant_settings, clinkd_dir=folder))

    def edit_settings(self) -> None:
        dialog = SettingsDialog(self.assistant_settings, [p.stem for p in available_knowledge()], self)
        if dialog.exec():
            self.set_assistant_settings(dialog.value())

    def _on_model_state(self, state: str, detail: str) -> None:
        text = {
            "not configured": "Model: not configured",
            "not loaded": "Model: not loaded yet",
            "loading": "Model: loading…",
            "ready": "Model: ready",
            "busy": "Model: busy",
            "error": "Model: error",
        }.get(state, f"Model: {state}")
        self.model_status.setText(text + (f" · {detail}" if detail and state != "error" else ""))
        self.model_status.setToolTip(detail)

    def _on_steps(self, _job_id: int, steps: int, seconds: float) -> None:
        rate = steps / seconds if seconds > 0 else 0.0
        self.model_status.setText(f"Model: busy · {steps} tokens · {seconds:.1f} s · {rate:.1f} tok/s")

    def select_all_on_frame(self) -> None:
        """Every box and mask on the shown frame (of the visible sources): Ctrl+A then A/X reviews them all."""
        frame, controller = self.state.frame_index, self.annotations
        chosen = {box.id for box in controller.visible_boxes(frame)}
        if controller.doc is not None and controller.image_id is not None:
            masks = controller.doc.masks(controller.image_id, frame)
            chosen |= {m.id for m in masks if m.source in controller.visible_sources}
        self.annotations.select(chosen)

    def show_box(self, box_id: str) -> None:
        doc = self.annotations.doc
        found = doc.find(self.annotations.image_id, box_id) if doc is not None else None
        if isinstance(found, Mask):  # a mask: its first frame, on the single view where it is drawn
            self.annotations.select({box_id})
            self.mpr.toggle_action.setChecked(False)
            self.state.set_frame(found.frame)
            return
        if self.mpr.show_annotation(box_id):  # drawn on a reformat, or a measurement
            return
        box = self.annotations.box(box_id)
        if box is None:
            return
        self.annotations.select({box_id})
        self.state.set_frame(box.frame)
        self.canvas.center_on_pixel((box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2)

    def mark_reviewed_and_next(self) -> None:
        self.annotations.set_image_reviewed(True)
        self._refresh_review_filter()
        self.step_image(1)

    def choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import annotations", "", "Annotations (*.json);;All files (*)")
        if path:
            self.import_annotations(path)

    def import_annotations(self, path: str) -> int:
        """Merge boxes from a COCO or ClinLens JSON file into the open images; returns how many."""
        doc = self.annotations.doc
        if doc is None:
            self.banner.show_message("Open the images first, then import their annotations.")
            return 0
        try:
            added = import_annotations(doc, path)
        except DocumentError as error:
            self.banner.show_message(f"Could not import {Path(path).name}: {error}")
            return 0
        self.overlay.sync()
        self.annotation_panel.refresh()
        self.statusBar().showMessage(f"Imported {added} annotation(s) from {Path(path).name}", 5000)
        return added

    def choose_project_file(self) -> None:
        if self.annotations.doc is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save annotations as", "project.clinlens.json", "ClinLens annotations (*.json)"
        )
        if path:
            self.annotations.save_as(path)

    def choose_export(self, name: str) -> None:
        doc = self.annotations.doc
        if doc is None:
            self.banner.show_message("Nothing to export: no images are open.")
            return
        choice = ask_export(self, name, doc, self.annotations.image_id, getattr(self, "last_export_folder", None))
        if choice is not None:
            self.last_export_folder = choice.folder
            self.export_annotations(name, choice.out, choice.image_ids, choice.scope)

    def export_annotations(
        self, name: str, out: str, image_ids: list[str] | None = None, scope: ReviewScope = REVIEWED_ONLY
    ) -> list[Path]:
        doc = self.annotations.doc
        if doc is None:
            self.banner.show_message("Nothing to export: no images are open.")
            return []
        try:  # by default, as on the command line: pending and rejected model output stay in the document only
            written = FORMATS[name].export(
                doc,
                out,
                image_ids=image_ids,
                include_pending=scope.include_pending,
                include_rejected=scope.include_rejected,
            )
        except (ExportError, OSError, ValueError) as error:
            self.banner.show_message(f"Export to {name.upper()} failed: {error}")
            return []
        self.statusBar().showMessage(f"Exported {len(written)} file(s) to {out} ({scope.describe()})", 8000)
        return written

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.open(paths)
            event.acceptProposedAction()

    # ----- display
    def apply_preset(self, preset: Preset) -> None:
        self.state.set_window(Window(preset.center, preset.width, explanation=preset.name))

    def reset_display(self) -> None:
        self.state.reset_display()
        self.canvas.fit_to_window()

    def save_window_as_preset(self, name: str) -> None:
        window = self.state.effective_window()
        if window is None or not name.strip():
            return
        used = {p.key for p in load_presets() if p.key}
        key = next((k for k in "123456789" if k not in used), None)
        save_user_preset(Preset(name.strip(), window.center, window.width, key, user=True))
        self._rebuild_window_menu()
        self.preset_bar.set_presets(load_presets())

    def _ask_preset_name(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Preset name:")
        if ok:
            self.save_window_as_preset(name)

    # ----- status
    def _update_frame_controls(self, *_args) -> None:
        n = self.state.n_frames
        self.frame_slider.blockSignals(True)
        self.frame_slider.setMaximum(max(n - 1, 0))
        self.frame_slider.setValue(self.state.frame_index)
        self.frame_slider.blockSignals(False)
        self.frame_slider.setVisible(n > 1)
        self.frame_label.setVisible(n > 1)
        text = f"Frame {self.state.frame_index + 1}/{n}" if n else "No image"
        self.frame_label.setText(text)
        self.frame_status.setText(text)

    def _update_window_label(self) -> None:
        window, frame = self.state.window, self.state.frame
        if frame is None:
            text = ""
        elif frame.is_color:
            text = "Colour"
        elif window is None:
            text = "VOI LUT (header)"
        else:
            text = f"C {window.center:.0f} / W {window.width:.0f}"
            if window.function != "LINEAR":
                text += f" {window.function}"
        if self.state.invert:
            text += "  inverted"
        self.window_label.setText(text)

    def _update_cursor_label(self, x: float, y: float) -> None:
        frame, stack = self.state.frame, self.state.stack
        col, row = int(x // 1), int(y // 1)
        if frame is None or stack is None or not (0 <= col < stack.columns and 0 <= row < stack.rows):
            self.cursor_label.clear()
            return
        stored = frame.stored_value_at(col, row)
        value = frame.modality_value_at(col, row)
        unit = "HU" if stack.modality == "CT" else "value"
        self.cursor_label.setText(f"x {col}, y {row}   stored {_fmt(stored)}   {unit} {_fmt(value)}")

    def show_restored(self) -> None:
        """Show the window as the user left it, or maximised on a first start (no saved layout)."""
        if restore_layout(self):
            self.show()
        else:
            self.showMaximized()

    def closeEvent(self, event) -> None:
        with contextlib.suppress(OSError):  # a full disk must not keep the window from closing
            save_layout(self)
        self.pacs.shutdown()
        self.cine.pause()
        self.series_browser.shutdown()
        self.mpr.shutdown()
        self.state.shutdown()
        self.service.shutdown()
        self.annotations.save_all()
        super().closeEvent(event)


def _open_in_background(paths: list[str]) -> tuple[OpenResult, list[str]]:
    return open_paths(paths), paths


def _fmt(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
