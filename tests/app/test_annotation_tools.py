"""Box annotation in the window: draw, resize, undo/redo, delete, relabel, review, save, export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from app.annotations.box_tools import Tool
from app.annotations.rows import COLUMNS
from app.main_window import MainWindow
from engine.annotations import Review, Source


@pytest.fixture
def images(tmp_path) -> dict[str, str]:
    """Copies of real files, so sidecars are written in tmp_path, never next to pydicom's data."""
    out = {}
    for name in ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle_2frame.dcm"):
        target = tmp_path / "study" / name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(get_testdata_file(name), target)
        out[name] = str(target)
    return out


def make_window(qtbot) -> MainWindow:
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1200, 800)
    main.show()
    qtbot.waitExposed(main)
    return main


@pytest.fixture
def window(qtbot):
    return make_window(qtbot)


def open_and_wait(qtbot, main: MainWindow, paths: list[str]) -> None:
    with qtbot.waitSignal(main.load_finished, timeout=20000):
        main.open(paths)
    qtbot.wait_until(lambda: not main.canvas.image_item.pixmap().isNull(), timeout=20000)
    main.canvas.set_zoom(4.0)
    main.canvas.center_on_pixel(40, 40)


def at(main: MainWindow, x: float, y: float) -> QPoint:
    return main.canvas.mapFromScene(QPointF(x, y))


def drag(main: MainWindow, start: tuple[float, float], end: tuple[float, float], steps: int = 3) -> None:
    viewport = main.canvas.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(main, *start))
    for i in range(1, steps + 1):
        x = start[0] + (end[0] - start[0]) * i / steps
        y = start[1] + (end[1] - start[1]) * i / steps
        QTest.mouseMove(viewport, at(main, x, y))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(main, *end))


def panel_rows(main: MainWindow) -> list[list[str]]:
    tree = main.annotation_panel.tree
    return [[tree.topLevelItem(r).text(c) for c in range(tree.columnCount())] for r in range(tree.topLevelItemCount())]


