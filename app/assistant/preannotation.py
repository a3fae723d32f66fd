"""Assistant > Pre-annotate…: the dialog, the run on the inference worker, and its progress bar.

The run is plain data both ways: the GUI hands the worker image descriptions and the spec, the
worker hands back one ``ImageOutcome`` per finished image, which lands in that image's document
as one command of the run's undo group (Ctrl+Z on any image of the run takes the whole run back).
Proposals are pending review, so the review mode (N/P, A/X, Ctrl+Enter) walks them as they come.
With a second opinion (vg, a second model configured) both models answer every question; the
images where they disagree are reported by ``review_first`` as they finish, and the window lists
them first, flagged, so N walks them before the rest.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from app.annotations.controller import AnnotationController
from app.inference.settings import AssistantSettings
from app.inference.worker import InferenceService, PreannotateJob
from app.widgets.progress_bar import ProgressBar
from engine.annotations import AnnotationDocument
from engine.imaging import ImageStack, Window
from engine.kpl import available_knowledge
from engine.preannotate import (
    FAILED,
    LabelListError,
    PreannotateSpec,
    PreTask,
    RunProgress,
    apply_outcome,
    new_run_id,
    split_labels,
    window_text,
)

_LISTED = 5  # failed images spelled out in the red strip


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


class PreannotationRun(QObject):
    """Starts a run, applies its outcomes to the documents, pauses, resumes and cancels it."""

    changed = Signal()  # progress, pause or running state
    finished = Signal(str)  # the summary sentence, every run
    run_succeeded = Signal(str)  # the summary of a run where nothing failed: a status-bar line is enough
    run_failed = Signal(str)  # why a run stopped or which images failed, then the summary: for the red strip
    review_first = Signal(str, str)  # stack key, why: the two models disagree on this image (second opinion)

    def __init__(
        self,
        service: InferenceService,
        annotations: AnnotationController,
        stacks: Callable[[], list[ImageStack]],
        settings: Callable[[], AssistantSettings],
    ) -> None:
        super().__init__()
        self.service = service
        self.annotations = annotations
        self.stacks = stacks
        self.settings = settings
        self.job: PreannotateJob | None = None
        self.job_id: int | None = None
        self.batch_size = 4
        self._documents: dict[str, AnnotationDocument] = {}
        self._stack_keys: dict[str, str] = {}  # image id -> stack key, for review_first
        self.reset_counts()
        worker = service.worker
        worker.image_done.connect(self._on_image)
        worker.run_progress.connect(self._on_progress)
        worker.warning.connect(lambda job_id, text: self._note(job_id, text))
        worker.error.connect(self._on_error)
        worker.cancelled.connect(lambda job_id: self._note(job_id, "cancelled: what is done is kept"))
        worker.finished.connect(self._on_finished)

    def reset_counts(self) -> None:
        self.progress: RunProgress | None = None
        self.done = self.failed = self.boxes = self.labels = self.masks = 0
        self.failures: list[str] = []
        self.image_notes: list[str] = []  # "title: note" per done image (seg: a label without a box or mask)
        self.notes: list[str] = []
        self.disagreeing: list[str] = []  # titles of the images the two models disagree on
        self.stopped_by: str | None = None  # the error that ended the run early (a model that would not load)

    @property
    def running(self) -> bool:
        return self.job_id is not None

    @property
    def paused(self) -> bool:
        return self.job is not None and self.job.pause.is_set()

    def images(self, only_needing_review: bool) -> list[tuple[str, object, tuple]]:
        """(key, ImageRef, boxes) of the open images in the run's scope."""
        chosen = []
        for stack in self.stacks():
            found = self.annotations.document_for(stack)
            if found is None:
                continue
            doc, image_id = found
            if only_needing_review and doc.image_state(image_id).reviewed:
                continue
            chosen.append((stack.key, doc.image(image_id), tuple(doc.boxes(image_id))))
            self._documents[image_id] = doc
            self._stack_keys[image_id] = stack.key
        return chosen

    def start(
        self, spec: PreannotateSpec, only_needing_review: bool = False, second_opinion: bool = False
    ) -> int | None:
        """Submit a run; ``second_opinion`` asks the second model every question too (vg)."""
        if self.running:
            return None
        images = self.images(only_needing_review)
        if not images:
            self.finished.emit("Pre-annotation: no open image is in scope.")
            return None
        self.reset_counts()
        self.total = len(images)
        self.run_id = new_run_id()
        self.job = PreannotateJob(
            spec=spec,
            images=tuple(images),
            run_id=self.run_id,
            settings=self.settings(),
            batch_size=self.batch_size,
            second_opinion=second_opinion,
        )
        self.job_id = self.service.submit(self.job)
        self.changed.emit()
        return self.job_id

    def toggle_pause(self) -> None:
        if self.job is not None and self.running:
            (self.job.pause.clear if self.job.pause.is_set() else self.job.pause.set)()
            self.changed.emit()

    def cancel(self) -> None:
        if self.job_id is not None:
            self.job.pause.clear()
            self.service.cancel(self.job_id)

    def status_text(self) -> str:
        p = self.progress
        done = self.done + self.failed
        # the state first: a narrow status bar cuts the end of the line, never "paused"
        verb = "Paused at" if self.paused else "Pre-annotating"
        text = f"{verb} {done}/{getattr(self, 'total', 0)} images"
        if p is not None:
            rate = f" · {p.tokens_per_second:.1f} tok/s" if p.tokens_per_second else ""
            text += f" · ETA {_clock(p.eta_s)}{rate}"
        text += f" · {self.boxes} boxes, {self.labels} labels"
        if self.masks:
            text += f", {self.masks} masks"
        if self.failed:
            text += f" · {self.failed} failed"
        return text

    def _note(self, job_id: int, text: str) -> None:
        if job_id == self.job_id:
            self.notes.append(text)

    def _on_error(self, job_id: int, text: str) -> None:
        if job_id == self.job_id:
            self.stopped_by = text

    def _on_image(self, job_id: int, outcome) -> None:
        if job_id != self.job_id:
            return
        self.done += outcome.status != FAILED
        self.failed += outcome.status == FAILED
        self.boxes += outcome.boxes
        self.labels += outcome.labels
        self.masks += outcome.masks
        self.image_notes.extend(f"{outcome.title}: {note}" for note in outcome.notes)
        if outcome.status == FAILED:
            self.failures.append(f"{outcome.title}: {outcome.reason}")
        if outcome.disagree and outcome.image_id in self._stack_keys:
            self.disagreeing.append(outcome.title)
            self.review_first.emit(self._stack_keys[outcome.image_id], "; ".join(outcome.notes))
        doc = self._documents.get(outcome.image_id)
        if doc is not None and doc.has_image(outcome.image_id) and (outcome.annotations or outcome.key):
            apply_outcome(doc, outcome, self.run_id)
        self.changed.emit()

    def _on_progress(self, job_id: int, progress: RunProgress) -> None:
        if job_id == self.job_id:
            self.progress = progress
            self.changed.emit()

    def _on_finished(self, job_id: int) -> None:
        if job_id != self.job_id:
            return
        self.job_id = None
        masks = f", {self.masks} masks" if self.masks or self.image_notes else ""
        summary = (
            f"Pre-annotation: {self.done + self.failed} of {self.total} images, {self.boxes} boxes{masks} and "
            f"{self.labels} labels proposed (needing review), {self.failed} failed"
        )
        notes = self.notes + self.image_notes[:_LISTED] + (["…"] if len(self.image_notes) > _LISTED else [])
        if notes:
            summary += " · " + "; ".join(notes)
        if self.disagreeing:
            summary += f" · the two models disagree on {len(self.disagreeing)} image(s), listed first (≠)"
        summary += "."
        if self.boxes or self.labels or self.masks:  # a hint about reviewing only when there is something to review
            summary += " N/P walk the images, A/X accept/reject, Ctrl+Z takes the whole run back."
        self.changed.emit()
        if self.stopped_by or self.failures:
            self.run_failed.emit(self.failure_report(summary))
        else:
            self.run_succeeded.emit(summary)
        self.finished.emit(summary)

    def failure_report(self, summary: str) -> str:
        """The reason first (what the user must fix), then the images that failed, then the counts."""
        lines = [f"Pre-annotation stopped: {self.stopped_by}"] if self.stopped_by else []
        if self.failures:
            lines.append(f"{len(self.failures)} image(s) failed:")
            lines += self.failures[:_LISTED] + (["…"] if len(self.failures) > _LISTED else [])
        return "\n".join([*lines, summary])


