"""The three-plane view as a user drives it: open a series, planes, crosshair, window, measurements."""

from __future__ import annotations

import csv
import math

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest

from app.inference.settings import AssistantSettings, save_settings
from app.main_window import MainWindow
from engine.annotations import MeasureKind, Measurement, load_document
from engine.clinkd import Task
from engine.imaging import Plane, Window, render, render_rgb
from tests.engine.phantom import SPHERE_HU, Phantom
from tests.engine.tiny_clip import save_tiny_clip_dir


@pytest.fixture
def window(qtbot):
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1300, 700)
    main.show()
    qtbot.waitExposed(main)
    return main


@pytest.fixture
def phantom(tmp_path):
    phantom = Phantom()
    phantom.write_series(tmp_path / "series")
    return phantom, tmp_path / "series"


def open_planes(qtbot, main: MainWindow, path) -> None:
    with qtbot.waitSignal(main.load_finished, timeout=20000):
        main.open([str(path)])
    main.mpr.toggle_action.setChecked(True)
    qtbot.wait_until(lambda: main.mpr.pages.currentWidget() is main.mpr.view, timeout=20000)


def pixmap_pixels(port) -> np.ndarray:
    image = port.image_item.pixmap().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.bytesPerLine() * height)
    return data.reshape(height, image.bytesPerLine())[:, :width].copy()


def screen_point(port, x: float, y: float) -> QPoint:
    return port.mapFromScene(x, y)


def test_series_opens_in_three_linked_planes(qtbot, window, phantom):
    sphere, series = phantom
    open_planes(qtbot, window, series)
    view = window.mpr.view
    assert window.mpr.volume.geometry.shape == (sphere.slices, sphere.rows, sphere.columns)
    ports = view.viewports
    assert all(port.isVisible() for port in ports.values())  # 1x3 by default
    assert ports[Plane.CORONAL].letters["top"].text() == "S" and ports[Plane.AXIAL].letters["right"].text() == "L"
    # each viewport shows exactly render(plane frame, shared window)
    for plane, port in ports.items():
        expected = render(window.mpr.volume.plane_frame(plane, port.index), window.state.window)
        np.testing.assert_array_equal(pixmap_pixels(port), expected)
    # a click on the sphere centre in the coronal plane moves the crosshair: the other planes follow
    coronal = ports[Plane.CORONAL]
    view.set_index(Plane.CORONAL, sphere.centre_voxel[1])
    _, x, y = window.mpr.volume.patient_to_display(Plane.CORONAL, sphere.centre)
    QTest.mouseClick(coronal.viewport(), Qt.MouseButton.LeftButton, pos=screen_point(coronal, float(x), float(y)))
    k, r, c = sphere.centre_voxel
    assert abs(ports[Plane.AXIAL].index - k) <= 1 and abs(ports[Plane.SAGITTAL].index - c) <= 1
    assert "value 60" in window.cursor_label.text()
    # the wheel scrolls one plane's own slices
    before = ports[Plane.SAGITTAL].index
    view.set_index(Plane.SAGITTAL, before + 3)
    assert ports[Plane.SAGITTAL].index == before + 3 and ports[Plane.CORONAL].index == r


def test_window_is_shared_and_layouts_switch(qtbot, window, phantom):
    _, series = phantom
    open_planes(qtbot, window, series)
    view = window.mpr.view
    window.state.set_window(Window(40, 10))
    qtbot.wait_until(lambda: pixmap_pixels(view.viewports[Plane.SAGITTAL]).max() == 255)
    for plane, port in view.viewports.items():
        np.testing.assert_array_equal(
            pixmap_pixels(port), render(window.mpr.volume.plane_frame(plane, port.index), Window(40, 10))
        )
    window.mpr.set_layout("2x2")
    assert view.info.isVisible() and "slice spacing from positions" in view.info.text()
    view.set_active(Plane.SAGITTAL)
    window.mpr.set_layout("1x1")
    assert [p for p, port in view.viewports.items() if port.isVisible()] == [Plane.SAGITTAL]


