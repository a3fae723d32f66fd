"""Reformat speed: coronal and sagittal planes of a 512x512x400 int16 CT, resliced and rendered.

    python bench/bench_mpr.py [--slices 400] [--repeats 25] [--no-gui]

The volume is synthetic (a body-sized cylinder of soft tissue with a bone ring in air, with
noise), 0.7 mm pixels and 1.25 mm slices, so every coronal and sagittal plane is resampled
along the slices to square 0.7 mm pixels (512 x 714). Each plane is timed from the stored
volume to display pixels: ``Volume.plane_frame`` (cut + linear resampling, stored dtype) then
``display.render`` with a 40/400 window. The first plane of each orientation builds sampling tables
(and the first of all scans the volume for its stored range); it is timed apart and printed, the
median is over the planes after it. Two baselines are measured in the same run on the same
planes, each followed by the same render:

- the user's way: numpy slicing of the volume (``data[::-1, row, :]``, head up) and
  ``scipy.ndimage.zoom(order=1, grid_mode=True, mode="nearest")`` of that slice to square 0.7 mm
  pixels. Its output must have ClinLens's shape, and its values must agree within a bound computed
  in the run: zoom places its samples up to ``shift`` voxels away from ClinLens's (it stretches the
  slice to a whole number of pixels; ClinLens keeps exactly 0.7 mm per pixel), and linear
  interpolation moves a value by at most ``shift`` times the largest step between neighbouring
  slices, plus one for both sides rounding to stored values.
- a general 3-D resampler: ``scipy.ndimage.map_coordinates(order=1)`` sampling exactly ClinLens's
  output grid (its coordinates prepared outside the timer); it must agree within one stored value
  (rounding). This is a weak baseline (it interpolates in 3-D for an axis-aligned cut), kept to
  show the cost of the general path.

Goal: <= 30 ms per plane and faster than the map_coordinates baseline. Whether ClinLens beats the
user's slice + zoom is reported, not a goal.

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
from dataclasses import dataclass, field
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


def user_slice(volume: Volume, plane: Plane, index: int) -> np.ndarray:
    """What a user writes for this synthetic volume: slice with numpy, slices running head up."""
    if plane is Plane.CORONAL:
        return volume.data[::-1, index, :]
    return volume.data[::-1, :, index]


def user_zoom_factors(volume: Volume) -> tuple[float, float]:
    geometry = volume.geometry
    return geometry.slice_spacing_mm / geometry.row_spacing_mm, 1.0  # to square pixels in mm


def user_plane(volume: Volume, plane: Plane, index: int) -> np.ndarray:
    """The user's baseline: numpy slice, then linear zoom to display aspect (stored dtype, rounded)."""
    return ndimage.zoom(
        user_slice(volume, plane, index), user_zoom_factors(volume), order=1, grid_mode=True, mode="nearest"
    )


def user_tolerance(volume: Volume, plane: Plane, index: int) -> int:
    """Largest difference the user's zoom may show from ClinLens on this plane (outside the timer).

    Zooming a ramp of slice numbers gives the slice position zoom samples at each output row;
    ClinLens samples at ``axes.v.to_index``. Linear interpolation moves a value by at most the
    position shift times the largest step between neighbouring slices; plus 1 for rounding.
    """
    axes = volume.axes(plane)
    n = volume.data.shape[0]
    ramp = np.arange(n, dtype=np.float64)[::-1, None]
    zoom_rows = ndimage.zoom(ramp, user_zoom_factors(volume), order=1, grid_mode=True, mode="nearest")[:, 0]
    ours_rows = np.clip(axes.v.to_index(np.arange(axes.height) + 0.5), 0, n - 1)
    shift = float(np.abs(zoom_rows - ours_rows).max()) if len(zoom_rows) == len(ours_rows) else float("inf")
    step = int(np.abs(np.diff(user_slice(volume, plane, index).astype(np.int32), axis=0)).max())
    return int(np.ceil(shift * step)) + 1


def max_difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


@dataclass
class PlaneTimes:
    """Seconds per plane for ClinLens and both baselines, and the largest stored-value differences."""

    ours: list[float] = field(default_factory=list)
    user: list[float] = field(default_factory=list)  # numpy slice + zoom
    general: list[float] = field(default_factory=list)  # map_coordinates
    user_diff: int = 0
    user_tolerance: int = 0
    general_diff: int = 0
    first: float = 0.0  # the first plane of this orientation, which builds what later planes reuse


def time_planes(volume: Volume, plane: Plane, repeats: int) -> PlaneTimes:
    axes = volume.axes(plane)
    indices = np.linspace(axes.n_positions * 0.25, axes.n_positions * 0.75, repeats).astype(int)
    result = PlaneTimes()
    start = time.perf_counter()  # untimed below: sampling tables, once per plane orientation (and the
    render(volume.plane_frame(plane, int(indices[0])), WINDOW)  # volume's stored range, once per volume)
    result.first = time.perf_counter() - start
    for index in indices:
        index = int(index)
        start = time.perf_counter()
        pixels = render(volume.plane_frame(plane, index), WINDOW)
        result.ours.append(time.perf_counter() - start)

        start = time.perf_counter()
        zoomed = user_plane(volume, plane, index)
        user = render(frame_from_array(zoomed, windows=(WINDOW,), params=volume.params), WINDOW)
        result.user.append(time.perf_counter() - start)

        coords = baseline_coordinates(volume, plane, index)
        start = time.perf_counter()
        stored = baseline_plane(volume, coords)
        reference = render(frame_from_array(stored, windows=(WINDOW,), params=volume.params), WINDOW)
        result.general.append(time.perf_counter() - start)

        ours_stored = volume.plane_pixels(plane, index)
        assert pixels.shape == reference.shape == user.shape, (pixels.shape, reference.shape, user.shape)
        result.general_diff = max(result.general_diff, max_difference(ours_stored, stored))
        result.user_diff = max(result.user_diff, max_difference(ours_stored, zoomed))
        result.user_tolerance = max(result.user_tolerance, user_tolerance(volume, plane, index))
    return result


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
        result = time_planes(volume, plane, args.repeats)
        ours_ms, user_ms, general_ms = (statistics.median(t) * 1e3 for t in (result.ours, result.user, result.general))
        user_ok = result.user_diff <= result.user_tolerance
        print(
            f"{plane.value:9s} {axes.width}x{axes.height}: ClinLens {ours_ms:6.1f} ms/plane (median, "
            f"max {max(result.ours) * 1e3:.1f}; first plane of this orientation {result.first * 1e3:.1f})\n"
            f"          numpy slice + zoom(order=1) + render {user_ms:6.1f} ms -> ratio baseline/ClinLens "
            f"{user_ms / ours_ms:.2f}; max stored-value difference {result.user_diff} "
            f"(bound {result.user_tolerance}: {'agrees' if user_ok else 'DISAGREES'})\n"
            f"          map_coordinates(order=1) + render   {general_ms:6.1f} ms -> ratio baseline/ClinLens "
            f"{general_ms / ours_ms:.2f}; max stored-value difference {result.general_diff} (bound 1)"
        )
        ok &= ours_ms <= 30 and ours_ms < general_ms and result.general_diff <= 1 and user_ok
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
