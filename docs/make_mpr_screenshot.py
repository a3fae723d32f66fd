"""Render the real main window in the three-plane view, with measurements, offscreen.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_mpr_screenshot.py

The series is synthetic and written as real CT DICOM files (a body with lungs, a spine and a
60 HU lesion; 1.2 mm pixels, 2.5 mm slices), opened through File > Open like any other.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))

from make_screenshots import OUT, open_and_wait, settle  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.main_window import MainWindow  # noqa: E402
from app.widgets.theme import apply_dark_theme  # noqa: E402
from engine.annotations import MeasureKind  # noqa: E402
from engine.imaging import Plane  # noqa: E402
from tests.engine.phantom import Phantom  # noqa: E402

LESION = np.array([-60.0, -10.0, 40.0])  # patient LPS mm: in the right lung


class ChestPhantom(Phantom):
    """A body-shaped cross-section instead of a sphere in air (same writer, same geometry)."""

    def slice_hu(self, k: int) -> np.ndarray:
        r, c = np.mgrid[0 : self.rows, 0 : self.columns]
        p = (
            self.position(k)
            + r[..., None] * self.pixel_mm * self.column_cosine
            + c[..., None] * self.pixel_mm * self.row_cosine
        )
        x, y, z = p[..., 0], p[..., 1], p[..., 2]
        hu = np.full(x.shape, -1000, dtype=np.int16)
        hu[(x / 150) ** 2 + (y / 105) ** 2 <= 1] = 40  # soft tissue
        for side in (-1, 1):  # lungs
            hu[((x - side * 65) / 50) ** 2 + ((y + 5) / 65) ** 2 + ((z - 40) / 110) ** 2 <= 1] = -850
        hu[(x / 18) ** 2 + ((y - 70) / 18) ** 2 <= 1] = 700  # spine
        hu[np.linalg.norm(p - LESION, axis=-1) <= 14] = 60  # lesion
        return hu


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    apply_dark_theme(app)
    with tempfile.TemporaryDirectory() as folder:
        phantom = ChestPhantom(
            rows=256, columns=256, slices=100, pixel_mm=1.2, slice_mm=2.5, origin=(-153.0, -153.0, -85.0)
        )
        series = phantom.write_series(Path(folder) / "chest")
        window = MainWindow()
        window.resize(1500, 900)
        window.show()
        open_and_wait(app, window, [str(series)])
        window.state.set_window(window.state.window.__class__(-400, 1500, "LINEAR", "Lung"))
        window.mpr.set_layout("2x2")
        window.mpr.set_enabled(True)
        while window.mpr.pages.currentWidget() is not window.mpr.view:
            settle(app, 100)
        view, volume = window.mpr.view, window.mpr.volume
        view.cursor = volume.geometry.patient_to_voxel(LESION)
        view._apply_cursor()
        settle(app)
        for plane in Plane:
            view.viewports[plane].fit()
        # a length across the lesion on the coronal plane, an ellipse ROI inside it on the axial plane
        window.annotations.set_current_label("lesion")
        index, x, y = (float(v) for v in volume.patient_to_display(Plane.CORONAL, LESION))
        half = 14 / volume.axes(Plane.CORONAL).pixel_mm
        view.add_measurement(Plane.CORONAL, round(index), MeasureKind.LENGTH, ((x - half, y), (x + half, y)))
        index, x, y = (float(v) for v in volume.patient_to_display(Plane.AXIAL, LESION))
        r = 8 / volume.axes(Plane.AXIAL).pixel_mm
        view.add_measurement(Plane.AXIAL, round(index), MeasureKind.ELLIPSE, ((x - r, y - r), (x + r, y + r)))
        window.mpr.set_tool(MeasureKind.LENGTH)
        settle(app, 500)
        window.grab().save(str(OUT / "mpr.png"))
        print(f"wrote {OUT / 'mpr.png'}")
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
