"""A folder of good and damaged files: the good ones open, each bad one gets its reason, and a
decoder that aborts or hangs costs one frame, never the window."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QToolButton

from app.inference.settings import AssistantSettings
from app.inference.settings_dialog import SettingsDialog
from app.main_window import MainWindow
from engine.imaging.decoder_pool import configure_decoder_pool, decoder_pool, set_decode_timeout
from tests.engine.hostile_decoders import ABORT, HANG


@pytest.fixture
def window(qtbot):
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1400, 860)
    main.show()
    qtbot.waitExposed(main)
    yield main
    configure_decoder_pool(child_setup=None)
    set_decode_timeout(30.0)


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """Two good series, a PNG, and four kinds of damage."""
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "01_ct.dcm")
    shutil.copy(get_testdata_file("MR_small_jp2klossless.dcm"), folder / "02_mr_j2k.dcm")
    shutil.copy(get_testdata_file("SC_rgb_rle.dcm"), folder / "03_rle_aborts_decoder.dcm")
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (folder / "04_cut_transfer.dcm").write_bytes(data[: len(data) // 2])
    (folder / "05_random_bytes.dcm").write_bytes(np.random.default_rng(0).bytes(4096))
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(folder / "06_good.png")
    png = (folder / "06_good.png").read_bytes()
    (folder / "07_broken.png").write_bytes(png[:30])  # cut inside the PNG header
    return folder


def open_folder(qtbot, main: MainWindow, folder: Path):
    with qtbot.waitSignal(main.load_finished, timeout=30000) as blocker:
        main.open([str(folder)])
    return blocker.args[0]


def select(qtbot, main: MainWindow, title_part: str) -> None:
    row = next(i for i in range(main.image_list.count()) if title_part in main.image_list.item(i).toolTip())
    main.image_list.setCurrentRow(row)
    qtbot.wait_until(lambda: not main.state.loading, timeout=60000)


def test_mixed_folder_opens_the_good_files_and_survives_an_aborting_decoder(qtbot, window, mixed_folder, tmp_path):
    configure_decoder_pool(child_setup=ABORT)
    result = open_folder(qtbot, window, mixed_folder)
    bad = sorted(Path(e.path).name for e in result.errors)
    assert bad == ["04_cut_transfer.dcm", "05_random_bytes.dcm", "07_broken.png"]
    banner = window.banner.label.text()
    assert window.banner.isVisible() and "Could not open 3 files" in banner
    assert "04_cut_transfer.dcm is truncated" in banner and "05_random_bytes.dcm" in banner
    assert "Traceback" not in banner
    assert window.image_list.count() == 4  # CT, MR, RLE (header is fine), PNG

    select(qtbot, window, "03_rle_aborts_decoder.dcm")  # its decoder process aborts
    assert window.state.frame is None and "crashed" in window.state.frame_error
    assert "03_rle_aborts_decoder.dcm" in window.state.frame_error and "SIGABRT" in window.state.frame_error
    assert "crashed" in window.banner.label.text()
    assert "04_cut_transfer.dcm is truncated" in window.banner.label.text()  # the list stays
    qtbot.wait_until(window.decode_status.isVisible)
    assert "cannot be shown" in window.decode_status.text()
    assert window.canvas.image_item.pixmap().isNull()  # no stale image under the error

    select(qtbot, window, "02_mr_j2k.dcm")  # the next compressed frame decodes
    expected = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm")).pixel_array
    np.testing.assert_array_equal(window.state.frame.stored, expected)
    qtbot.wait_until(lambda: not window.canvas.image_item.pixmap().isNull())
    assert not window.decode_status.isVisible()
    assert decoder_pool().restarts >= 1

    select(qtbot, window, "01_ct.dcm")
    assert window.state.frame is not None and window.state.stack.modality == "CT"
    restarts = decoder_pool().restarts
    select(qtbot, window, "03_rle_aborts_decoder.dcm")  # back to the bad one: a sentence again,
    assert "crashed" in window.state.frame_error
    assert decoder_pool().restarts == restarts  # without crashing the decoder again
    qtbot.wait_until(lambda: not window.canvas._render_pending and window.canvas.image_item.pixmap().isNull())
    assert window.grab().save(str(tmp_path / "damaged-files.png"))  # docs/screenshots/ holds a copy
    assert window.isVisible() and QApplication.instance() is not None


def test_a_hung_decoder_shows_decoding_then_the_time_limit_error(qtbot, window, mixed_folder):
    configure_decoder_pool(child_setup=HANG)
    set_decode_timeout(2.0)
    open_folder(qtbot, window, mixed_folder)
    decoder_pool().warm()
    row = next(
        i
        for i in range(window.image_list.count())
        if "03_rle_aborts_decoder.dcm" in window.image_list.item(i).toolTip()
    )
    window.image_list.setCurrentRow(row)
    assert window.state.loading  # set_frame returned without decoding
    qtbot.wait_until(window.decode_status.isVisible, timeout=5000)
    assert window.decode_status.text() == "Decoding frame 1…"
    qtbot.wait_until(lambda: not window.state.loading, timeout=60000)
    assert "took longer than 2 s" in window.state.frame_error
    assert "cannot be shown" in window.decode_status.text()


def test_the_decode_time_limit_is_a_setting(qtbot, window):
    dialog = SettingsDialog(AssistantSettings(), [])
    qtbot.addWidget(dialog)
    assert dialog.decode_timeout_s.value() == 30
    dialog.decode_timeout_s.setValue(12)
    window.set_assistant_settings(dialog.value())
    assert decoder_pool().timeout_s == 12
    assert AssistantSettings(decode_timeout_s=0).problems() == ["decode_timeout_s must be between 1 and 600, not 0."]


def test_neighbours_of_a_compressed_frame_are_prefetched_so_scrolling_meets_cached_frames(qtbot, window):
    with qtbot.waitSignal(window.load_finished, timeout=30000):
        window.open([get_testdata_file("SC_rgb_rle_2frame.dcm")])
    qtbot.wait_until(lambda: window.state.frame is not None, timeout=30000)
    stack = window.state.stack
    qtbot.wait_until(lambda: stack.cached_frame(1) is not None, timeout=30000)  # decoded in the background
    window.state.step_frame(1)
    assert not window.state.loading and window.state.frame is stack.cached_frame(1)  # shown at once


def test_an_image_with_a_failed_frame_is_marked_and_retry_decodes_it_again(qtbot, window, mixed_folder):
    configure_decoder_pool(child_setup=ABORT)
    open_folder(qtbot, window, mixed_folder)
    row = next(
        i
        for i in range(window.image_list.count())
        if "03_rle_aborts_decoder.dcm" in window.image_list.item(i).toolTip()
    )
    item = window.image_list.item(row)
    plain_tooltip = item.toolTip()
    retry = window.decode_failures.retry_action
    retry_button = next(b for b in window.banner.findChildren(QToolButton) if b.defaultAction() is retry)
    assert item.icon().isNull() and not retry.isEnabled()

    select(qtbot, window, "03_rle_aborts_decoder.dcm")  # its decoder process aborts
    qtbot.wait_until(lambda: not item.icon().isNull())
    assert "⚠ 1 frame could not be decoded" in item.toolTip()
    assert "Frame 1: The RLE Lossless" in item.toolTip() and "SIGABRT" in item.toolTip()
    assert item.toolTip().startswith(plain_tooltip)  # the path stays findable
    assert retry.isEnabled() and retry_button.isVisible() and retry_button.text() == "Retry decoding"
    assert all(window.image_list.item(i).icon().isNull() for i in range(window.image_list.count()) if i != row)

    select(qtbot, window, "01_ct.dcm")  # the action follows the image on screen
    assert not retry.isEnabled() and not retry_button.isVisible()
    select(qtbot, window, "03_rle_aborts_decoder.dcm")
    assert retry.isEnabled() and "crashed" in window.state.frame_error

    configure_decoder_pool(child_setup=None)  # the real RLE decoder again
    restarts = decoder_pool().restarts
    qtbot.mouseClick(retry_button, Qt.MouseButton.LeftButton)  # forget the failure, decode again
    qtbot.wait_until(lambda: window.state.frame is not None, timeout=60000)
    expected = pydicom.dcmread(get_testdata_file("SC_rgb_rle.dcm")).pixel_array
    np.testing.assert_array_equal(window.state.frame.stored, expected)
    assert window.state.frame_error is None and not window.state.stack.failures()
    assert item.icon().isNull() and item.toolTip() == plain_tooltip
    assert not retry.isEnabled() and not retry_button.isVisible()
    assert decoder_pool().restarts == restarts  # decoded, nothing crashed
