"""A one-line banner for a panel whose model is not configured: what is missing, one action.

The Ask and Classify panels both need it, so it lives here rather than in either capability.
The long explanation (which weights, where to get them) is the tooltip, and "Details" opens
docs/models/weights.md: a reader sees one line and a button instead of a paragraph above the
panel's own controls.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

WEIGHTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "models" / "weights.md"
AMBER = "#ffcf70"


class MissingModelBanner(QFrame):
    """``set_missing(True)`` shows it; ``action`` is emitted when its button is pressed."""

    action = Signal()

    def __init__(self, message: str, action_text: str, details: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("missingModelBanner")
        self.setStyleSheet(
            f"#missingModelBanner {{ border: 1px solid {AMBER}; border-left-width: 4px; border-radius: 3px; "
            "background: rgba(255, 207, 112, 0.08); }"
        )
        self._message = message
        self.label = QLabel(_rich(message))
        self.label.setStyleSheet(f"color: {AMBER}; border: none; background: transparent;")
        self.label.setOpenExternalLinks(True)
        self.label.setWordWrap(True)  # a narrow dock wraps the line rather than clipping it
        self.label.setToolTip(details)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the dock
        self.button = QPushButton(action_text)
        self.button.setToolTip(details)
        self.button.clicked.connect(self.action)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 3, 3, 3)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)
        self.setToolTip(details)

    def text(self) -> str:
        """The one-line message, without the Details link."""
        return self._message

    def set_missing(self, missing: bool) -> None:
        self.setVisible(missing)


def _rich(message: str) -> str:
    link = f" <a href='{WEIGHTS_DOC.as_uri()}' style='color: {AMBER};'>Details</a>" if WEIGHTS_DOC.is_file() else ""
    return f"⚠ {html.escape(message)}{link}"
