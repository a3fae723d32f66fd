"""The window's chrome: one shortcut table, Help dialogs, View > Panels, undo texts, remembered
layout, and the keyboard going back to the image after a label is entered."""

from __future__ import annotations

import shutil

import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDockWidget

from app.annotations.box_tools import Tool
from app.main_window import MainWindow
from app.widgets.key_bindings import ID_PROPERTY
from app.widgets.shortcuts import MOUSE, PRESET_KEYS, SHORTCUTS, WINDOW, shortcut
from app.widgets.shortcuts_dialog import ShortcutsDialog


def make_window(qtbot, restored: bool = False) -> MainWindow:
    main = MainWindow()
    qtbot.addWidget(main)
    if restored:
        main.show_restored()
    else:
        main.resize(1200, 800)
        main.show()
    qtbot.waitExposed(main)
    return main


@pytest.fixture
def window(qtbot):
    return make_window(qtbot)


@pytest.fixture
def ct(tmp_path) -> str:
    target = tmp_path / "CT_small.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), target)
    return str(target)


def open_and_wait(qtbot, main: MainWindow, paths: list[str]) -> None:
    with qtbot.waitSignal(main.load_finished, timeout=20000):
        main.open(paths)
    qtbot.wait_until(lambda: not main.canvas.image_item.pixmap().isNull(), timeout=20000)


def portable(sequence: QKeySequence) -> str:
    return sequence.toString(QKeySequence.SequenceFormat.PortableText)


def bound_actions(main: MainWindow) -> list[QAction]:
    return [action for action in main.findChildren(QAction) if action.shortcuts()]


def menu_action(main: MainWindow, *path: str) -> QAction:
    """The action at a menu path of plain titles ("Help", "About ClinLens")."""
    actions = main.menuBar().actions()
    for depth, title in enumerate(path):
        for action in actions:
            if action.text().replace("&", "") == title:
                if depth == len(path) - 1:
                    return action
                action.menu().aboutToShow.emit()
                actions = action.menu().actions()
                break
        else:
            raise AssertionError(f"no {title!r} in {[a.text() for a in actions]}")
    raise AssertionError(path)


# ----- one table


def test_every_key_is_written_as_qt_reads_it():
    for row in SHORTCUTS:
        if row.context == WINDOW:
            for key in row.keys:
                assert portable(QKeySequence(key)) == key, (row.id, key)


def test_no_two_commands_share_a_key_in_one_context():
    seen: dict[tuple[str, str], str] = {}
    for row in SHORTCUTS:
        for key in row.keys:
            where = (row.context, portable(QKeySequence(key)) if row.context == WINDOW else key)
            assert where not in seen, f"{key} is bound to both {seen[where]} and {row.id}"
            seen[where] = row.id


def test_every_bound_shortcut_is_in_the_table_and_every_row_is_bound(window):
    bound: dict[str, set[str]] = {}
    for action in bound_actions(window):
        command_id = action.property(ID_PROPERTY)
        assert command_id, f"{action.text()!r} has keys {action.shortcuts()} that are not from the table"
        bound.setdefault(command_id, set()).update(portable(s) for s in action.shortcuts())
    for command_id, keys in bound.items():
        assert keys == set(shortcut(command_id).keys), command_id
    assert set(bound) == {row.id for row in SHORTCUTS if row.context == WINDOW}
    assert bound["window.preset"] == set(PRESET_KEYS)  # the nine built-in presets
    all_keys = [portable(s) for action in bound_actions(window) for s in action.shortcuts()]
    assert len(all_keys) == len(set(all_keys)), "two actions of the window share a key"
    assert all(row.context in (WINDOW, MOUSE) for row in SHORTCUTS)


# ----- Help


def test_help_keyboard_shortcuts_lists_every_row_and_searches(qtbot, window):
    menu_action(window, "Help", "Keyboard shortcuts").trigger()
    dialog = window.findChild(ShortcutsDialog)
    assert dialog is not None and dialog.isVisible()
    assert not window.banner.isVisible()  # not the red error strip any more
    assert dialog.visible_commands() == [row.id for row in SHORTCUTS]
    texts = {dialog.table.item(i, 0).text() for i in range(dialog.table.rowCount())}
    for key in ("M", "L", "E", "Shift+A", "Alt+1", "Alt+3", "1–9"):  # what Help > Controls left out
        assert key in texts, key
    dialog.search.setText("three clicks")
    assert dialog.visible_commands() == ["measure.angle"]
    dialog.search.setText("alt+")
    assert dialog.visible_commands() == ["mpr.layout_1x1", "mpr.layout_1x3", "mpr.layout_2x2", "mouse.segment_negative"]
    dialog.close()


