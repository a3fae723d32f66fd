"""A non-modal strip that reports files that could not be opened, without stopping the user."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

from engine.imaging import LoadError


class ErrorBanner(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.setStyleSheet("#errorBanner { background: #5c1f24; } QLabel { color: #ffd7d9; }")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(8, 4, 4, 4)
        self._layout.addWidget(self.label, 1)
        self._layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def add_action(self, action: QAction, text: str) -> QToolButton:
        """A button for `action` next to ✕, shown only while the action is enabled."""
        button = QToolButton()
        button.setDefaultAction(action)
        button.setText(text)
        button.setVisible(action.isEnabled())
        action.changed.connect(lambda: (button.setText(text), button.setVisible(action.isEnabled())))
        self._layout.insertWidget(self._layout.count() - 1, button, 0, Qt.AlignmentFlag.AlignTop)
        return button

    def show_errors(self, errors: list[LoadError]) -> None:
        lines = [f"{_short(error.path)}: {error.message}" for error in errors]
        header = "Could not open 1 file" if len(lines) == 1 else f"Could not open {len(lines)} files"
        self.show_message(header + ":\n" + "\n".join(lines[:8]) + ("\n…" if len(lines) > 8 else ""))

    def show_message(self, text: str) -> None:
        self.label.setText(text)
        self.show()

    def add_message(self, text: str) -> None:
        """Add a line below what the strip already lists (a frame that failed to decode after
        the folder opened must not hide the files that could not be opened)."""
        current = self.label.text() if self.isVisible() else ""
        if text in current.split("\n"):
            return
        self.show_message(f"{current}\n{text}" if current else text)


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1] or path
