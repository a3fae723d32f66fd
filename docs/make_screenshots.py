"""Render the real main window offscreen and save the README screenshots.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.application import DEMO_IMAGE  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.theme import apply_dark_theme  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def settle(app: QApplication, ms: int = 300) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def open_and_wait(app: QApplication, window: MainWindow, paths: list[str]) -> None:
    loop = QEventLoop()
    window.load_finished.connect(loop.quit)
    window.open(paths)
    loop.exec()
    window.load_finished.disconnect(loop.quit)
    settle(app)


def main() -> int:
    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    window = MainWindow()
    window.resize(1400, 860)
    window.show()
    open_and_wait(app, window, [str(DEMO_IMAGE)])
    window.canvas.center_on_pixel(64, 64)
    window.canvas.cursor_moved.emit(70.0, 60.0)
    settle(app)
    OUT.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(OUT / "viewer.png"))
    print(f"wrote {OUT / 'viewer.png'}")
    window.close()

    # Annotation: a copy of the demo (its sidecar goes to a temp folder), two boxes, one selected.
    with tempfile.TemporaryDirectory() as folder:
        demo = Path(folder) / DEMO_IMAGE.name
        shutil.copy(DEMO_IMAGE, demo)
        window = MainWindow()
        window.resize(1400, 860)
        window.show()
        open_and_wait(app, window, [str(demo)])
        controller = window.annotations
        controller.set_current_label("vertebral body")
        body = controller.add_box(0, 48, 8, 84, 44)
        controller.set_current_label("spinal canal")
        controller.add_box(0, 54, 45, 76, 64)
        controller.select({body.id})
        window.canvas.fit_to_window()
        settle(app)
        window.grab().save(str(OUT / "annotation.png"))
        print(f"wrote {OUT / 'annotation.png'}")
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
