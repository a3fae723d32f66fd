"""Reformat speed: coronal and sagittal planes of a 512x512x400 int16 CT, resliced and rendered.

    python bench/bench_mpr.py [--slices 400] [--repeats 25] [--no-gui]

The volume is synthetic (a body-sized cylinder of soft tissue with a bone ring in air, with
noise), 0.7 mm pixels and 1.25 mm slices, so every coronal and sagittal plane is resampled
along the slices to square 0.7 mm pixels (512 x 714). Each plane is timed from the stored
volume to display pixels: ``Volume.plane_frame`` (cut + linear resampling, stored dtype) then
``display.render`` with a 40/400 window. The baseline, measured in the same run on the same
planes, is ``scipy.ndimage.map_coordinates(order=1)`` sampling the same output grid (its coordinates
prepared outside the timer), followed by the same render. Both sides are checked to agree (max
difference of one stored value, from rounding). Goal: <= 30 ms per plane and faster than the baseline.

The GUI part scrolls the coronal viewport of the real MPR view (offscreen Qt) one slice per
wheel event and reports the longest event-loop stall (time from posting a wheel event to the
loop being free again). Goal: <= 16 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.imaging import Plane, Volume, VolumeGeometry, Window, frame_from_array, render
from engine.imaging.frame import PixelParams

WINDOW = Window(40, 400)


def synthetic_ct(slices: int, side: int = 512) -> Volume:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    radius = np.hypot(yy - side / 2, xx - side / 2)
    base = np.where(radius < side * 0.42, 1064, 24).astype(np.int16)  # 40 HU body, -1000 HU air
    base[(radius > side * 0.30) & (radius < side * 0.33)] = 1824  # 800 HU bone ring
    data = np.empty((slices, side, side), dtype=np.int16)
    for k in range(slices):
        data[k] = base + rng.integers(-20, 21, (side, side), dtype=np.int16)
    geometry = VolumeGeometry(
        shape=data.shape,
        row_cosine=(1.0, 0.0, 0.0),
        column_cosine=(0.0, 1.0, 0.0),
        row_spacing_mm=0.7,
        column_spacing_mm=0.7,
        slice_positions=tuple((0.0, 0.0, 1.25 * k) for k in range(slices)),
        frame_indices=tuple(range(slices)),
    )
    return Volume(geometry, data, PixelParams(16, True, (1.0, -1024.0)), (WINDOW,), False, "synthetic CT")


def baseline_coordinates(volume: Volume, plane: Plane, index: int) -> np.ndarray:
    """Voxel coordinates of every display pixel centre (prepared outside the timed section)."""
    axes = volume.axes(plane)
    ys, xs = np.mgrid[0 : axes.height, 0 : axes.width] + 0.5
    coords = np.ascontiguousarray(np.moveaxis(volume.display_to_voxel(plane, index, xs, ys), -1, 0))
    for axis in range(3):
        np.clip(coords[axis], 0, volume.data.shape[axis] - 1, out=coords[axis])
    return coords


def baseline_plane(volume: Volume, coords: np.ndarray) -> np.ndarray:
    """The same output grid sampled with map_coordinates (order 1), back to the stored dtype."""
    values = ndimage.map_coordinates(volume.data, coords, order=1, output=np.float32)
    return np.rint(values).astype(volume.data.dtype)


def time_planes(volume: Volume, plane: Plane, repeats: int) -> tuple[list[float], list[float], int]:
    axes = volume.axes(plane)
    indices = np.linspace(axes.n_positions * 0.25, axes.n_positions * 0.75, repeats).astype(int)
    ours, base, worst = [], [], 0
    volume.plane_frame(plane, int(indices[0]))  # sampling tables: once per plane orientation
    for index in indices:
        start = time.perf_counter()
        pixels = render(volume.plane_frame(plane, int(index)), WINDOW)
        ours.append(time.perf_counter() - start)
        coords = baseline_coordinates(volume, plane, int(index))
        start = time.perf_counter()
        stored = baseline_plane(volume, coords)
        reference = render(frame_from_array(stored, windows=(WINDOW,), params=volume.params), WINDOW)
        base.append(time.perf_counter() - start)
        worst = max(
            worst, int(np.abs(volume.plane_pixels(plane, int(index)).astype(np.int32) - stored.astype(np.int32)).max())
        )
        assert pixels.shape == reference.shape
    return ours, base, worst


def scroll_stall(volume: Volume, steps: int) -> tuple[float, float]:
    """Longest and median event-loop stall of one coronal scroll step in the real MPR view."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    from app.volumes.view import MprView

    app = QApplication.instance() or QApplication([])
    view = MprView()
    view.resize(1500, 600)
    view.set_layout("1x3")
    view.show()
    view.set_volume(volume)
    app.processEvents()
    port = view.viewports[Plane.CORONAL]
    centre = QPointF(port.viewport().width() / 2, port.viewport().height() / 2)
    stalls = []
    for _ in range(steps):
        event = QWheelEvent(
            centre,
            port.viewport().mapToGlobal(centre),
            QPoint(),
            QPoint(0, -120),
            Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier,
            Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        start = time.perf_counter()
        QApplication.sendEvent(port.viewport(), event)
        app.processEvents()
        stalls.append(time.perf_counter() - start)
    view.close()
    return max(stalls), statistics.median(stalls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--no-gui", action="store_true", help="skip the Qt scrolling measurement")
    args = parser.parse_args()
    start = time.perf_counter()
    volume = synthetic_ct(args.slices)
    print(
        f"volume {volume.data.shape[2]}x{volume.data.shape[1]}x{volume.data.shape[0]} {volume.data.dtype}, "
        f"{volume.data.nbytes / 2**20:.0f} MiB, built in {time.perf_counter() - start:.1f} s; "
        f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}"
    )
    ok = True
    for plane in (Plane.CORONAL, Plane.SAGITTAL):
        axes = volume.axes(plane)
        ours, base, worst = time_planes(volume, plane, args.repeats)
        ours_ms, base_ms = statistics.median(ours) * 1e3, statistics.median(base) * 1e3
        print(
            f"{plane.value:9s} {axes.width}x{axes.height}: ClinLens {ours_ms:6.1f} ms/plane (median, "
            f"max {max(ours) * 1e3:.1f}), map_coordinates(order=1) + render {base_ms:6.1f} ms "
            f"-> {base_ms / ours_ms:.1f}x faster; max stored-value difference {worst}"
        )
        ok &= ours_ms <= 30 and ours_ms < base_ms and worst <= 1
    if not args.no_gui:
        worst, median = scroll_stall(volume, 40)
        print(
            f"coronal scrolling in the MPR view: longest event-loop stall {worst * 1e3:.1f} ms, "
            f"median {median * 1e3:.1f} ms per wheel step (goal <= 16 ms; load average "
            f"{os.getloadavg()[0]:.1f})"
        )
        ok &= worst * 1e3 <= 16
    print("goals met" if ok else "GOALS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
