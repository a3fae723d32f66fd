"""The research-use line under every panel that shows a model's output (Ask, Classify)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

RESEARCH_NOTICE = "Research use only — not for diagnosis. Answers can be wrong; check every box."


def research_notice() -> QLabel:
    """A small grey, wrapped label with the notice; one per panel."""
    label = QLabel(RESEARCH_NOTICE)
    label.setWordWrap(True)
    label.setStyleSheet("color: #8a8f98; font-size: 11px;")
    return label
