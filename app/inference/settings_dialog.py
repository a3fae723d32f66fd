"""Settings > Assistant: the weights and how to run them, validated before they are kept.

The fields are grouped by what they are for (the ClinKD model, running it, its answers,
Classify, files), and each has a tooltip saying what it does and its default. "Test" asks the
configured server which models it serves on a worker thread, so the dialog stays responsive; a
dialog closed mid-test cancels the check (its socket is shut down) and ignores its late answer.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from app.inference.server_check import check_server
from app.inference.settings import (
    DEVICES,
    DTYPES,
    FAMILY_CHOICES,
    KPL_METHODS,
    MCG_ROPE,
    AssistantSettings,
    setting_tooltip,
)

OK_COLOUR, ERROR_COLOUR = "#7fdc7f", "#ff8080"


@dataclass
class _Check:
    """One press of Test: its cancel event, and its worker so the dialog can stop listening."""

    worker: object
    cancel: threading.Event


class SettingsDialog(QDialog):
    tested = Signal(bool, str)  # success, the sentence shown (on the GUI thread)

    def __init__(self, settings: AssistantSettings, knowledge_names: list[str], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Assistant settings")
        self.clinkd_dir = QLineEdit(settings.clinkd_dir)
        self.clinkd_dir.setPlaceholderText("Folder of a Qwen2-VL-family checkpoint (config.json, *.safetensors)")
        self.server_url = QLineEdit(settings.server_url)
        self.server_url.setPlaceholderText("http://gpu-server:8000 (vLLM or SGLang)")
        self.server_model = QLineEdit(settings.server_model)
        self.server_model.setPlaceholderText("served model name (empty: the only one it serves)")
        self.second_dir = QLineEdit(settings.second_dir)
        self.second_dir.setPlaceholderText("Folder of another checkpoint, asked the same question")
        self.second_server_url = QLineEdit(settings.second_server_url)
        self.second_server_url.setPlaceholderText("http://other-server:8000 (instead of the folder)")
        self.second_server_model = QLineEdit(settings.second_server_model)
        self.second_server_model.setPlaceholderText("served model name (empty: the only one it serves)")
        self.clip_model = QLineEdit(settings.clip_model)
        self.clip_model.setPlaceholderText("ViT-L-14:openai, ViT-B-16:/path/to/weights.pt or local-dir:/path")
        self.segmentation_model = QLineEdit(settings.segmentation_model)
        self.segmentation_model.setPlaceholderText("Folder of a SAM or MedSAM checkpoint (config.json, *.safetensors)")
        self.observer_name = QLineEdit(settings.observer_name)
        self.observer_name.setPlaceholderText("Family^Given, e.g. Doe^Jane")
        self.observer_organization = QLineEdit(settings.observer_organization)
        self.knowledge = QComboBox()
        self.knowledge.setEditable(True)
        self.knowledge.addItems(knowledge_names)
        self.knowledge.setCurrentText(settings.knowledge)
        self.device = _combo(DEVICES, settings.device)
        self.dtype = _combo(DTYPES, settings.dtype)
        self.mcg_rope = _combo(MCG_ROPE, settings.mcg_rope)
        self.server_family = _combo(FAMILY_CHOICES, settings.server_family)
        self.kpl_method = _combo(KPL_METHODS, settings.kpl_method)
        self.max_pixels = _spin(28 * 28, 4096 * 4096, settings.max_pixels, 28 * 28)
        self.max_new_tokens = _spin(1, 4096, settings.max_new_tokens)
        self.best_of = _spin(1, 32, settings.best_of)
        self.history_tokens = _spin(0, 32768, settings.history_tokens)
        self.kpl_k = _spin(1, 256, settings.kpl_k)
        self.decode_timeout_s = _spin(1, 600, settings.decode_timeout_s)
        self.decode_timeout_s.setSuffix(" s")
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip("Ask the server which models it serves (on a background thread).")
        self.test_button.clicked.connect(self.test_server)
        self.test_result = QLabel()
        self.test_result.setWordWrap(True)
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.server_url.textChanged.connect(self._update_test_button)
        self.problems = QLabel()
        self.problems.setStyleSheet("color: #ff8080;")
        self.problems.setWordWrap(True)
        model = _group(
            "ClinKD model",
            ("clinkd_dir", "Folder", _with_browse(self.clinkd_dir, self._browse_clinkd)),
            ("server_url", "or server URL", _with_button(self.server_url, self.test_button)),
            ("server_model", "Served model name", self.server_model),
            ("server_family", "Served model family", self.server_family),
        )
        model.layout().addRow(self.test_result)
        second = _group(
            "Second opinion",
            ("second_dir", "Folder", _with_browse(self.second_dir, self._browse_second)),
            ("second_server_url", "or server URL", self.second_server_url),
            ("second_server_model", "Served model name", self.second_server_model),
        )
        running = _group(
            "Running a local model",
            ("device", "Device", self.device),
            ("dtype", "Precision", self.dtype),
            ("max_pixels", "Max pixels", self.max_pixels),
        )
        answers = _group(
            "Answers",
            ("max_new_tokens", "Max new tokens", self.max_new_tokens),
            ("best_of", "Best of N (SASG)", self.best_of),
            ("history_tokens", "Follow-up history", self.history_tokens),
            ("mcg_rope", "MCG-RoPE", self.mcg_rope),
        )
        kpl = _group(
            "Classify (KPL)",
            ("clip_model", "CLIP model", self.clip_model),
            ("knowledge", "Knowledge base", self.knowledge),
            ("kpl_k", "k (descriptions per class)", self.kpl_k),
            ("kpl_method", "Method", self.kpl_method),
        )
        segmentation = _group(
            "Segmentation",
            ("segmentation_model", "Model folder", _with_browse(self.segmentation_model, self._browse_segmentation)),
        )
        files = _group("Files", ("decode_timeout_s", "Decode time limit", self.decode_timeout_s))
        report = _group(
            "Report",
            ("observer_name", "Reading observer", self.observer_name),
            ("observer_organization", "Organisation", self.observer_organization),
        )
        self.history_tokens.setSuffix(" tokens")
        self.max_new_tokens.setSuffix(" tokens")
        self.max_pixels.setSuffix(" px")
        for edit in (
            self.clinkd_dir,
            self.server_url,
            self.server_model,
            self.second_dir,
            self.second_server_url,
            self.second_server_model,
            self.clip_model,
            self.segmentation_model,
        ):
            edit.setMinimumWidth(360)  # paths and URLs: long, and clipped text hides what was typed
        grid = QGridLayout()
        grid.addWidget(model, 0, 0, 1, 2)
        grid.addWidget(second, 1, 0, 1, 2)
        grid.addWidget(running, 2, 0)
        grid.addWidget(answers, 2, 1)
        grid.addWidget(kpl, 3, 0, 1, 2)
        grid.addWidget(segmentation, 4, 0, 1, 2)
        grid.addWidget(files, 5, 0, 1, 2)
        grid.addWidget(report, 6, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.problems)
        layout.addWidget(buttons)
        self._base = settings
        self._check: _Check | None = None
        self._update_test_button()
        self.test_result.setVisible(False)

    def value(self) -> AssistantSettings:
        return replace(
            self._base,
            clinkd_dir=self.clinkd_dir.text().strip(),
            server_url=self.server_url.text().strip(),
            server_model=self.server_model.text().strip(),
            second_dir=self.second_dir.text().strip(),
            second_server_url=self.second_server_url.text().strip(),
            second_server_model=self.second_server_model.text().strip(),
            clip_model=self.clip_model.text().strip(),
            segmentation_model=self.segmentation_model.text().strip(),
            knowledge=self.knowledge.currentText().strip(),
            device=self.device.currentText(),
            dtype=self.dtype.currentText(),
            mcg_rope=self.mcg_rope.currentText(),
            server_family=self.server_family.currentText(),
            kpl_method=self.kpl_method.currentText(),
            max_pixels=self.max_pixels.value(),
            max_new_tokens=self.max_new_tokens.value(),
            best_of=self.best_of.value(),
            kpl_k=self.kpl_k.value(),
            decode_timeout_s=self.decode_timeout_s.value(),
            history_tokens=self.history_tokens.value(),
            observer_name=self.observer_name.text().strip(),
            observer_organization=self.observer_organization.text().strip(),
        )

    def accept(self) -> None:
        problems = self.value().problems()
        if problems:
            self.problems.setText("\n".join(problems))
            return
        super().accept()

    # ----- Test
    @property
    def testing(self) -> bool:
        return self._check is not None

    def _update_test_button(self) -> None:
        self.test_button.setEnabled(not self.testing and bool(self.server_url.text().strip()))

    def test_server(self) -> None:
        """Check the server URL and model name as typed, on a worker thread."""
        url, model = self.server_url.text().strip(), self.server_model.text().strip()
        if self.testing or not url:
            return
        cancel = threading.Event()
        worker = create_worker(check_server, url, model, cancel, _start_thread=False, _ignore_errors=True)
        check = self._check = _Check(worker, cancel)
        worker.returned.connect(lambda message: self._show_test(check, True, message))
        worker.errored.connect(lambda error: self._show_test(check, False, _sentence(error)))
        self._show_line("#8a8f98", f"Testing {url}…")
        self._update_test_button()
        worker.start()

    def cancel_test(self) -> None:
        """Stop listening to a running check and wake its blocked read; its answer is dropped."""
        if self._check is not None:
            self._check.cancel.set()
            self._check = None
            self._show_line("", "")
            self._update_test_button()

    def _show_test(self, check: _Check, ok: bool, message: str) -> None:
        if check is not self._check:  # cancelled, or an earlier press
            return
        self._check = None
        self._show_line(OK_COLOUR if ok else ERROR_COLOUR, message)
        self._update_test_button()
        self.tested.emit(ok, message)

    def _show_line(self, colour: str, text: str) -> None:
        self.test_result.setStyleSheet(f"color: {colour};" if colour else "")
        self.test_result.setText(text)
        self.test_result.setVisible(bool(text))
        # A wrapped label does not grow a laid-out dialog by itself: reserve its lines and grow
        # the dialog, so a long error is read whole rather than clipped at the group's edge.
        label = self.test_result
        label.setMinimumHeight(label.heightForWidth(label.width()) if text else 0)
        self.layout().activate()
        if self.height() < self.minimumSizeHint().height():
            self.resize(self.width(), self.minimumSizeHint().height())

    def done(self, result: int) -> None:
        self.cancel_test()  # OK, Cancel, Escape and the close button all end here
        super().done(result)

    def _browse_clinkd(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "ClinKD / Qwen2-VL checkpoint folder", self.clinkd_dir.text())
        if folder:
            self.clinkd_dir.setText(folder)

    def _browse_second(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Second opinion: checkpoint folder", self.second_dir.text())
        if folder:
            self.second_dir.setText(folder)

    def _browse_segmentation(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "SAM / MedSAM checkpoint folder", self.segmentation_model.text()
        )
        if folder:
            self.segmentation_model.setText(folder)


def _combo(options: tuple[str, ...], current: str) -> QComboBox:
    combo = QComboBox()
    combo.addItems(list(options))
    combo.setCurrentText(current)
    return combo


def _spin(low: int, high: int, value: int, step: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    return spin


def _sentence(error: BaseException) -> str:
    # The check imports the server client on its worker thread (it brings torch); never here.
    server = sys.modules.get("engine.clinkd.server")
    if server is not None and isinstance(error, server.ServerError):
        return str(error)
    return f"The test failed ({type(error).__name__}: {error})."


def _group(title: str, *rows: tuple[str, str, QWidget]) -> QGroupBox:
    """A titled form of settings; each row's label and field carry the setting's tooltip."""
    box = QGroupBox(title)
    form = QFormLayout(box)
    for name, label, widget in rows:
        tip = setting_tooltip(name)
        text = QLabel(label)
        text.setToolTip(tip)
        widget.setToolTip(tip)
        for child in widget.findChildren(QLineEdit):
            child.setToolTip(tip)
        form.addRow(text, widget)
    return box


def _with_button(edit: QLineEdit, button: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return row


def _with_browse(edit: QLineEdit, browse) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    button = QPushButton("Browse…")
    button.clicked.connect(browse)
    layout.addWidget(button)
    return row
