"""A non-modal strip that reports files that could not be opened, without stopping the user.

Closing the strip hides it but keeps what it said: View > Show problems and the status-bar
indicator (``ProblemsIndicator``) bring the last problems back, so a reader who dismissed the
strip to see the image can still find out which files were not opened.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

from engine.imaging import LoadError

_LISTED = 8  # files spelled out in the strip; the rest are "…"


class ErrorBanner(QWidget):
    changed = Signal()  # shown, hidden, or its problems changed: the indicator follows

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.setStyleSheet("#errorBanner { background: #5c1f24; } QLabel { color: #ffd7d9; }")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.problem_count = 0  # problems in the text below, kept after the strip is closed
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss (View > Show problems brings it back)")
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

    def show_errors(self, errors: list[LoadError], skipped: int = 0) -> None:
        """Each file once: the engine's sentences already start with the file name."""
        lines = [_error_line(error) for error in errors]
        header = "Could not open 1 file" if len(lines) == 1 else f"Could not open {len(lines)} files"
        text = header + ":\n" + "\n".join(lines[:_LISTED]) + ("\n…" if len(lines) > _LISTED else "")
        if skipped:
            text += f"\n({skipped_text(skipped)})"
        self._set(text, len(lines))

    def show_message(self, text: str) -> None:
        self._set(text, 1)

    def add_message(self, text: str) -> None:
        """Add a line below what the strip already lists (a frame that failed to decode after
        the folder opened must not hide the files that could not be opened)."""
        current = self.label.text() if not self.isHidden() else ""
        if text in current.split("\n"):
            return
        if current:
            self._set(f"{current}\n{text}", self.problem_count + 1)
        else:
            self.show_message(text)

    def reopen(self) -> bool:
        """Show the last problems again after the strip was closed; False when there are none."""
        if not self.problem_count:
            return False
        self.show()
        return True

    def _set(self, text: str, count: int) -> None:
        self.label.setText(text)
        self.problem_count = count
        self.show()
        self.changed.emit()

    def setVisible(self, visible: bool) -> None:  # Qt calls it for show() and hide() too
        super().setVisible(visible)
        self.changed.emit()


class ProblemsIndicator(QToolButton):
    """A status-bar button "⚠ 3 problems" while the strip is closed; a click reopens it."""

    def __init__(self, banner: ErrorBanner, parent=None) -> None:
        super().__init__(parent)
        self.banner = banner
        self.setAutoRaise(True)
        self.setToolTip("Show the problems again (View > Show problems)")
        self.clicked.connect(banner.reopen)
        banner.changed.connect(self._update)
        self._update()

    def _update(self) -> None:
        count = self.banner.problem_count
        self.setText(f"⚠ {count} problem{'s' if count != 1 else ''}")
        self.setVisible(bool(count) and self.banner.isHidden())


def skipped_text(count: int) -> str:
    return f"{count} non-image file{'s' if count != 1 else ''} skipped"


def _error_line(error: LoadError) -> str:
    name = _short(error.path)
    return error.message if name in error.message else f"{name}: {error.message}"


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1] or path
