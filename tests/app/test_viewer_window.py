"""The viewer as a user drives it: open, window drag, presets, frames, cursor values, bad files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest

from app.main_window import MainWindow
from engine.imaging import Preset, Window, render

CT = get_testdata_file("CT_small.dcm")


@pytest.fixture
def window(qtbot):
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1000, 700)
    main.show()
    qtbot.waitExposed(main)
    return main


def open_and_wait(qtbot, main: MainWindow, paths: list[str]):
    with qtbot.waitSignal(main.load_finished, timeout=20000) as blocker:
        main.open(paths)
    qtbot.wait_until(
        lambda: main.canvas.rendered_step >= 1 and not main.canvas.image_item.pixmap().isNull(), timeout=20000
    )  # a compressed first frame waits for a decoder process to start
    return blocker.args[0]


def canvas_pixels(main: MainWindow) -> np.ndarray:
    image = main.canvas.image_item.pixmap().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.bytesPerLine() * height)
    return data.reshape(height, image.bytesPerLine())[:, :width].copy()


def viewport_point_of_pixel(main: MainWindow, x: float, y: float) -> QPoint:
    return main.canvas.mapFromScene(x + 0.5, y + 0.5)


def test_open_ct_shows_it_and_reports_frame_and_window(qtbot, window):
    result = open_and_wait(qtbot, window, [CT])
    assert len(result.stacks) == 1 and not result.errors
    assert window.state.stack.modality == "CT"
    assert window.frame_status.text() == "Frame 1/1"
    assert window.window_label.text().startswith("C ")  # CT_small has no header window: auto
    assert not window.frame_slider.isVisible()  # one frame: no slider
    window.canvas.set_zoom(1.0)
    qtbot.wait_until(lambda: window.canvas.rendered_step == 1)
    expected = render(window.state.frame, window.state.window)
    np.testing.assert_array_equal(canvas_pixels(window), expected)


def test_right_drag_changes_window_and_rendered_pixels(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    window.canvas.set_zoom(2.0)
    before_window = window.state.window
    before_pixels = canvas_pixels(window)
    viewport = window.canvas.viewport()
    start = viewport_point_of_pixel(window, 64, 64)
    QTest.mousePress(viewport, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, start)
    QTest.mouseMove(viewport, start + QPoint(-120, 40))
    QTest.mouseRelease(viewport, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, start + QPoint(-120, 40))
    qtbot.wait_until(lambda: not window.canvas._render_pending)
    after = window.state.window
    assert after.width < before_window.width  # drag left narrows the window
    assert after.center > before_window.center  # drag down raises the level
    assert not np.array_equal(canvas_pixels(window), before_pixels)
    assert window.window_label.text().startswith(f"C {after.center:.0f} / W {after.width:.0f}")


def test_preset_keys_invert_and_reset(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    initial = window.state.window
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_2)  # second default preset
    qtbot.wait_until(lambda: not window.canvas._render_pending)
    preset = next(p for p in __import__("engine.imaging", fromlist=["load_presets"]).load_presets() if p.key == "2")
    assert (window.state.window.center, window.state.window.width) == (preset.center, preset.width)
    window.canvas.set_zoom(1.0)
    qtbot.wait_until(lambda: window.canvas.rendered_step == 1 and not window.canvas._render_pending)
    np.testing.assert_array_equal(canvas_pixels(window), render(window.state.frame, window.state.window))
    QTest.keyClick(window.canvas, Qt.Key.Key_I)
    qtbot.wait_until(lambda: not window.canvas._render_pending)
    assert window.state.invert
    np.testing.assert_array_equal(canvas_pixels(window), render(window.state.frame, window.state.window, invert=True))
    QTest.keyClick(window.canvas, Qt.Key.Key_R)
    assert not window.state.invert and window.state.window == initial


def test_user_preset_is_saved_and_offered(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    window.state.set_window(Window(123, 456))
    window.save_window_as_preset("My abdomen")
    labels = [a.text() for a in window.window_menu.actions()]
    assert any(text.startswith("My abdomen  (C 123 / W 456)") for text in labels)
    from engine.imaging import load_presets

    assert (
        Preset("My abdomen", 123, 456, next(p.key for p in load_presets() if p.name == "My abdomen"), True)
        in load_presets()
    )


def test_status_line_shows_stored_and_hounsfield_values_under_cursor(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    dataset = pydicom.dcmread(CT)
    hounsfield = apply_modality_lut(dataset.pixel_array, dataset)
    window.canvas.set_zoom(3.0)
    window.canvas.center_on_pixel(40, 70)
    QTest.mouseMove(window.canvas.viewport(), viewport_point_of_pixel(window, 40, 70))
    text = window.cursor_label.text()
    assert "x 40, y 70" in text
    assert f"stored {dataset.pixel_array[70, 40]}" in text
    assert f"HU {hounsfield[70, 40]:.6g}" in text


def test_frame_scrolling_with_keys_wheel_and_slider(qtbot, window):
    multi = get_testdata_file("SC_rgb_rle_2frame.dcm")
    open_and_wait(qtbot, window, [multi])
    assert window.state.n_frames == 2 and window.frame_slider.isVisible()
    first = canvas_pixels(window)
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_Right)
    assert window.state.frame_index == 1 and window.frame_status.text() == "Frame 2/2"
    qtbot.wait_until(lambda: window.state.frame is not None and not window.canvas._render_pending)
    assert not np.array_equal(canvas_pixels(window), first)
    window.frame_slider.setValue(0)
    assert window.state.frame_index == 0
    QTest.keyClick(window.canvas, Qt.Key.Key_PageDown)
    assert window.state.frame_index == 1  # clamped at the last frame


def test_bad_file_shows_a_message_and_the_good_one_stays_usable(qtbot, window):
    truncated = get_testdata_file("MR_truncated.dcm")
    plan = get_testdata_file("rtplan.dcm")
    result = open_and_wait(qtbot, window, [truncated, plan, CT])
    assert window.banner.isVisible()
    text = window.banner.label.text()
    assert "rtplan.dcm" in text and "MR_truncated.dcm" in text
    assert "Traceback" not in text
    assert [s.modality for s in result.stacks] == ["CT"]
    assert window.state.stack.modality == "CT"
    open_and_wait(qtbot, window, [get_testdata_file("MR_small.dcm")])  # the app goes on
    assert window.state.stack.modality == "MR" and window.image_list.count() == 2


def test_metadata_panel_hides_patient_identifiers_until_revealed(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    panel = window.metadata

    def value_of(keyword: str) -> str:
        items = panel.tags.findItems(keyword, Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchRecursive, 1)
        return items[0].text(3)

    assert "CompressedSamples" not in value_of("PatientName")
    facts = {panel.facts.item(r, 0).text(): panel.facts.item(r, 1).text() for r in range(panel.facts.rowCount())}
    assert facts.get("Modality") == "CT"
    assert not any("CompressedSamples" in v for v in facts.values())
    panel.reveal_phi.setChecked(True)
    assert "CompressedSamples^CT1" in value_of("PatientName")
    panel.search.setText("Rows")
    rows_item = panel.tags.findItems("Rows", Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchRecursive, 1)[0]
    name_item = panel.tags.findItems("PatientName", Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchRecursive, 1)[0]
    assert not rows_item.isHidden() and name_item.isHidden()


def test_zoomed_out_renders_at_viewport_resolution_and_1to1_is_exact(qtbot, window):
    open_and_wait(qtbot, window, [CT])
    window.canvas.set_zoom(0.25)
    assert window.canvas.rendered_step == 4
    assert window.canvas.image_item.pixmap().width() == 32
    window.canvas.set_zoom(1.0)
    assert window.canvas.rendered_step == 1
    assert window.canvas.image_item.pixmap().width() == 128


def test_files_dropped_on_the_window_open(qtbot, window):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(CT)])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    with qtbot.waitSignal(window.load_finished, timeout=20000):
        window.dropEvent(event)
    assert window.state.stack is not None and window.state.stack.modality == "CT"
    assert window.recent_menu.actions()[0].text().endswith("CT_small.dcm")


def test_automatic_window_is_kept_while_scrolling_a_series_without_a_header_window(qtbot, window, tmp_path):
    from tests.engine.phantom import Phantom

    folder = Phantom().write_series(tmp_path / "series")
    for path in folder.iterdir():  # no window in the header: the viewer chooses one
        ds = pydicom.dcmread(path)
        del ds.WindowCenter, ds.WindowWidth
        brighter = ds.pixel_array.astype(np.int32) + 7 * int(ds.InstanceNumber)  # each slice's own range
        ds.PixelData = brighter.astype("<i2").tobytes()
        ds.save_as(path)
    open_and_wait(qtbot, window, [str(folder)])
    first = window.state.window
    assert first is not None and first.explanation == "auto"
    labels = {window.window_label.text()}
    for _ in range(12):  # slices of very different content (the sphere comes and goes)
        with qtbot.waitSignal(window.state.frame_changed, timeout=10000):
            QTest.keyClick(window.canvas, Qt.Key.Key_Down)
        qtbot.wait_until(lambda: window.state.frame is not None, timeout=10000)
        assert window.state.window == first
        labels.add(window.window_label.text())
    assert len(labels) == 1
    # until the user changes it: then theirs stays
    window.apply_preset(Preset("Lung", -600, 1500, None))
    window.state.step_frame(1)
    qtbot.wait_until(lambda: window.state.frame is not None, timeout=10000)
    assert (window.state.window.center, window.state.window.width) == (-600, 1500)


def test_corner_overlay_follows_slice_and_window_hides_with_its_key_and_keeps_phi_hidden(qtbot, window, tmp_path):
    from app.viewer.corner_overlay import TOGGLE_CORNERS_COMMAND
    from app.widgets.shortcuts import keys

    toggle = keys(TOGGLE_CORNERS_COMMAND)[0]
    from tests.engine.phantom import Phantom

    open_and_wait(qtbot, window, [str(Phantom().write_series(tmp_path / "series"))])
    corners = window.corners
    assert corners.isVisible() and "Slice 1/40" in corners.lines("top_right")
    for _ in range(4):
        QTest.keyClick(window.canvas, Qt.Key.Key_Down)
    qtbot.wait_until(lambda: "Slice 5/40" in corners.lines("top_right") and window.state.frame is not None)
    assert any(line.startswith("Loc ") and line.endswith(" mm") for line in corners.lines("top_right"))
    assert "Thk 5 mm" in corners.lines("top_right") and "C 40 / W 400" in corners.lines("bottom_left")
    window.apply_preset(Preset("Lung", -600, 1500, None))
    assert "C -600 / W 1500" in corners.lines("bottom_left")
    window.canvas.set_zoom(2.0)
    assert "Zoom 200%" in corners.lines("bottom_left")
    # the patient's name only while identifiers are shown
    assert "Phantom" not in corners.text()
    window.metadata.reveal_phi.setChecked(True)
    assert "Phantom Sphere" in corners.lines("top_left")
    window.metadata.reveal_phi.setChecked(False)
    assert "Phantom" not in corners.text()
    # one key hides and shows them
    QTest.keyClick(window.canvas, toggle)
    assert not corners.isVisible()
    QTest.keyClick(window.canvas, toggle)
    assert corners.isVisible()


def test_image_list_names_series_by_description_or_file_with_a_tooltip(qtbot, window, tmp_path):
    """Not "CT 1" / "MR 1": the series description, else modality, series number and file name;
    the tooltip has the path, Series UID, frames and origin."""
    described = tmp_path / "described.dcm"
    ds = pydicom.dcmread(CT)
    ds.SeriesDescription = "Chest CT 1.25 mm"
    ds.SeriesInstanceUID, ds.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.save_as(described)
    open_and_wait(qtbot, window, [CT, get_testdata_file("MR_small.dcm"), str(described)])
    texts = [window.image_list.item(r).text() for r in range(window.image_list.count())]
    assert "Chest CT 1.25 mm" in texts
    assert any(t.endswith("· CT_small.dcm") and t.startswith("CT ") for t in texts)
    assert any(t.endswith("· MR_small.dcm") and t.startswith("MR ") for t in texts)
    row = next(r for r, t in enumerate(texts) if t.endswith("CT_small.dcm"))
    tip = window.image_list.item(row).toolTip()
    assert CT in tip and f"Series UID {pydicom.dcmread(CT).SeriesInstanceUID}" in tip
    assert "1 frame(s)" in tip and "From this computer" in tip


def test_corner_fields_chosen_in_the_view_menu_apply_and_survive_a_restart(qtbot, tmp_path):
    from tests.engine.phantom import Phantom

    series = str(Phantom().write_series(tmp_path / "series"))
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    open_and_wait(qtbot, first, [series])
    assert "CT" in first.corners.lines("top_left") and "Zoom" in first.corners.text()
    first.corner_choices.field_actions["modality"].trigger()  # View > Corner overlay fields
    first.corner_choices.field_actions["zoom"].trigger()
    assert "CT" not in first.corners.lines("top_left") and "Zoom" not in first.corners.text()
    assert any(line.startswith("C ") for line in first.corners.lines("bottom_left"))  # the window stays
    first.corners_action.trigger()  # off with its key
    assert not first.corners.isVisible()
    first.close()

    second = MainWindow()  # a restart: the same config folder
    qtbot.addWidget(second)
    second.show()
    qtbot.waitExposed(second)
    assert not second.corners_action.isChecked() and not second.corners.isVisible()
    assert not second.corner_choices.field_actions["modality"].isChecked()
    assert second.corner_choices.field_actions["slice"].isChecked()
    open_and_wait(qtbot, second, [series])
    assert "Slice 1/40" in second.corners.lines("top_right")
    assert "CT" not in second.corners.lines("top_left") and "Zoom" not in second.corners.text()
    second.corners_action.trigger()
    assert second.corners.isVisible()


def test_damaged_corner_choices_give_the_defaults_say_so_and_are_kept_aside(qtbot):
    from engine.paths import config_dir

    store = config_dir() / "corner_overlays.json"
    store.write_text('{"shown": "yes", "fields": [', encoding="utf-8")
    main = MainWindow()
    qtbot.addWidget(main)
    assert main.corners_action.isChecked()
    assert all(action.isChecked() for action in main.corner_choices.field_actions.values())
    assert "Corner overlay choices could not be read" in main.banner.label.text()
    assert not store.exists() and list(store.parent.glob("corner_overlays.json.damaged-*"))


def test_kpl_label_sits_below_the_top_left_corner_text(qtbot, window, tmp_path):
    from tests.engine.phantom import Phantom

    open_and_wait(qtbot, window, [str(Phantom().write_series(tmp_path / "series"))])
    label, corners = window.canvas_label, window.corners
    window._show_canvas_label("KPL: tuberculosis 0.91")  # what the Classify panel shows

    def apart() -> bool:
        top_left = corners.text_rect("top_left")
        return label.isVisible() and not top_left.isEmpty() and not label.viewport_rect().intersects(top_left)

    assert apart()
    window.metadata.reveal_phi.setChecked(True)  # one more line (the name): the label moves down
    assert len(corners.lines("top_left")) == 3 and apart()
    window.grab().save(str(tmp_path / "kpl_and_corners.png"))
    window.corners_action.trigger()  # no corner text: the label goes back to the top
    assert label.viewport_rect().topLeft().y() == 8
    window.corners_action.trigger()
    assert apart()


def test_enhanced_multi_frame_file_shows_each_frame_position_and_thickness(qtbot, window, tmp_path):
    from tests.engine.phantom import Phantom

    phantom = Phantom()
    open_and_wait(qtbot, window, [str(phantom.write_enhanced(tmp_path / "enhanced.dcm"))])
    kept = phantom.kept()[::-1]  # the file holds the frames in reverse order

    def location(k: int) -> str:
        return f"Loc {float(phantom.position(k) @ phantom.normal):.1f} mm"

    corners = window.corners
    assert location(kept[0]) in corners.lines("top_right") and "Thk 5 mm" in corners.lines("top_right")
    window.state.set_frame(3)
    qtbot.wait_until(lambda: location(kept[3]) in corners.lines("top_right"))
