"""Masks on the three planes: a sphere mask built from the phantom's own geometry shows as a
fill on every plane through its centre, exactly where the sphere's voxels lie, and nowhere else.
The label volume behind the fills is built off the GUI thread; a build overtaken by an edit is
dropped, and closing the window joins the build thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtGui import QImage

import app.volumes.mask_planes
from app.main_window import MainWindow
from engine.annotations import AddAnnotations, SetMaskFrames
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


@pytest.fixture
def builds(monkeypatch):
    """Every label-volume build: whether it ran on the GUI thread; with ``gate`` cleared, each
    build waits for it (a test edits the mask while a build is running)."""
    record = {"on_main": [], "gate": threading.Event()}
    record["gate"].set()
    real = app.volumes.mask_planes.label_volume

    def recording(volume, arrays):
        record["on_main"].append(threading.current_thread() is threading.main_thread())
        assert record["gate"].wait(20), "the test never released the build"
        return real(volume, arrays)

    monkeypatch.setattr(app.volumes.mask_planes, "label_volume", recording)
    return record


def add_sphere(window, phantom: Phantom):
    """The phantom's sphere as a mask on the stack frames it covers; returns (mask, sphere voxels)."""
    volume = window.mpr.volume
    sphere = np.stack([phantom.slice_hu(k) == SPHERE_HU for k in range(phantom.slices)])
    frames = volume.geometry.frame_indices
    arrays = {frames[k]: sphere[k] for k in range(phantom.slices) if sphere[k].any()}
    controller = window.annotations
    controller.doc.ensure_label("sphere")
    mask = controller.doc.new_mask(controller.image_id, arrays, "sphere")
    controller.doc.execute(AddAnnotations(controller.image_id, [mask]))
    return mask, sphere


def test_a_sphere_mask_fills_every_plane_through_its_centre_and_undo_removes_it(qtbot, window, tmp_path, builds):
    phantom = Phantom()
    series = phantom.write_series(tmp_path / "series")
    open_planes(qtbot, window, series)
    view, volume = window.mpr.view, window.mpr.volume
    controller = window.annotations
    _mask, sphere = add_sphere(window, phantom)

    centre = phantom.centre_voxel
    for plane in view.viewports:
        view.set_index(plane, centre[volume.axes(plane).fixed_axis])
    # the label volume comes from its build thread; the fills follow on all three planes
    qtbot.wait_until(lambda: all(fill_of(port) is not None for port in view.viewports.values()), timeout=20000)
    assert builds["on_main"] == [False], "the label volume was built on the GUI thread (or more than once)"
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


def test_a_build_overtaken_by_an_edit_is_dropped_and_close_joins_the_thread(qtbot, window, tmp_path, builds):
    phantom = Phantom()
    open_planes(qtbot, window, phantom.write_series(tmp_path / "series"))
    view, volume = window.mpr.view, window.mpr.volume
    centre = phantom.centre_voxel
    axial = view.viewports[Plane.AXIAL]
    upper = centre[0] + 2  # an axial slice of the sphere above its centre
    builds["gate"].clear()  # the first build waits
    mask, sphere = add_sphere(window, phantom)
    assert sphere[upper].any()
    view.set_index(Plane.AXIAL, upper)
    qtbot.wait_until(lambda: len(builds["on_main"]) == 1)
    assert fill_of(axial) is None  # nothing drawn while it is built, and the window goes on
    # the mask is edited meanwhile: the slices above the centre are cleared
    frames = volume.geometry.frame_indices
    cleared = {frames[k]: np.zeros_like(sphere[k]) for k in range(centre[0] + 1, phantom.slices) if sphere[k].any()}
    controller = window.annotations
    controller.doc.execute(SetMaskFrames(controller.image_id, mask.id, cleared))
    edited = controller.doc.annotation(controller.image_id, mask.id)
    builds["gate"].set()
    qtbot.wait_until(lambda: not view.plane_masks.building(), timeout=20000)
    assert builds["on_main"] == [False, False]  # the edited mask was built too, off the GUI thread
    assert view.plane_masks.labels(edited) is not None  # the edit's label volume is the one kept
    assert fill_of(axial) is None  # the stale sphere was never drawn on the cleared slice
    view.set_index(Plane.AXIAL, centre[0])
    assert fill_of(axial) is not None

    builds["gate"].clear()  # a build in flight when the window closes
    view.set_volume(volume)
    view.refresh_masks()
    qtbot.wait_until(lambda: len(builds["on_main"]) == 3)
    threading.Timer(0.2, builds["gate"].set).start()
    window.close()
    pool = view.plane_masks._pool
    assert pool.activeThreadCount() == 0  # joined on close
    assert view.plane_masks.labels(edited) is None and pool.activeThreadCount() == 0  # nothing new after close
