"""Settings > Assistant: the weights and how to run them, validated before they are kept."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.inference.settings import DEVICES, DTYPES, KPL_METHODS, MCG_ROPE, AssistantSettings


class SettingsDialog(QDialog):
    def __init__(self, settings: AssistantSettings, knowledge_names: list[str], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Assistant settings")
        self.clinkd_dir = QLineEdit(settings.clinkd_dir)
        self.clinkd_dir.setPlaceholderText("Folder of a Qwen2-VL-family checkpoint (config.json, *.safetensors)")
        self.server_url = QLineEdit(settings.server_url)
        self.server_url.setPlaceholderText("or an OpenAI-compatible server: http://gpu-server:8000 (vLLM, SGLang)")
        self.server_model = QLineEdit(settings.server_model)
        self.server_model.setPlaceholderText("served model name (empty: the only one it serves)")
        self.clip_model = QLineEdit(settings.clip_model)
        self.clip_model.setPlaceholderText("ViT-L-14:openai, ViT-B-16:/path/to/weights.pt or local-dir:/path")
        self.knowledge = QComboBox()
        self.knowledge.setEditable(True)
        self.knowledge.addItems(knowledge_names)
        self.knowledge.setCurrentText(settings.knowledge)
        self.device = _combo(DEVICES, settings.device)
        self.dtype = _combo(DTYPES, settings.dtype)
        self.mcg_rope = _combo(MCG_ROPE, settings.mcg_rope)
        self.kpl_method = _combo(KPL_METHODS, settings.kpl_method)
        self.max_pixels = _spin(28 * 28, 4096 * 4096, settings.max_pixels, 28 * 28)
        self.max_new_tokens = _spin(1, 4096, settings.max_new_tokens)
        self.best_of = _spin(1, 32, settings.best_of)
        self.history_tokens = _spin(0, 32768, settings.history_tokens)
        self.history_tokens.setToolTip(
            "Follow-up questions carry the earlier turns within this many tokens; "
            "the oldest are left out beyond it (0: no history)"
        )
        self.kpl_k = _spin(1, 256, settings.kpl_k)
        self.decode_timeout_s = _spin(1, 600, settings.decode_timeout_s)
        self.decode_timeout_s.setSuffix(" s")
        self.decode_timeout_s.setToolTip(
            "A compressed frame still decoding after this long is abandoned "
            "with an error (damaged files can keep a decoder busy)."
        )
        self.problems = QLabel()
        self.problems.setStyleSheet("color: #ff8080;")
        self.problems.setWordWrap(True)
        form = QFormLayout()
        form.addRow("ClinKD folder", _with_browse(self.clinkd_dir, self._browse_clinkd))
        form.addRow("ClinKD server", self.server_url)
        form.addRow("Server model", self.server_model)
        form.addRow("CLIP model", self.clip_model)
        form.addRow("Knowledge base", self.knowledge)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.dtype)
        form.addRow("Max pixels", self.max_pixels)
        form.addRow("Max new tokens", self.max_new_tokens)
        form.addRow("Best of N (SASG)", self.best_of)
        form.addRow("History tokens", self.history_tokens)
        form.addRow("MCG-RoPE", self.mcg_rope)
        form.addRow("KPL k", self.kpl_k)
        form.addRow("KPL method", self.kpl_method)
        form.addRow("Decode time limit", self.decode_timeout_s)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problems)
        layout.addWidget(buttons)
        self._base = settings

    def value(self) -> AssistantSettings:
        return replace(
            self._base,
            clinkd_dir=self.clinkd_dir.text().strip(),
            server_url=self.server_url.text().strip(),
            server_model=self.server_model.text().strip(),
            clip_model=self.clip_model.text().strip(),
            knowledge=self.knowledge.currentText().strip(),
            device=self.device.currentText(),
            dtype=self.dtype.currentText(),
            mcg_rope=self.mcg_rope.currentText(),
            kpl_method=self.kpl_method.currentText(),
            max_pixels=self.max_pixels.value(),
            max_new_tokens=self.max_new_tokens.value(),
            best_of=self.best_of.value(),
            kpl_k=self.kpl_k.value(),
            decode_timeout_s=self.decode_timeout_s.value(),
            history_tokens=self.history_tokens.value(),
        )

    def accept(self) -> None:
        problems = self.value().problems()
        if problems:
            self.problems.setText("\n".join(problems))
            return
        super().accept()

    def _browse_clinkd(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "ClinKD / Qwen2-VL checkpoint folder", self.clinkd_dir.text())
        if folder:
            self.clinkd_dir.setText(folder)


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


def _with_browse(edit: QLineEdit, browse) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    button = QPushButton("Browse…")
    button.clicked.connect(browse)
    layout.addWidget(button)
    return row