class PreannotationBar(QWidget):
    """Status-bar progress of a run: images done / total, ETA, tokens/s, Pause/Resume and Cancel."""

    def __init__(self, run: PreannotationRun, parent=None) -> None:
        super().__init__(parent)
        self.run = run
        self.label = QLabel()
        self.label.setMinimumWidth(self.label.fontMetrics().horizontalAdvance("M" * 44))  # no relayout per update
        self.bar = ProgressBar()
        self.bar.setMaximumWidth(160)
        self.bar.setTextVisible(False)
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.label, self.bar, self.pause_button, self.cancel_button):
            layout.addWidget(widget)
        self.pause_button.clicked.connect(run.toggle_pause)
        self.cancel_button.clicked.connect(run.cancel)
        run.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        if self.isVisibleTo(self.parentWidget()) != self.run.running or self.parentWidget() is None:
            self.setVisible(self.run.running)
        if not self.run.running:
            return
        self.label.setText(self.run.status_text())
        self.bar.setRange(0, max(getattr(self.run, "total", 1), 1))
        self.bar.setValue(self.run.done + self.run.failed)
        self.pause_button.setText("Resume" if self.run.paused else "Pause")


class PreannotateDialog(QDialog):
    """Scope, task and its inputs; refuses a bad label list before anything runs."""

    def __init__(
        self,
        labels: list[str],
        window: Window | None,
        needing_review: int,
        total: int,
        knowledge: str,
        parent=None,
        invert: bool = False,
        settings: AssistantSettings | None = None,
        choose_model: Callable[[], AssistantSettings] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Pre-annotate")
        self.settings = settings if settings is not None else AssistantSettings()
        self.choose_model = choose_model
        self.window_used = window
        self.invert = invert
        self.all_images = QRadioButton(f"All open images ({total})")
        self.needing_review = QRadioButton(f"Images needing review ({needing_review})")
        self.all_images.setChecked(True)
        scope = QButtonGroup(self)
        scope.addButton(self.all_images)
        scope.addButton(self.needing_review)
        self.task = QComboBox()
        for task in PreTask:
            self.task.addItem(task.title, task)
        self.labels = QLineEdit(", ".join(labels))
        self.labels.setPlaceholderText("left lung, right lung, heart")
        self.knowledge = QComboBox()
        self.knowledge.setEditable(True)
        self.knowledge.addItems([path.stem for path in available_knowledge()])
        self.knowledge.setCurrentText(knowledge)
        self.second_opinion = QCheckBox("Ask the second model too; images where the two disagree are reviewed first")
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #ff8080;")
        self.model_note = QLabel()  # which weights this task needs and are missing, and how to choose them
        self.model_note.setWordWrap(True)
        self.model_note.setStyleSheet("color: #ffcf70;")
        self.choose_button = QPushButton("Choose model…")
        self.choose_button.setToolTip("Open Assistant > Settings to choose the weights folder or a model server")
        self.choose_button.setVisible(choose_model is not None)
        self.choose_button.clicked.connect(self._choose_model)
        form = QFormLayout()
        scope_box = QVBoxLayout()
        scope_box.addWidget(self.all_images)
        scope_box.addWidget(self.needing_review)
        form.addRow("Images", scope_box)
        form.addRow("Task", self.task)
        form.addRow("Labels to find", self.labels)
        form.addRow("Knowledge base", self.knowledge)
        form.addRow("Second opinion", self.second_opinion)
        form.addRow("Window the model sees", QLabel(window_text(window) + (", inverted" if invert else "")))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Start")
        self.start_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        about = QLabel(
            "Proposals arrive as boxes, masks and labels needing review; the run can be paused or "
            "cancelled (what is done is kept), and Ctrl+Z takes the whole run back."
        )
        about.setWordWrap(True)
        layout.addWidget(about)
        self.setMinimumWidth(520)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_note, 1)
        model_row.addWidget(self.choose_button)
        self.model_row = QWidget()
        self.model_row.setLayout(model_row)
        model_row.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.model_row)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.task.currentIndexChanged.connect(self._task_changed)
        self._task_changed()

    def _task_changed(self) -> None:
        task = self.task.currentData()
        self.labels.setEnabled(task.asks_per_label)
        self.knowledge.setEnabled(task is PreTask.KPL)
        second = self.settings.second_configured
        self.second_opinion.setEnabled(task is PreTask.VG and second)
        self.second_opinion.setToolTip(
            "Both models answer every grounding question; a label only one finds, or their best pair of boxes "
            "with IoU ≤ 0.5, puts the image first for review"
            if second
            else "No second model is configured: fill Assistant > Settings > Second opinion"
        )
        if not self.second_opinion.isEnabled():
            self.second_opinion.setChecked(False)
        self.error.clear()
        self._check_model()

    def missing_model(self) -> str:
        """Why the chosen task cannot run with the current settings ("" when it can): which weights
        are missing and where to choose them, so Start is never offered for a run bound to fail."""
        task, settings = self.task.currentData(), self.settings
        if task.uses_clinkd:
            if not settings.clinkd_configured:
                return (
                    f"“{task.title}” needs ClinKD / Qwen2-VL weights, and none are configured. Choose a "
                    "checkpoint folder or a model server with Choose model… (Assistant > Settings); "
                    "docs/models/weights.md says where to get them."
                )
            problems = [p for p in settings.problems() if "ClinKD folder" in p or "server URL" in p]
            if problems:
                return " ".join(problems) + " Choose another with Choose model… (Assistant > Settings)."
            if task is PreTask.SEG:
                return self._missing_segmenter(task)
            return ""
        if not settings.clip_model:
            return (
                "KPL labels need a CLIP model, and none is configured. Choose one (an open_clip name "
                "such as ViT-L-14:openai, a checkpoint file, or local-dir:FOLDER) with Choose model… "
                "(Assistant > Settings)."
            )
        return ""

    def _missing_segmenter(self, task: PreTask) -> str:
        """The seg task's second model: ClinKD's boxes are the prompts of a SAM-family segmenter."""
        folder = self.settings.segmentation_model
        if not folder:
            return (
                f"“{task.title}” also needs a segmentation model (a SAM or MedSAM checkpoint folder), and "
                "none is chosen. Choose it with Assistant > Choose segmentation model…, or here with "
                "Choose model… (Assistant > Settings, Segmentation: Model folder)."
            )
        problems = [p for p in self.settings.problems() if "segmentation model folder" in p]
        if problems:
            return " ".join(problems) + " Choose another with Assistant > Choose segmentation model…"
        return ""

    def _check_model(self) -> None:
        missing = self.missing_model()
        self.model_note.setText(missing)
        self.model_row.setVisible(bool(missing))
        self.start_button.setEnabled(not missing)
        self.start_button.setToolTip(missing)

    def _choose_model(self) -> None:
        if self.choose_model is not None:
            self.settings = self.choose_model()
            self._task_changed()

    def spec(self, max_new_tokens: int = 80) -> PreannotateSpec:
        """The run's settings; raises LabelListError / ValueError with a sentence for the user."""
        task = self.task.currentData()
        labels = tuple(split_labels(self.labels.text())) if task.asks_per_label else ()
        return PreannotateSpec(
            task, labels, self.knowledge.currentText().strip(), self.window_used, max_new_tokens, self.invert
        )

    def accept(self) -> None:
        if self.missing_model():
            return  # Start is disabled; Enter must not start a run bound to fail either
        try:
            self.spec()
        except (LabelListError, ValueError) as error:
            self.error.setText(str(error))
            return
        super().accept()


def ask_and_start(
    run: PreannotationRun,
    parent: QWidget,
    labels: list[str],
    window: Window | None,
    settings: AssistantSettings,
    invert: bool = False,
    choose_model: Callable[[], AssistantSettings] | None = None,
) -> int | None:
    """Assistant > Pre-annotate…: the dialog, then the run (None when cancelled or busy).

    ``choose_model`` opens the settings and returns them as saved: the dialog's Choose model…
    button, so a user without weights can fix that without losing the dialog."""
    if run.running:
        return None
    everything = run.images(False)
    needing = run.images(True)
    dialog = PreannotateDialog(
        labels, window, len(needing), len(everything), settings.knowledge, parent, invert, settings, choose_model
    )
    if not dialog.exec():
        return None
    return run.start(
        dialog.spec(dialog.settings.max_new_tokens),
        only_needing_review=dialog.needing_review.isChecked(),
        second_opinion=dialog.second_opinion.isChecked(),
    )