def test_draw_resize_undo_redo_delete_and_the_list_follows(qtbot, window, images):
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    window.set_tool(Tool.BOX)
    drag(window, (10, 20), (50, 45))
    boxes = window.annotations.boxes()
    assert len(boxes) == 1
    box = boxes[0]
    assert box.rect == (10, 20, 50, 45) and box.source is Source.USER and box.frame == 0
    assert box.sop_instance_uid  # bound back to the DICOM source
    assert window.overlay.items[box.id].rect().getCoords() == (10, 20, 50, 45)
    mm = f"{40 * 0.661468:.1f} × {25 * 0.661468:.1f} mm"
    assert panel_rows(window)[0][:7] == ["finding", "1", "", mm, "accepted", "user", "40 × 25"]
    assert "PixelSpacing" in window.annotation_panel.spacing_note.text()

    window.set_tool(Tool.SELECT)
    assert window.annotations.selected == {box.id}  # a new box is selected
    drag(window, (50, 45), (60, 70))  # bottom-right handle
    assert window.annotations.box(box.id).rect == (10, 20, 60, 70)
    assert panel_rows(window)[0][6] == "50 × 50"
    drag(window, (30, 40), (35, 42))  # move the whole box
    assert window.annotations.box(box.id).rect == (15, 22, 65, 72)

    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.annotations.box(box.id).rect == (10, 20, 60, 70)  # one drag = one undo step
    QTest.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.annotations.box(box.id).rect == (10, 20, 50, 45)
    QTest.keyClick(window.canvas, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert window.annotations.box(box.id).rect == (10, 20, 60, 70)
    QTest.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.annotations.box(box.id).rect == (15, 22, 65, 72)

    window.annotations.select({box.id})
    QTest.keyClick(window.canvas, Qt.Key.Key_Delete)
    assert window.annotations.boxes() == [] and panel_rows(window) == [] and window.overlay.items == {}
    QTest.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [b.id for b in window.annotations.boxes()] == [box.id] and len(panel_rows(window)) == 1


def test_relabel_with_a_new_label_and_select_from_the_list(qtbot, window, images):
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    window.set_tool(Tool.BOX)
    drag(window, (5, 5), (20, 20))
    drag(window, (30, 30), (60, 50))
    first, second = window.annotations.boxes()
    panel = window.annotation_panel
    panel.tree.topLevelItem(0).setSelected(True)
    panel.tree.topLevelItem(1).setSelected(False)
    assert window.annotations.selected == {first.id}
    assert window.overlay.items[first.id].selected_look and not window.overlay.items[second.id].selected_look
    panel.label_picker.setCurrentText("nodule")
    panel.apply_label.click()
    assert window.annotations.box(first.id).label == "nodule"
    assert window.annotations.box(second.id).label == "finding"
    assert "nodule" in [label.name for label in window.annotations.doc.labels]
    assert panel_rows(window)[0][0] == "nodule"
    QTest.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.annotations.box(first.id).label == "finding"


def test_boxes_live_on_their_frame(qtbot, window, images):
    open_and_wait(qtbot, window, [images["SC_rgb_rle_2frame.dcm"]])
    window.state.set_frame(1)
    window.set_tool(Tool.BOX)
    drag(window, (10, 10), (30, 30))
    box = window.annotations.boxes()[0]
    assert box.frame == 1 and box.frame_number == 2
    assert box.id in window.overlay.items
    window.state.set_frame(0)
    assert window.overlay.items == {}
    window.state.set_frame(1)
    window.show_box(box.id)
    assert window.state.frame_index == 1 and window.annotations.selected == {box.id}


def test_annotations_autosave_and_come_back_with_the_frame(qtbot, window, images):
    open_and_wait(qtbot, window, [images["SC_rgb_rle_2frame.dcm"]])
    window.state.set_frame(1)
    window.set_tool(Tool.BOX)
    drag(window, (12, 14), (40, 44))
    with qtbot.waitSignal(window.annotations.saved, timeout=5000) as saved:
        pass
    sidecar = Path(saved.args[0])
    assert sidecar == Path(images["SC_rgb_rle_2frame.dcm"] + ".clinlens.json")
    assert json.loads(sidecar.read_text())  # valid JSON on disk
    window.close()

    reopened = make_window(qtbot)
    open_and_wait(qtbot, reopened, [images["SC_rgb_rle_2frame.dcm"]])
    assert reopened.state.frame_index == 1  # the frame the user left
    assert [b.rect for b in reopened.annotations.boxes()] == [(12, 14, 40, 44)]
    assert reopened.overlay.items


def test_damaged_sidecar_is_reported_kept_aside_and_not_overwritten(qtbot, window, images):
    sidecar = Path(images["CT_small.dcm"] + ".clinlens.json")
    sidecar.write_text("{ this is not json")
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    assert window.banner.isVisible() and "damaged" in window.banner.label.text()
    kept = list(sidecar.parent.glob("CT_small.dcm.clinlens.json.damaged-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{ this is not json"


def test_review_flow_accept_reject_mark_reviewed_and_filter(qtbot, window, images, tmp_path):
    open_and_wait(qtbot, window, [images["CT_small.dcm"], images["MR_small.dcm"]])
    doc, image_id = window.annotations.doc, window.annotations.image_id
    from engine.annotations import AddAnnotations, SetReview

    model_box = doc.new_box(image_id, 0, 1, 2, 30, 40, "lesion", source=Source.MODEL, score=0.7)
    doc.execute(AddAnnotations(image_id, [model_box]))
    assert panel_rows(window)[0][COLUMNS.index("Review")] == "pending"
    window.annotations.select({model_box.id})
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_A)
    assert window.annotations.box(model_box.id).review is Review.ACCEPTED
    QTest.keyClick(window.canvas, Qt.Key.Key_X)
    assert window.annotations.box(model_box.id).review is Review.REJECTED
    first_title = window.state.stack.title
    assert window.annotation_panel.progress.text() == "Reviewed 0 of 2"
    QTest.keyClick(window.canvas, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert window.state.stack.title != first_title  # moved on to the next image
    assert window.annotation_panel.progress.text() == "Reviewed 1 of 2"
    window.needs_review_only.setChecked(True)
    assert window.image_list.item(0).isHidden() and not window.image_list.item(1).isHidden()
    QTest.keyClick(window.canvas, Qt.Key.Key_P)  # the reviewed image is filtered out
    assert window.image_list.currentRow() == 1

    # the window's export follows review as the command line does: the rejected box stays out
    written = window.export_annotations("coco", str(tmp_path / "out.coco.json"))
    coco = json.loads(written[0].read_text())
    assert coco["annotations"] == [] and coco["info"]["review_states"] == ["accepted", "corrected"]
    assert "reviewed only" in window.statusBar().currentMessage()
    doc.execute(SetReview(image_id, [model_box.id], Review.ACCEPTED))
    [exported] = json.loads(window.export_annotations("coco", str(tmp_path / "again.json"))[0].read_text())[
        "annotations"
    ]
    assert exported["bbox"] == [1, 2, 29, 38]
    csv_file = window.export_annotations("csv", str(tmp_path / "out.csv"))[0]
    assert "accepted" in csv_file.read_text()


def test_import_coco_into_open_images(qtbot, window, images, tmp_path):
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    window.set_tool(Tool.BOX)
    drag(window, (10, 10), (20, 30))
    exported = window.export_annotations("coco", str(tmp_path / "boxes.json"))[0]
    window.annotations.select({b.id for b in window.annotations.boxes()})
    window.annotations.delete_selected()
    assert window.annotations.boxes() == []
    assert window.import_annotations(str(exported)) == 1
    assert [b.rect for b in window.annotations.boxes()] == [(10, 10, 20, 30)]
    assert len(panel_rows(window)) == 1


def test_label_rename_colour_and_project_file(qtbot, window, images, tmp_path):
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    window.set_tool(Tool.BOX)
    drag(window, (5, 5), (25, 25))
    [box] = window.annotations.boxes()
    window.annotations.rename_label("finding", "nodule")
    assert window.annotations.box(box.id).label == "nodule"
    assert window.annotations.current_label == "nodule" and panel_rows(window)[0][0] == "nodule"
    window.annotations.set_label_color("nodule", "#00ff00")
    assert window.overlay.items[box.id].color.name() == "#00ff00"
    project = tmp_path / "project.clinlens.json"
    with qtbot.waitSignal(window.annotations.saved, timeout=5000):
        window.annotations.save_as(str(project))
    saved = json.loads(project.read_text())
    assert {label["name"]: label["color"] for label in saved["labels"]}["nodule"] == "#00ff00"
    drag(window, (40, 40), (60, 60))  # later edits autosave to the project file
    with qtbot.waitSignal(window.annotations.saved, timeout=5000) as later:
        pass
    assert later.args[0] == str(project)
    assert len(json.loads(project.read_text())["images"][0]["annotations"]) == 2


def test_save_as_onto_another_open_sets_annotation_file_is_refused(qtbot, window, images, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    ct, mr = Path(images["CT_small.dcm"]), Path(images["MR_small.dcm"])
    ct_sidecar, mr_sidecar = ct.with_name(ct.name + ".clinlens.json"), mr.with_name(mr.name + ".clinlens.json")
    open_and_wait(qtbot, window, [str(ct)])
    window.set_tool(Tool.BOX)
    drag(window, (5, 5), (25, 25))
    window.annotations.save_all()
    drag(window, (30, 30), (40, 40))  # an edit of the CT set not saved yet
    open_and_wait(qtbot, window, [str(mr)])
    window.set_tool(Tool.BOX)
    drag(window, (10, 10), (20, 30))
    assert window.annotations.document_path() == mr_sidecar
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(ct_sidecar), "")))
    window.choose_project_file()
    assert window.banner.isVisible()
    assert window.banner.label.text() == (
        f"Not saved: {ct_sidecar.name} is where the annotations of other open images are saved; "
        "choose another file name so neither set of annotations is lost."
    )
    assert window.annotations.document_path() == mr_sidecar  # this set still saves where it did
    window.annotations.save_all()
    saved = {p: json.loads(p.read_text())["images"] for p in (ct_sidecar, mr_sidecar)}
    assert [len(i["annotations"]) for i in saved[ct_sidecar]] == [2]  # nothing of the CT set was lost
    assert [len(i["annotations"]) for i in saved[mr_sidecar]] == [1]
    assert window.annotations.save_as(str(mr_sidecar.parent / "." / mr_sidecar.name))  # its own file is fine
    assert window.annotations.document_path() == mr_sidecar


def test_rename_and_colour_buttons_ask_and_apply(qtbot, window, images, monkeypatch):
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QColorDialog, QInputDialog

    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    window.set_tool(Tool.BOX)
    drag(window, (5, 5), (25, 25))
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("lesion", True)))
    monkeypatch.setattr(QColorDialog, "getColor", staticmethod(lambda *a, **k: QColor("#123456")))
    window.annotation_panel.rename_label.click()
    window.annotation_panel.colour_label.click()
    [box] = window.annotations.boxes()
    assert box.label == "lesion" and window.annotations.doc.label("lesion").color == "#123456"