def test_help_about_names_version_licences_docs_and_the_research_notice(window):
    menu_action(window, "Help", "About ClinLens").trigger()
    dialog = window.show_about()
    text = dialog.text.text()
    for expected in ("ClinLens 0.1.0", "LGPL-3.0", "pydicom", "highdicom", "Apache-2.0", "BSD-3-Clause"):
        assert expected in text, expected
    assert "Research use only" in text and "docs" in text
    dialog.close()


# ----- View > Panels


def test_a_closed_panel_comes_back_from_view_panels(qtbot, window):
    dock = next(d for d in window.findChildren(QDockWidget) if d.windowTitle() == "Annotations")
    dock.close()
    qtbot.wait_until(lambda: not dock.isVisible())
    action = menu_action(window, "View", "Panels", "Annotations")
    assert not action.isChecked()
    action.trigger()
    qtbot.wait_until(dock.isVisible)
    assert action.isChecked()


# ----- undo texts


def test_undo_and_redo_say_what_they_undo(qtbot, window, ct):
    open_and_wait(qtbot, window, [ct])
    undo, redo = window.undo_action, window.redo_action
    assert undo.text() == "&Undo" and not undo.isEnabled()
    window.annotations.add_box(0, 10, 10, 40, 40)
    assert undo.text() == "&Undo Add box" and undo.isEnabled()
    window.annotations.add_box(0, 50, 50, 70, 70)
    window.select_all_on_frame()
    window.annotations.delete_selected()
    assert undo.text() == "&Undo Delete 2 annotations"
    undo.trigger()
    assert redo.text() == "&Redo Delete 2 annotations" and redo.isEnabled()
    assert undo.text() == "&Undo Add box"
    redo.trigger()
    assert redo.text() == "&Redo" and not redo.isEnabled()


# ----- remembered layout


def test_first_start_is_maximised_and_the_layout_is_remembered(qtbot):
    first = make_window(qtbot, restored=True)
    assert first.windowState() & Qt.WindowState.WindowMaximized
    maximised = first.size()
    first.showNormal()
    first.resize(first.minimumSizeHint().width(), maximised.height() - 200)  # fits the small offscreen screen
    qtbot.wait_until(lambda: first.size().height() == maximised.height() - 200)
    size = first.size()
    metadata = first.findChild(QDockWidget, "metadataDock")
    metadata.close()
    state = first.saveState()
    first.close()

    second = make_window(qtbot, restored=True)
    assert not second.windowState() & Qt.WindowState.WindowMaximized
    assert second.size() == size
    assert not second.findChild(QDockWidget, "metadataDock").isVisible()
    assert second.findChild(QDockWidget, "boxesDock").isVisible()
    assert second.saveState() == state


# ----- keyboard focus


def test_enter_in_the_label_field_gives_the_keyboard_back_to_the_image(qtbot, window, ct):
    open_and_wait(qtbot, window, [ct])
    window.activateWindow()
    qtbot.waitActive(window)
    field = window.annotation_panel.label_picker.lineEdit()
    field.setFocus()
    qtbot.wait_until(field.hasFocus)
    field.selectAll()
    QTest.keyClicks(field, "nodule")
    QTest.keyClick(field, Qt.Key.Key_Return)
    assert window.annotations.current_label == "nodule"
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_B)  # wherever the keyboard now is
    assert window.tools.tool is Tool.BOX
    assert field.text() == "nodule"
    assert window.canvas.hasFocus()


def test_the_docs_page_is_generated_from_the_same_table():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("docs_hooks", root / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = (root / "docs" / "reference" / "shortcuts.md").read_text()
    assert hooks.SHORTCUTS_MARKER in page
    generated = hooks.on_page_markdown(page, None, None, None)
    assert hooks.SHORTCUTS_MARKER not in generated
    for row in SHORTCUTS:
        assert f"| {row.title} |" in generated, row.id
        assert all(f"`{key}`" in generated for key in row.keys if row.keys != PRESET_KEYS), row.id
