"""Start the desktop app: theme, main window, and the images to show first."""

from __future__ import annotations

import sys

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from app.main_window import MainWindow
from app.widgets.qt_binding import binding_warning
from app.widgets.theme import apply_dark_theme
from engine.paths import resources_dir

DEMO_IMAGE = resources_dir() / "demo" / "CT_small.dcm"
ICON = resources_dir() / "icons" / "clinlens.svg"


def run_gui(paths: list[str]) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    open_window(app, paths)
    return app.exec()


def open_window(app: QApplication, paths: list[str]) -> MainWindow:
    """The shown main window opening ``paths`` (the demo CT without any), warning about the binding."""
    app.setApplicationName("ClinLens")
    app.setDesktopFileName("clinlens")  # matches the entry `clinlens install-desktop` writes
    app.setWindowIcon(QIcon(str(ICON)))
    apply_dark_theme(app)
    window = MainWindow()
    window.show_restored()
    warning = binding_warning()
    if warning:
        print(warning, file=sys.stderr)
        window.banner.show_message(warning)
    window.open(paths or [str(DEMO_IMAGE)])
    return window