def test_length_drawn_on_a_reformat_is_kept_and_shown_where_it_crosses(qtbot, window, phantom):
    sphere, series = phantom
    open_planes(qtbot, window, series)
    view, volume = window.mpr.view, window.mpr.volume
    view.set_index(Plane.CORONAL, sphere.centre_voxel[1])
    coronal = view.viewports[Plane.CORONAL]
    _, x, y = (float(v) for v in volume.patient_to_display(Plane.CORONAL, sphere.centre))
    half = sphere.radius_mm / volume.axes(Plane.CORONAL).pixel_mm
    window.mpr.tool_actions[MeasureKind.LENGTH].trigger()
    assert view.tool is MeasureKind.LENGTH
    start, end = screen_point(coronal, x, y - half), screen_point(coronal, x, y + half)
    QTest.mousePress(coronal.viewport(), Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(coronal.viewport(), end)
    QTest.mouseRelease(coronal.viewport(), Qt.MouseButton.LeftButton, pos=end)
    doc, image_id = window.annotations.doc, window.annotations.image_id
    [length] = doc.measurements(image_id)
    assert isinstance(length, Measurement) and length.placement.plane == "coronal"
    assert length.values[0].unit == "mm"
    assert length.values[0].value == pytest.approx(2 * sphere.radius_mm, abs=1.0)  # screen rounding only
    # the vertical line crosses the axial plane through the centre: one intersection marker there
    axial = view.viewports[Plane.AXIAL]
    view.set_index(Plane.AXIAL, sphere.centre_voxel[0])
    assert len(axial.annotations.childItems()) == 1
    assert len(coronal.annotations.childItems()) == 2  # the line and its value
    # autosaved to the sidecar with its plane and patient geometry
    window.annotations.save_all()
    [saved] = load_document(window.annotations.document_path()).measurements(image_id)
    assert saved == length
    # it is listed in the Annotations panel, and undo removes it everywhere
    panel = window.annotation_panel
    assert panel.tree.topLevelItemCount() == 1 and "mm" in panel.tree.topLevelItem(0).text(3)
    window.annotations.undo()
    assert doc.measurements(image_id) == [] and axial.annotations.childItems() == []


def test_roi_reports_hu_and_the_assistant_sees_the_active_plane(qtbot, window, phantom):
    sphere, series = phantom
    open_planes(qtbot, window, series)
    view, volume = window.mpr.view, window.mpr.volume
    view.set_index(Plane.SAGITTAL, sphere.centre_voxel[2])
    sagittal = view.viewports[Plane.SAGITTAL]
    _, x, y = (float(v) for v in volume.patient_to_display(Plane.SAGITTAL, sphere.centre))
    measurement = view.add_measurement(
        Plane.SAGITTAL, sagittal.index, MeasureKind.ELLIPSE, ((x - 5, y - 5), (x + 5, y + 5))
    )
    assert abs(measurement.value("mean").value - SPHERE_HU) <= 0.5 and measurement.value("mean").unit == "[hnsf'U]"
    view.set_active(Plane.SAGITTAL)
    shown = window.state.shown_frame()
    assert shown.stored.shape == (volume.axes(Plane.SAGITTAL).height, volume.axes(Plane.SAGITTAL).width)
    np.testing.assert_array_equal(shown.stored, volume.plane_pixels(Plane.SAGITTAL, sagittal.index))
    window.mpr.toggle_action.setChecked(False)
    assert window.mpr.pages.currentWidget() is window.canvas and window.state.shown_frame() is window.state.frame


def test_single_images_stay_single_plane_with_a_reason(qtbot, window):
    with qtbot.waitSignal(window.load_finished, timeout=20000):
        window.open([get_testdata_file("CT_small.dcm")])
    window.mpr.toggle_action.setChecked(True)
    assert window.mpr.pages.currentWidget() is window.canvas
    assert not window.mpr.toggle_action.isChecked()
    assert "has one slice; a volume needs at least two" in window.banner.label.text()


@pytest.mark.parametrize("damage", ["short offsets", "nan orientation"])
def test_damaged_geometry_is_refused_in_the_banner_not_raised_on_the_gui_thread(qtbot, window, tmp_path, damage):
    """Issue 22: these raised IndexError / ValueError on the GUI thread when the planes were asked for."""
    if damage == "short offsets":
        ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
        ds.GridFrameOffsetVector = list(ds.GridFrameOffsetVector)[:5]
        path = tmp_path / "dose.dcm"
        ds.save_as(path)
        expected = "dose.dcm: GridFrameOffsetVector has 5 value(s), not 15."
    else:
        path = Phantom(slices=6).write_series(tmp_path / "series")
        damaged = min(path.glob("*.dcm"))
        ds = pydicom.dcmread(damaged)
        ds.ImageOrientationPatient = [float("nan"), 0, 0, 0, 1, 0]
        ds.save_as(damaged)
        expected = f"{damaged.name}: ImageOrientationPatient has NaN."
    with qtbot.waitSignal(window.load_finished, timeout=20000):
        window.open([str(path)])
    window.mpr.toggle_action.setChecked(True)  # an exception escaping a slot here fails the test (pytest-qt)
    qtbot.wait(50)
    assert window.banner.label.text() == expected
    assert window.mpr.pages.currentWidget() is window.canvas and not window.mpr.toggle_action.isChecked()
    assert window.mpr.volume is None


def test_measurement_tools_work_on_the_single_plane_canvas(qtbot, window):
    """CT_small (one slice, 0.66 mm pixels): a length drawn with the L tool is in mm, listed, undone."""
    with qtbot.waitSignal(window.load_finished, timeout=20000):
        window.open([get_testdata_file("CT_small.dcm")])
    qtbot.wait_until(lambda: not window.canvas.image_item.pixmap().isNull())
    window.canvas.set_zoom(1.0)
    window.canvas.center_on_pixel(64, 64)
    QTest.keyClick(window, Qt.Key.Key_L)
    assert window.mpr.tool_actions[MeasureKind.LENGTH].isChecked()
    start, end = window.canvas.mapFromScene(20, 64), window.canvas.mapFromScene(100, 64)
    QTest.mousePress(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(window.canvas.viewport(), end)
    QTest.mouseRelease(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=end)
    [length] = window.annotations.doc.measurements(window.annotations.image_id)
    spacing = window.state.stack.spacing
    (x1, y1), (x2, y2) = length.points
    assert length.placement is None and length.frame == 0
    assert length.values[0].value == pytest.approx(math.hypot((x2 - x1) * spacing.col_mm, (y2 - y1) * spacing.row_mm))
    assert abs(length.values[0].value - 80 * spacing.col_mm) <= 2 * spacing.col_mm
    assert len(window.mpr.canvas_tools.overlay.group.childItems()) == 2  # the line and its value
    # dragging its end point edits it (values recomputed) instead of starting a new one
    grab, drop = window.canvas.mapFromScene(x2, y2), window.canvas.mapFromScene(x2, y2 + 30)
    QTest.mousePress(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=grab)
    QTest.mouseMove(window.canvas.viewport(), drop)
    QTest.mouseRelease(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=drop)
    [moved] = window.annotations.doc.measurements(window.annotations.image_id)
    (mx1, my1), (mx2, my2) = moved.points
    assert moved.id == length.id and my2 > y2 + 25
    assert moved.values[0].value == pytest.approx(
        math.hypot((mx2 - mx1) * spacing.col_mm, (my2 - my1) * spacing.row_mm)
    )
    window.annotations.undo()
    # a rectangle ROI reports the CT values inside it (HU, through the rescale)
    window.mpr.set_tool(MeasureKind.RECTANGLE)
    start, end = window.canvas.mapFromScene(40, 40), window.canvas.mapFromScene(60, 60)
    QTest.mousePress(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(window.canvas.viewport(), end)
    QTest.mouseRelease(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=end)
    roi = window.annotations.doc.measurements(window.annotations.image_id)[-1]
    (rx1, ry1), (rx2, ry2) = roi.points
    hu = window.state.frame.modality_values()
    inside = hu[math.ceil(ry1 - 0.5) : math.floor(ry2 - 0.5) + 1, math.ceil(rx1 - 0.5) : math.floor(rx2 - 0.5) + 1]
    assert roi.value("mean").value == pytest.approx(inside.mean()) and roi.value("mean").unit == "[hnsf'U]"
    window.annotations.undo()
    window.annotations.undo()
    assert window.annotations.doc.measurements(window.annotations.image_id) == []
    QTest.keyClick(window, Qt.Key.Key_H)  # Pan ends the measurement tool
    assert window.mpr.canvas_tools.kind is None


def test_box_drawn_on_a_reformat_keeps_its_plane_and_shows_where_it_crosses(qtbot, window, phantom):
    sphere, series = phantom
    open_planes(qtbot, window, series)
    view, volume = window.mpr.view, window.mpr.volume
    QTest.keyClick(window, Qt.Key.Key_B)
    assert view.box_mode
    view.set_index(Plane.SAGITTAL, sphere.centre_voxel[2])
    sagittal = view.viewports[Plane.SAGITTAL]
    _, x, y = (float(v) for v in volume.patient_to_display(Plane.SAGITTAL, sphere.centre))
    start, end = screen_point(sagittal, x - 8, y - 8), screen_point(sagittal, x + 8, y + 8)
    QTest.mousePress(sagittal.viewport(), Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(sagittal.viewport(), end)
    QTest.mouseRelease(sagittal.viewport(), Qt.MouseButton.LeftButton, pos=end)
    [box] = window.annotations.doc.boxes(window.annotations.image_id)
    assert box.placement.plane == "sagittal" and len(box.placement.points_mm) == 5
    assert np.allclose(np.mean(box.placement.points_mm[:4], axis=0), sphere.centre, atol=1.0)
    assert window.annotations.doc.boxes(window.annotations.image_id, frame=box.frame) == []  # not a native box
    view.set_index(Plane.AXIAL, sphere.centre_voxel[0])
    [cut] = view.viewports[Plane.AXIAL].annotations.childItems()  # the box cut through: a segment
    assert cut.path().elementCount() >= 10


def test_ask_and_kpl_are_shown_the_active_plane_as_displayed(qtbot, tmp_path, phantom):
    sphere, series = phantom
    clip_dir = save_tiny_clip_dir(tmp_path / "clip")
    save_settings(AssistantSettings(clip_model=f"local-dir:{clip_dir}", knowledge="tuberculosis-cxr", device="cpu"))
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1300, 700)
    main.show()
    open_planes(qtbot, main, series)
    view, volume = main.mpr.view, main.mpr.volume
    view.set_index(Plane.CORONAL, sphere.centre_voxel[1])
    view.set_active(Plane.CORONAL)
    main.state.set_window(Window(40, 400))
    expected = render_rgb(volume.plane_frame(Plane.CORONAL, sphere.centre_voxel[1]), Window(40, 400))
    submitted = []
    real_submit = main.service.submit
    main.service.submit = lambda job: (submitted.append(job), real_submit(job))[1]
    panel = main.classify_panel
    with qtbot.waitSignal(panel.run_finished, timeout=120000):
        assert panel.classify_current() is not None
    [job] = submitted
    [(_key, _title, pixels)] = job.pictures
    np.testing.assert_array_equal(pixels, expected)  # the coronal plane, windowed
    [item] = panel.result.images
    assert item.image.title.endswith(f"Coronal {sphere.centre_voxel[1] + 1}/{sphere.rows}")
    assert panel._current() is item and item.label in {"normal", "tuberculosis"}
    # ClinKD's ask gets the same plane (recorded, not run: no ClinKD weights here)
    main.service.submit = lambda job: (submitted.append(job), 99)[1]
    main.ask_panel.ask("Where is the sphere?", Task.VG, None)
    np.testing.assert_array_equal(submitted[-1].image, expected)


def test_clicking_a_listed_measurement_shows_it_on_its_plane(qtbot, window, phantom):
    sphere, series = phantom
    open_planes(qtbot, window, series)
    view, volume = window.mpr.view, window.mpr.volume
    index, x, y = (float(v) for v in volume.patient_to_display(Plane.SAGITTAL, sphere.centre))
    measurement = view.add_measurement(Plane.SAGITTAL, round(index), MeasureKind.LENGTH, ((x - 5, y), (x + 5, y)))
    view.set_index(Plane.SAGITTAL, 0)
    view.set_index(Plane.AXIAL, 0)
    window.annotation_panel.box_activated.emit(measurement.id)
    assert view.active is Plane.SAGITTAL and view.viewports[Plane.SAGITTAL].index == round(index)
    assert abs(view.viewports[Plane.AXIAL].index - sphere.centre_voxel[0]) <= 1
    assert window.annotations.selected == {measurement.id}


def test_dragging_a_measurement_point_edits_it_in_one_undo_step(qtbot, window, phantom):
    sphere, series = phantom
    open_planes(qtbot, window, series)
    view, volume = window.mpr.view, window.mpr.volume
    view.set_index(Plane.CORONAL, sphere.centre_voxel[1])
    coronal = view.viewports[Plane.CORONAL]
    _, x, y = (float(v) for v in volume.patient_to_display(Plane.CORONAL, sphere.centre))
    length = view.add_measurement(Plane.CORONAL, coronal.index, MeasureKind.LENGTH, ((x - 4, y), (x + 4, y)))
    window.mpr.set_tool(MeasureKind.LENGTH)
    grab, drop = screen_point(coronal, x + 4, y), screen_point(coronal, x + 8, y)
    QTest.mousePress(coronal.viewport(), Qt.MouseButton.LeftButton, pos=grab)
    QTest.mouseMove(coronal.viewport(), drop)
    QTest.mouseRelease(coronal.viewport(), Qt.MouseButton.LeftButton, pos=drop)
    doc, image_id = window.annotations.doc, window.annotations.image_id
    [edited] = doc.measurements(image_id)  # edited, not a second measurement
    pixel = volume.axes(Plane.CORONAL).pixel_mm
    assert edited.id == length.id and edited.points[0] == length.points[0]
    assert edited.values[0].value == pytest.approx(math.dist(*edited.points) * pixel)
    assert edited.values[0].value > length.values[0].value + 2 * pixel
    assert not np.allclose(edited.placement.points_mm, length.placement.points_mm)
    window.annotations.undo()
    assert doc.measurements(image_id) == [length]


def drag(port, start: tuple[float, float], end: tuple[float, float]) -> None:
    a, b = screen_point(port, *start), screen_point(port, *end)
    QTest.mousePress(port.viewport(), Qt.MouseButton.LeftButton, pos=a)
    QTest.mouseMove(port.viewport(), b)
    QTest.mouseRelease(port.viewport(), Qt.MouseButton.LeftButton, pos=b)


def test_a_measurement_on_the_axial_plane_is_seen_on_that_frame_in_the_single_view(qtbot, window, phantom):
    sphere, series = phantom
    open_planes(qtbot, window, series)
    view, volume = window.mpr.view, window.mpr.volume
    k = sphere.centre_voxel[0]
    view.set_index(Plane.AXIAL, k)
    axial = view.viewports[Plane.AXIAL]
    _, x, y = (float(v) for v in volume.patient_to_display(Plane.AXIAL, sphere.centre))
    window.mpr.tool_actions[MeasureKind.LENGTH].trigger()
    drag(axial, (x - 6, y), (x + 6, y))
    doc, image_id = window.annotations.doc, window.annotations.image_id
    frame = volume.geometry.frame_indices[k]
    [length] = doc.measurements(image_id, frame)  # a measurement of that original slice
    assert length.placement is None and window.state.frame_index == frame
    # the single view shows it on that frame, at the same place
    window.mpr.toggle_action.setChecked(False)
    overlay = window.mpr.canvas_tools.overlay.group
    qtbot.wait_until(lambda: len(overlay.childItems()) == 2)  # the line and its value
    assert overlay.childItems()[0].path().boundingRect().center().x() == pytest.approx(
        sum(p[0] for p in length.points) / 2
    )
    # the other direction: drawn in the single view on another frame, shown on that axial slice
    window.state.set_frame(frame + 3)
    window.mpr.canvas_tools.set_kind(MeasureKind.LENGTH)
    canvas = window.canvas
    start, end = canvas.mapFromScene(10.5, 20.5), canvas.mapFromScene(40.5, 20.5)
    QTest.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(canvas.viewport(), end)
    QTest.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=end)
    [drawn] = doc.measurements(image_id, frame + 3)
    window.mpr.toggle_action.setChecked(True)
    qtbot.wait_until(lambda: axial.index == volume.geometry.frame_indices.index(frame + 3))
    assert len(axial.annotations.childItems()) == 2  # complete on its own slice, with its value
    # and it can be dragged there: it stays a measurement of its frame
    window.mpr.set_tool(MeasureKind.LENGTH)
    _, (x1, y1) = view.measurements_on(Plane.AXIAL, axial.index)[0].points
    drag(axial, (x1, y1), (x1 + 5, y1))
    [edited] = doc.measurements(image_id, frame + 3)
    assert edited.id == drawn.id and edited.placement is None and edited.values[0].value > drawn.values[0].value


def test_one_slice_number_in_plane_title_slider_status_list_and_csv(qtbot, window, phantom, tmp_path):
    _, series = phantom
    open_planes(qtbot, window, series)
    view = window.mpr.view
    axial = view.viewports[Plane.AXIAL]

    def shown_numbers() -> set[str]:
        title = axial.info.text().split()[1].split("/")[0]
        label = window.frame_label.text().split()[1].split("/")[0]
        status = window.frame_status.text().split()[1].split("/")[0]
        return {title, label, status, str(window.frame_slider.value() + 1)}

    assert shown_numbers() == {str(axial.index + 1)}  # the slider follows the axial plane at once
    view.set_index(Plane.AXIAL, 7)
    assert shown_numbers() == {"8"}
    window.frame_slider.setValue(30)  # and the axial plane follows the slider
    assert axial.index == 30 and shown_numbers() == {"31"}
    m = view.add_measurement(Plane.AXIAL, 12, MeasureKind.LENGTH, ((10, 10), (30, 10)))
    view.set_index(Plane.AXIAL, 2)
    window.annotation_panel.box_activated.emit(m.id)  # a click on its row
    assert view.active is Plane.AXIAL and axial.index == 12 and shown_numbers() == {"13"}
    [row] = [
        window.annotation_panel.tree.topLevelItem(i) for i in range(window.annotation_panel.tree.topLevelItemCount())
    ]
    assert row.text(1) == "13"
    # the CSV's slice column is the number on screen; the 0-based index is named as such
    csv_file = window.export_annotations("csv", str(tmp_path / "out.csv"))[0]
    [exported] = list(csv.DictReader(csv_file.open(newline="", encoding="utf-8")))
    assert exported["slice"] == "13" and exported["frame_index"] == "12"


def test_text_stays_inside_its_pane_and_titles_do_not_touch_the_letters(qtbot, window, phantom):
    from app.annotations.measure_tools import MeasureLabel, label_viewport_rect

    _, series = phantom
    open_planes(qtbot, window, series)
    window.resize(1600, 1000)
    view, volume = window.mpr.view, window.mpr.volume
    axial = view.viewports[Plane.AXIAL]
    width = volume.axes(Plane.AXIAL).width
    view.add_measurement(Plane.AXIAL, axial.index, MeasureKind.ELLIPSE, ((width - 10, 20), (width - 1, 32)))
    view.add_measurement(Plane.AXIAL, axial.index, MeasureKind.LENGTH, ((5, 40), (width - 1, 40)))

    def check() -> bool:
        for port in view.viewports.values():
            inside = port.viewport().rect()
            labels = [i for i in port.annotations.childItems() if isinstance(i, MeasureLabel)]
            if port is axial:
                assert len(labels) == 2
            for label in labels:
                assert inside.contains(label_viewport_rect(label, port).toAlignedRect()), label.text()
            for letter in port.letters.values():
                assert not letter.geometry().intersects(port.info.geometry()), (port.info.text(), letter.text())
                for rect in port.corners.occupied():
                    assert not letter.geometry().intersects(rect)
        return True

    qtbot.wait_until(check)
    axial.scale(3, 3)  # zoomed in: the shapes reach past the edge, their values do not
    axial.view_moved()
    check()
    window.resize(900, 600)  # narrow panes: where "Axial 31/60A" ran together
    qtbot.wait_until(lambda: axial.viewport().width() < 150)
    for port in view.viewports.values():
        for letter in port.letters.values():
            assert not letter.geometry().intersects(port.info.geometry()), (port.info.text(), letter.text())
    # the plane panes carry window and zoom in a corner too, and hide them with the same key
    assert "C 40 / W 400" in axial.corners.lines("bottom_left")
    window.corners_action.trigger()
    assert not any(port.corners.isVisible() for port in view.viewports.values())


def test_a_value_near_the_right_edge_of_the_single_view_flips_inside(qtbot, window, ct):
    from app.annotations.measure_tools import MeasureLabel, label_viewport_rect

    with qtbot.waitSignal(window.load_finished, timeout=20000):
        window.open([ct])  # a copy: its annotations are saved beside it
    qtbot.wait_until(lambda: window.state.frame is not None)
    window.canvas.set_zoom(6.0)
    window.canvas.center_on_pixel(64, 64)
    window.mpr.canvas_tools._add(MeasureKind.ELLIPSE, ((100, 60), (126, 80)))
    labels = [i for i in window.mpr.canvas_tools.overlay.group.childItems() if isinstance(i, MeasureLabel)]
    [label] = labels
    rect = label_viewport_rect(label, window.canvas)
    assert window.canvas.viewport().rect().contains(rect.toAlignedRect())
    assert rect.right() <= window.canvas.mapFromScene(100, 70).x()  # on the left of the ellipse


def test_status_bar_zoom_is_the_active_planes(qtbot, window, phantom):
    _, series = phantom
    open_planes(qtbot, window, series)
    view = window.mpr.view
    axial, coronal = view.viewports[Plane.AXIAL], view.viewports[Plane.CORONAL]
    qtbot.wait_until(lambda: window.zoom_label.text() == f"Zoom {view.viewports[view.active].zoom() * 100:.0f}%")
    assert window.zoom_label.text() != f"Zoom {window.canvas.zoom * 100:.0f}%"  # not the hidden single view's
    view.set_active(Plane.AXIAL)
    axial.scale(2, 2)
    axial.view_moved()
    assert window.zoom_label.text() == f"Zoom {axial.zoom() * 100:.0f}%"
    assert f"Zoom {axial.zoom() * 100:.0f}%" in axial.corners.lines("bottom_left")
    view.set_active(Plane.CORONAL)  # another plane worked in: its zoom
    assert window.zoom_label.text() == f"Zoom {coronal.zoom() * 100:.0f}%" != f"Zoom {axial.zoom() * 100:.0f}%"
    window.resize(1200, 650)  # the hidden canvas refits too: the status bar stays the plane's
    qtbot.wait_until(lambda: window.zoom_label.text() == f"Zoom {coronal.zoom() * 100:.0f}%")
    window.mpr.toggle_action.setChecked(False)  # back to the single view: its zoom
    assert window.zoom_label.text() == f"Zoom {window.canvas.zoom * 100:.0f}%"


def test_corner_choices_apply_to_the_planes_and_survive_a_restart(qtbot, phantom):
    _, series = phantom
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    open_planes(qtbot, first, series)
    axial = first.mpr.view.viewports[Plane.AXIAL]
    assert axial.corners.lines("top_right") and "Zoom" in axial.corners.text()
    first.corner_choices.field_actions["location"].trigger()
    first.corner_choices.field_actions["zoom"].trigger()
    for port in first.mpr.view.viewports.values():
        assert not port.corners.lines("top_right") and "Zoom" not in port.corners.text()
        assert port.corners.lines("bottom_left")[0].startswith("C ")
    first.corners_action.trigger()
    assert not any(port.corners.isVisible() for port in first.mpr.view.viewports.values())
    first.close()

    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    open_planes(qtbot, second, series)
    ports = second.mpr.view.viewports.values()
    assert not any(port.corners.isVisible() for port in ports)
    second.corners_action.trigger()
    for port in ports:
        assert port.isHidden() or port.corners.isVisible()
        assert not port.corners.lines("top_right") and "Zoom" not in port.corners.text()