def test_annotations_of_the_bundled_demo_go_to_the_user_data_folder_and_the_panel_says_so(qtbot, window):
    from engine.paths import data_dir, resources_dir

    demo = resources_dir() / "demo" / "CT_small.dcm"
    open_and_wait(qtbot, window, [str(demo)])
    window.set_tool(Tool.BOX)
    drag(window, (12, 14), (40, 44))
    with qtbot.waitSignal(window.annotations.saved, timeout=5000) as saved:
        pass
    written = Path(saved.args[0])
    assert written.is_relative_to(data_dir()) and json.loads(written.read_text())["images"]
    assert not list(demo.parent.glob("*.clinlens.json"))  # nothing written beside the demo
    assert "data folder" in window.annotation_panel.location.text()
    assert str(written) in window.annotation_panel.location.toolTip()


def test_measurements_are_listed_with_their_own_label_frame_and_value(qtbot, window, images):
    """A length and a rectangle ROI on CT_small: their own kind (not the box label), a 1-based
    frame, the value with its unit in the Value column, min/max in view, every value in the tooltip."""
    from engine.annotations import MeasureKind

    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    assert window.annotations.current_label == "finding"
    window.mpr.set_tool(MeasureKind.LENGTH)
    drag(window, (10, 20), (40, 20))
    window.mpr.set_tool(MeasureKind.RECTANGLE)
    drag(window, (20, 30), (40, 50))
    [length, roi] = window.annotations.doc.measurements(window.annotations.image_id)
    rows = panel_rows(window)
    value = COLUMNS.index("Value")
    assert COLUMNS[:3] == ["Label", "Frame", "Plane"]
    assert rows[0][:3] == ["length", "1", ""] and rows[0][value] == f"{length.values[0].value:.1f} mm"
    assert rows[0][COLUMNS.index("Size (px)")] == "30"
    assert rows[1][:2] == ["rectangle", "1"]
    mean, low, high = roi.value("mean"), roi.value("min"), roi.value("max")
    assert rows[1][value] == (
        f"mean {mean.value:.0f} ± {roi.value('std').value:.0f} HU\nmin/max {low.value:.0f}/{high.value:.0f}"
    )
    tip = window.annotation_panel.tree.topLevelItem(1).toolTip(value)
    assert f"max: {high.value:.1f} HU" in tip and "pixels:" in tip
    # readable without resizing: the Value column is as wide as its widest text
    tree = window.annotation_panel.tree
    needed = max(tree.fontMetrics().horizontalAdvance(line) for line in rows[1][value].splitlines())
    assert tree.columnWidth(value) >= needed
    assert tree.isColumnHidden(COLUMNS.index("Plane"))  # no reformat: no empty Plane column
    x = sum(tree.columnWidth(c) for c in range(value + 1) if not tree.isColumnHidden(c))
    assert x <= tree.viewport().width()  # label, frame and value in view in the docked panel
    assert tree.visualItemRect(tree.topLevelItem(1)).height() >= 2 * tree.fontMetrics().height()  # both lines
    # renaming a measurement in the list keeps its own label, not the shown "(kind)"
    item = tree.topLevelItem(0)
    item.setText(0, "aorta (length)")
    assert window.annotations.doc.measurements(window.annotations.image_id)[0].label == "aorta"
    assert panel_rows(window)[0][0] == "aorta (length)"


