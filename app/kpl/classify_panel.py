"""The Classify panel: KPL zero-shot labels with the knowledge descriptions behind them.

A pool (every open image, the paper's transductive setting) or the current image alone (which
cannot be transductive: it gets the description-ensemble text proxy, and the panel says so)
goes to the inference thread; progress comes back per stage, and Cancel stops at the next batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.annotations.controller import AnnotationController
from app.inference.settings import AssistantSettings
from app.inference.worker import ClassifyJob, InferenceService
from app.viewer.state import ViewerState
from app.widgets.missing_model_banner import MissingModelBanner
from app.widgets.progress_bar import ProgressBar
from app.widgets.research_notice import research_notice
from engine.imaging import render_rgb
from engine.kpl import KnowledgeError, available_knowledge, resolve_knowledge

LOAD_FILE = "Load a knowledge file…"
MISSING_MESSAGE = "No CLIP model is configured."
MISSING_DETAILS = (
    "Set one in Assistant > Settings: an open_clip name with a local checkpoint, a local-dir: folder, "
    "or a Hugging Face cache entry (see docs/models/weights.md)."
)


class _NumberItem(QTableWidgetItem):
    """Sorts by value, not by text."""

    def __init__(self, value: float) -> None:
        super().__init__(f"{value:.3f}")
        self.setData(Qt.ItemDataRole.UserRole, value)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return self.data(Qt.ItemDataRole.UserRole) < other.data(Qt.ItemDataRole.UserRole)


def _bar(value: float) -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setValue(round(max(0.0, min(1.0, value)) * 1000))
    bar.setFormat(f"{value:.3f}")
    bar.setMaximumHeight(16)
    return bar


class ClassifyPanel(QWidget):
    image_requested = Signal(str, int)  # path, 1-based frame number: show this image
    label_changed = Signal(str)  # the current image's label text for the canvas ("" = none)
    run_finished = Signal(int)  # job id, on the GUI thread (done, cancelled or failed)
    report_requested = Signal(list)  # "Add to report": ids of the image annotations to cite

    def __init__(
        self,
        state: ViewerState,
        annotations: AnnotationController,
        service: InferenceService,
        settings: Callable[[], AssistantSettings],
        set_settings: Callable[[AssistantSettings], None],
        open_settings: Callable[[], None],
        pool_paths: Callable[[], list[str]],
        parent=None,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.annotations = annotations
        self.service = service
        self.settings = settings
        self.set_settings = set_settings
        self.pool_paths = pool_paths
        self.result = None
        self.running_job: int | None = None
        self.missing = MissingModelBanner(MISSING_MESSAGE, "Set CLIP model…", MISSING_DETAILS)
        self.missing.action.connect(open_settings)
        self.settings_button = self.missing.button
        self.knowledge = QComboBox()
        self.knowledge_error = QLabel()
        self.knowledge_error.setWordWrap(True)
        self.knowledge_error.setStyleSheet("color: #ff8a80;")
        self.knowledge_error.hide()
        self.classify_image_button = QPushButton("Classify this image")
        self.classify_pool_button = QPushButton("Classify all open images")
        self.cancel_button = QPushButton("Cancel")
        self.progress = ProgressBar()
        self.stage = QLabel()
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #8a8f98;")
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Image", "Label", "Score", "Text proxy"])
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.current_label = QLabel()
        self.scores = QTableWidget(0, 2)
        self.scores.setHorizontalHeaderLabels(["Class", "Probability"])
        self.evidence = QTableWidget(0, 2)
        self.evidence.setHorizontalHeaderLabels(["Retrieved description (winning class)", "Relevance"])
        for table in (self.scores, self.evidence):
            table.verticalHeader().setVisible(False)
            table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.evidence.setWordWrap(True)
        self.accept_button = QPushButton("Accept label as an image annotation")
        self.report_button = QPushButton("Add to report")
        self.report_button.setToolTip("Accept the label and cite it with its descriptions in the study's report")
        notice = research_notice()

        knowledge_row = QHBoxLayout()
        knowledge_row.addWidget(QLabel("Knowledge"))
        knowledge_row.addWidget(self.knowledge, 1)
        run_row = QHBoxLayout()
        for button in (self.classify_image_button, self.classify_pool_button, self.cancel_button):
            run_row.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.missing)
        layout.addLayout(knowledge_row)
        layout.addWidget(self.knowledge_error)
        layout.addLayout(run_row)
        layout.addWidget(self.progress)
        layout.addWidget(self.stage)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.current_label)
        layout.addWidget(self.scores, 1)
        layout.addWidget(self.evidence, 2)
        accept_row = QHBoxLayout()
        accept_row.addWidget(self.accept_button, 1)
        accept_row.addWidget(self.report_button)
        layout.addLayout(accept_row)
        layout.addWidget(notice)

        self.knowledge.activated.connect(self._knowledge_chosen)
        self.classify_image_button.clicked.connect(self.classify_current)
        self.classify_pool_button.clicked.connect(self.classify_pool)
        self.cancel_button.clicked.connect(lambda: self.service.cancel(self.running_job))
        self.table.cellClicked.connect(self._row_clicked)
        self.accept_button.clicked.connect(self.accept_label)
        self.report_button.clicked.connect(self.add_label_to_report)
        worker = service.worker
        worker.progress.connect(self._on_progress)
        worker.result.connect(self._on_result)
        worker.error.connect(self._on_error)
        worker.cancelled.connect(self._on_cancelled)
        worker.finished.connect(self._on_finished)
        state.frame_changed.connect(lambda _i: self.show_current())
        state.stack_changed.connect(self.show_current)
        self.refresh_settings()

    # ----- settings
    def refresh_settings(self) -> None:
        settings = self.settings()
        names = [p.stem for p in available_knowledge()]
        if settings.knowledge and settings.knowledge not in names:
            names.append(settings.knowledge)
        self.knowledge.blockSignals(True)
        self.knowledge.clear()
        self.knowledge.addItems([*names, LOAD_FILE])
        self.knowledge.setCurrentText(settings.knowledge)
        self.knowledge.blockSignals(False)
        self.missing.set_missing(not settings.clip_model)
        self._update_buttons()

    def _knowledge_chosen(self, _index: int) -> None:
        previous = self.settings().knowledge
        choice = self.knowledge.currentText()
        if choice == LOAD_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Knowledge base", "", "Knowledge base (*.json)")
            choice = path or previous
        self.knowledge_error.clear()
        if choice != previous:
            try:  # a bad file is reported here and the previous base stays selected
                resolve_knowledge(choice)
            except KnowledgeError as error:
                self.knowledge_error.setText(f"Kept {previous!r}: {error}")
                choice = previous
        self.knowledge_error.setVisible(bool(self.knowledge_error.text()))
        if choice != previous:
            self.set_settings(replace(self.settings(), knowledge=choice))
        self.refresh_settings()

    def _update_buttons(self) -> None:
        running = self.running_job is not None
        ready = bool(self.settings().clip_model) and not running
        self.classify_image_button.setEnabled(ready and self.state.stack is not None)
        self.classify_pool_button.setEnabled(ready and bool(self.pool_paths()))
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        self.accept_button.setEnabled(self._current() is not None and self.annotations.doc is not None)
        self.report_button.setEnabled(self.accept_button.isEnabled())

    # ----- running
    def classify_current(self) -> int | None:
        stack = self.state.stack
        if stack is None:
            return None
        if self.state.shown_frame_source is not None:  # a reformatted plane: classify it as displayed
            return self._submit_picture(stack)
        return self._submit([stack.frame_source(self.state.frame_index).path])

    def _submit_picture(self, stack) -> int | None:
        frame = self.state.shown_frame()
        if self.running_job is not None or frame is None:
            return None
        title = f"{stack.title}: {self.state.shown_frame_title()}"
        picture = (
            f"{stack.key}#{self.state.shown_frame_title()}",
            title,
            render_rgb(frame, self.state.window, invert=self.state.invert),
        )
        self.running_job = self.service.submit(ClassifyJob((), self.settings(), (picture,)))
        self.progress.setRange(0, 0)
        self.stage.setText(f"Queued: {title}")
        self._update_buttons()
        return self.running_job

    def classify_pool(self) -> int | None:
        return self._submit(self.pool_paths())

    def _submit(self, paths: list[str]) -> int | None:
        if self.running_job is not None or not paths:
            return None
        self.running_job = self.service.submit(ClassifyJob(tuple(paths), self.settings()))
        self.progress.setRange(0, 0)
        self.stage.setText(f"Queued: {len(paths)} file(s)")
        self._update_buttons()
        return self.running_job

    def _on_progress(self, job_id: int, stage: str, done: int, total: int) -> None:
        if job_id == self.running_job:
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)
            self.stage.setText(f"{stage}: {done} / {total}")

    def _on_result(self, job_id: int, result) -> None:
        if job_id == self.running_job:
            self.result = result
            self.stage.setText(
                f"Done: {len(result.images)} image(s), {result.method} · {result.model} · "
                f"cache {result.cache_hits} hit(s), {result.cache_misses} miss(es)"
            )
            notes = [result.note] if result.note else []
            notes += list(result.warnings) + [f"{e.path}: {e.message}" for e in result.errors]
            self.note.setText("\n".join(notes))
            self._fill_table()
            self.show_current()

    def _on_error(self, job_id: int, message: str) -> None:
        if job_id == self.running_job:
            self.stage.setText(f"Error: {message}")

    def _on_cancelled(self, job_id: int) -> None:
        if job_id == self.running_job:
            self.stage.setText("Cancelled: nothing was changed.")

    def _on_finished(self, job_id: int) -> None:
        if job_id == self.running_job:
            self.running_job = None
            self._update_buttons()
            self.run_finished.emit(job_id)

    # ----- showing
    def _fill_table(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.result.images))
        for row, item in enumerate(self.result.images):
            name = QTableWidgetItem(item.image.title)
            name.setData(Qt.ItemDataRole.UserRole, (item.image.path, item.image.frame_number))
            name.setToolTip(item.image.path)
            self.table.setItem(row, 0, name)
            self.table.setItem(row, 1, QTableWidgetItem(item.label))
            self.table.setItem(row, 2, _NumberItem(item.score))
            self.table.setItem(row, 3, QTableWidgetItem(item.text_label))
        self.table.setSortingEnabled(True)

    def _row_clicked(self, row: int, _column: int) -> None:
        path, frame_number = self.table.item(row, 0).data(Qt.ItemDataRole.UserRole)
        self.image_requested.emit(path, frame_number)

    def _current(self):
        """The result for the frame on screen, if the last run classified it."""
        stack = self.state.stack
        if self.result is None or stack is None or self.state.frame is None:
            return None
        if self.state.shown_frame_source is not None:
            key = f"{stack.key}#{self.state.shown_frame_title()}"
            return next((r for r in self.result.images if r.image.path == key), None)
        source = stack.frame_source(self.state.frame_index)
        return next(
            (
                r
                for r in self.result.images
                if r.image.path == source.path and r.image.frame_number == source.frame_number
            ),
            None,
        )

    def show_current(self) -> None:
        current = self._current()
        self.scores.setRowCount(0)
        self.evidence.setRowCount(0)
        if current is None:
            self.current_label.setText("")
            self.label_changed.emit("")
            self._update_buttons()
            return
        self.current_label.setText(
            f"<b>{current.label}</b> ({current.score:.3f}) · text proxy says "
            f"{current.text_label} · knowledge: {self.result.knowledge}"
        )
        self.scores.setRowCount(len(self.result.classes))
        for row, (name, score) in enumerate(zip(self.result.classes, current.scores, strict=True)):
            self.scores.setItem(row, 0, QTableWidgetItem(name))
            self.scores.setCellWidget(row, 1, _bar(score))
        self.evidence.setRowCount(len(current.evidence))
        for row, evidence in enumerate(current.evidence):
            self.evidence.setItem(row, 0, QTableWidgetItem(evidence.description))
            self.evidence.setCellWidget(row, 1, _bar(evidence.relevance))
        self.evidence.resizeRowsToContents()
        self.label_changed.emit(f"KPL: {current.label} {current.score:.2f}")
        self._update_buttons()

    def add_label_to_report(self) -> None:
        """Accept the label (a person now stands behind it) and cite it, descriptions and all, in the report."""
        label = self._accepted_label()
        if label is not None:
            self.report_requested.emit([label.id])

    def accept_label(self) -> bool:
        return self._accepted_label() is not None

    def _accepted_label(self):
        current = self._current()
        if current is None:
            return None
        note = f"KPL ({self.result.method}, {self.result.knowledge}): " + "; ".join(
            e.description for e in current.evidence[:3]
        )
        return self.annotations.accept_image_label(current.label, current.score, note)
