"""The red strip: each failed file named once, non-image files of a scanned folder counted (not
failures), and the last problems reachable again after the strip was closed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QToolButton

from app.main_window import MainWindow
from tests.app.test_annotation_tools import make_window


@pytest.fixture
def window(qtbot) -> MainWindow:
    return make_window(qtbot)


@pytest.fixture
def folder(tmp_path) -> Path:
    """One good CT, one damaged .dcm, and the notes and reports a study folder also holds."""
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "01_ct.dcm")
    (folder / "02_random.dcm").write_bytes(np.random.default_rng(1).bytes(2048))
    (folder / "notes.txt").write_text("patient moved during the scan\n")
    (folder / "report.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    (folder / "README").write_text("exported by the PACS\n")
    return folder


def open_and_wait(qtbot, main: MainWindow, paths: list[str]):
    with qtbot.waitSignal(main.load_finished, timeout=20000) as blocker:
        main.open(paths)
    return blocker.args[0]


def test_a_scanned_folder_names_each_failed_file_once_and_counts_non_images(qtbot, window, folder, tmp_path):
    result = open_and_wait(qtbot, window, [str(folder)])
    assert [Path(e.path).name for e in result.errors] == ["02_random.dcm"]
    assert sorted(Path(p).name for p in result.skipped) == ["README", "notes.txt", "report.pdf"]
    text = window.banner.label.text()
    assert window.banner.isVisible()
    assert text == "Could not open 1 file:\n02_random.dcm is not a DICOM or image file.\n(3 non-image files skipped)"
    assert text.count("02_random.dcm") == 1
    assert "notes.txt" not in text and "report.pdf" not in text
    assert window.grab().save(str(tmp_path / "error-strip.png"))


def test_only_non_image_files_skipped_is_no_failure(qtbot, window, tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    (folder / "notes.txt").write_text("nothing here\n")
    result = open_and_wait(qtbot, window, [str(folder)])
    assert not result.errors and len(result.stacks) == 1
    assert not window.banner.isVisible() and not window.problems_indicator.isVisible()
    assert window.statusBar().currentMessage() == "1 non-image file skipped."


def test_a_text_file_picked_by_name_is_still_a_failure(qtbot, window, folder):
    result = open_and_wait(qtbot, window, [str(folder / "notes.txt")])
    assert [Path(e.path).name for e in result.errors] == ["notes.txt"] and not result.skipped
    assert window.banner.label.text() == "Could not open 1 file:\nnotes.txt is not a DICOM or image file."


def test_a_closed_strip_comes_back_from_the_view_menu_and_the_status_bar(qtbot, window, folder, tmp_path):
    open_and_wait(qtbot, window, [str(folder)])
    shown = window.banner.label.text()
    assert not window.problems_indicator.isVisible()
    close = next(b for b in window.banner.findChildren(QToolButton) if b.text() == "✕")
    QTest.mouseClick(close, Qt.MouseButton.LeftButton)
    assert not window.banner.isVisible()
    assert window.problems_indicator.isVisible() and window.problems_indicator.text() == "⚠ 1 problem"
    assert window.grab().save(str(tmp_path / "problems-indicator.png"))

    view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    show = next(a for a in view.actions() if a.text() == "Show &problems")
    show.trigger()
    assert window.banner.isVisible() and window.banner.label.text() == shown
    assert not window.problems_indicator.isVisible()

    window.banner.hide()
    QTest.mouseClick(window.problems_indicator, Qt.MouseButton.LeftButton)
    assert window.banner.isVisible() and window.banner.label.text() == shown


def test_show_problems_with_nothing_to_show_says_so(qtbot, window):
    window.show_problems()
    assert not window.banner.isVisible()
    assert window.statusBar().currentMessage() == "No problems to show."
