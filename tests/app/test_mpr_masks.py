"""Masks on the three planes: a sphere mask built from the phantom's own geometry shows as a
fill on every plane through its centre, exactly where the sphere's voxels lie, and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from app.main_window import MainWindow
from engine.annotations import AddAnnotations
from engine.imaging import Plane
from tests.engine.phantom import SPHERE_HU, Phantom


@pytest.fixture
def window(qtbot):
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1300, 700)
    main.show()
    qtbot.waitExposed(main)
    return main


def open_planes(qtbot, main: MainWindow, path) -> None:
    with qtbot.waitSignal(main.load_finished, timeout=20000):
        main.open([str(path)])
    main.mpr.toggle_action.setChecked(True)
    qtbot.wait_until(lambda: main.mpr.pages.currentWidget() is main.mpr.view, timeout=20000)


def fill_of(port) -> np.ndarray | None:
    """The alpha channel of the port's one mask pixmap as a boolean image (None: no mask drawn)."""
    items = port.masks.childItems()
    if not items:
        return None
    assert len(items) == 1 and items[0].pos().x() == 0 and items[0].pos().y() == 0
    image = items[0].pixmap().toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.bytesPerLine() * height)
    return data.reshape(height, image.bytesPerLine())[:, : width * 4].reshape(height, width, 4)[..., 3] > 0


def expected_extent(volume, plane: Plane, sphere: np.ndarray) -> tuple[float, float, float, float]:
    """Display edges (x0, x1, y0, y1) of the sphere's voxels on the plane through its centre."""
    axes = volume.axes(plane)
    inside = np.argwhere(sphere)
    edges = []
    for axis in (axes.u, axes.v):
        indices = inside[:, axis.volume_axis]
        ends = axis.to_display(np.array([indices.min() - 0.5, indices.max() + 0.5]))
        edges += sorted(float(e) for e in ends)
    return tuple(edges)


def test_a_sphere_mask_fills_every_plane_through_its_centre_and_undo_removes_it(qtbot, window, tmp_path):
    phantom = Phantom()
    series = phantom.write_series(tmp_path / "series")
    open_planes(qtbot, window, series)
    view, volume = window.mpr.view, window.mpr.volume
    sphere = np.stack([phantom.slice_hu(k) == SPHERE_HU for k in range(phantom.slices)])
    frames = volume.geometry.frame_indices
    arrays = {frames[k]: sphere[k] for k in range(phantom.slices) if sphere[k].any()}
    controller = window.annotations
    doc, image_id = controller.doc, controller.image_id
    doc.ensure_label("sphere")
    mask = doc.new_mask(image_id, arrays, "sphere")
    controller.doc.execute(AddAnnotations(image_id, [mask]))

    centre = phantom.centre_voxel
    for plane in view.viewports:
        view.set_index(plane, centre[volume.axes(plane).fixed_axis])
    for plane, port in view.viewports.items():
        fill = fill_of(port)
        assert fill is not None, plane
        assert fill.shape == (volume.axes(plane).height, volume.axes(plane).width)
        ys, xs = np.nonzero(fill)
        x0, x1, y0, y1 = expected_extent(volume, plane, sphere)
        assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1, (plane, xs.min(), xs.max(), x0, x1)
        assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1, (plane, ys.min(), ys.max(), y0, y1)
        # the fill is where the sphere is: the centre's display point is inside
        _, cx, cy = volume.voxel_to_display(plane, np.asarray(centre, dtype=float))
        assert fill[int(cy), int(cx)]

    # a slice outside the sphere shows none
    coronal = view.viewports[Plane.CORONAL]
    view.set_index(Plane.CORONAL, 2)
    assert fill_of(coronal) is None

    # undo removes the fill from every plane
    view.set_index(Plane.CORONAL, centre[1])
    assert fill_of(coronal) is not None
    controller.undo()
    qtbot.wait_until(lambda: all(fill_of(port) is None for port in view.viewports.values()))