def test_a_box_on_a_reformat_lists_a_slice_number_and_its_plane(qtbot, window, tmp_path):
    from engine.imaging import Plane
    from tests.engine.phantom import Phantom

    Phantom().write_series(tmp_path / "series")
    with qtbot.waitSignal(window.load_finished, timeout=20000):
        window.open([str(tmp_path / "series")])
    window.mpr.toggle_action.setChecked(True)
    qtbot.wait_until(lambda: window.mpr.pages.currentWidget() is window.mpr.view, timeout=20000)
    view = window.mpr.view
    view.set_index(Plane.CORONAL, 12)
    box = view.add_box(Plane.CORONAL, 12, ((10, 10), (30, 20)))
    [row] = panel_rows(window)
    assert row[COLUMNS.index("Frame")] == "13" and row[COLUMNS.index("Plane")] == "coronal"
    assert row[COLUMNS.index("Value")].endswith(" mm")
    assert window.annotation_panel.tree.columnWidth(COLUMNS.index("Plane")) >= (
        window.annotation_panel.tree.fontMetrics().horizontalAdvance("coronal")
    )
    assert box.placement.plane == "coronal"


def test_export_opens_in_the_images_folder_with_the_format_filter_and_offers_the_scope(
    qtbot, window, images, tmp_path, monkeypatch
):
    """File > Export: a scope dialog (current image / all, pending model output), then a chooser in
    the images' folder with the format's filter; the next export opens in the last export folder."""
    from PySide6.QtWidgets import QFileDialog

    from app.annotations.export_dialog import ExportScopeDialog
    from engine.annotations import AddAnnotations

    open_and_wait(qtbot, window, [images["CT_small.dcm"], images["MR_small.dcm"]])
    doc, image_id = window.annotations.doc, window.annotations.image_id
    window.set_tool(Tool.BOX)
    drag(window, (10, 10), (20, 30))
    pending = doc.new_box(image_id, 0, 1, 2, 30, 40, "lesion", source=Source.MODEL, score=0.7)
    doc.execute(AddAnnotations(image_id, [pending]))
    asked = []
    out_dir = tmp_path / "exports"
    out_dir.mkdir()

    def save_name(parent, caption, start, file_filter):
        asked.append((start, file_filter))
        return str(out_dir / "current.json"), file_filter

    def scope_exec(dialog):
        assert dialog.all_images.text() == "All open images (2)" and dialog.current_image.isEnabled()
        assert not dialog.include_pending.isChecked()  # the command line's default
        dialog.current_image.setChecked(True)
        dialog.include_pending.setChecked(True)
        return 1

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_name))
    monkeypatch.setattr(ExportScopeDialog, "exec", scope_exec)
    window.choose_export("coco")
    start, file_filter = asked[0]
    assert Path(start).parent == Path(images["CT_small.dcm"]).parent and file_filter == "COCO JSON (*.json)"
    coco = json.loads((out_dir / "current.json").read_text())
    assert len(coco["images"]) == 1 and len(coco["annotations"]) == 2  # current image, with pending output
    assert "pending" in window.statusBar().currentMessage()

    monkeypatch.setattr(ExportScopeDialog, "exec", lambda dialog: 1)  # defaults: all images, reviewed only
    window.choose_export("csv")
    start, file_filter = asked[1]
    assert Path(start).parent == out_dir and file_filter == "CSV table (*.csv)"  # the last export folder

    chosen = []

    def folder(parent, caption, start):
        chosen.append(start)
        return ""  # cancelled: nothing written

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(folder))
    window.choose_export("yolo")
    assert chosen == [str(out_dir)]
