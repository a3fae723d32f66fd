"""Start the desktop app: theme, main window, and the images to show first."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication

from app.main_window import MainWindow
from app.theme import apply_dark_theme
from engine.paths import resources_dir

DEMO_IMAGE = resources_dir() / "demo" / "CT_small.dcm"


def run_gui(paths: list[str]) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("ClinLens")
    apply_dark_theme(app)
    window = MainWindow()
    window.show()
    window.open(paths or [str(DEMO_IMAGE)])
    return app.exec()
