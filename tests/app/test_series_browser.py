"""Issue 23's missing viewer pieces: the series browser, cine play and the window-preset toolbar."""

from __future__ import annotations

import threading

import pytest
from pydicom.data import get_testdata_file
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest

from app.main_window import MainWindow
from app.viewer.cine import CINE_COMMAND, DEFAULT_FPS
from app.viewer.series_browser import DETAILS_ROLE, THUMB, THUMB_STATE_ROLE, THUMBNAIL_ROLE, ThumbState
from app.widgets.shortcuts import keys
from engine.imaging import ImageLoadError, ImageStack, load_presets
from engine.paths import resources_dir
from tests.app.test_viewer_window import open_and_wait

DEMO = str(resources_dir() / "demo" / "CT_small.dcm")
RTDOSE = get_testdata_file("rtdose.dcm")  # 15 frames


@pytest.fixture
def window(qtbot):
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1200, 800)
    main.show()
    qtbot.waitExposed(main)
    return main


@pytest.fixture
def decode_threads(monkeypatch) -> list[bool]:
    """For every frame decode: whether it ran on the GUI (main) thread."""
    on_main: list[bool] = []
    original = ImageStack.frame

    def recording(self, index):
        on_main.append(threading.current_thread() is threading.main_thread())
        return original(self, index)

    monkeypatch.setattr(ImageStack, "frame", recording)
    return on_main


def thumbnails_done(main) -> bool:
    states = [main.image_list.item(row).data(THUMB_STATE_ROLE) for row in range(main.image_list.count())]
    return bool(states) and all(state in (ThumbState.READY, ThumbState.FAILED) for state in states)


def test_thumbnails_and_frame_counts_appear_without_decoding_on_the_gui_thread(qtbot, window, decode_threads):
    open_and_wait(qtbot, window, [DEMO, RTDOSE])
    qtbot.wait_until(lambda: thumbnails_done(window), timeout=20000)
    assert window.image_list.count() == 2
    for row, (modality, frames) in enumerate((("CT", "1 frame"), ("RTDOSE", "15 frames"))):
        item = window.image_list.item(row)
        assert item.data(THUMB_STATE_ROLE) is ThumbState.READY
        thumbnail = item.data(THUMBNAIL_ROLE)
        assert isinstance(thumbnail, QImage)
        assert max(thumbnail.width(), thumbnail.height()) == THUMB
        details = item.data(DETAILS_ROLE)
        assert details.startswith(f"{modality} · {frames} · ")
    assert window.stacks[1].cached_frame(7) is not None  # the middle frame was the one rendered
    assert decode_threads and not any(decode_threads), "a frame was decoded on the GUI thread"


def test_selecting_a_series_shows_it_and_the_review_filter_still_hides_rows(qtbot, window):
    open_and_wait(qtbot, window, [DEMO, RTDOSE])
    window.image_list.setCurrentRow(0)
    assert window.state.stack is window.stacks[0]
    window.image_list.setCurrentRow(1)
    assert window.state.stack is window.stacks[1]
    assert window.windowTitle().endswith(window.stacks[1].title)
    window.image_list.setCurrentRow(0)
    window.mark_reviewed_and_next()  # the CT is reviewed, the dose is shown
    window.needs_review_only.setChecked(True)
    assert window.image_list.item(0).isHidden()
    assert window.image_list.item(0).text().startswith("✓ ")
    qtbot.wait_until(lambda: thumbnails_done(window), timeout=20000)
    window.grab()  # the delegate paints hidden, reviewed and thumbnail rows without an exception


def test_a_frame_that_cannot_be_decoded_shows_a_mark_not_an_exception(qtbot, window, monkeypatch):
    original = ImageStack.frame

    def failing(self, index):
        if self.n_frames > 1:
            raise ImageLoadError(self.key, "damaged pixel data")
        return original(self, index)

    monkeypatch.setattr(ImageStack, "frame", failing)
    with qtbot.waitSignal(window.load_finished, timeout=20000):
        window.open([DEMO, RTDOSE])
    qtbot.wait_until(lambda: thumbnails_done(window), timeout=20000)
    assert window.image_list.item(0).data(THUMB_STATE_ROLE) is ThumbState.READY
    assert window.image_list.item(1).data(THUMB_STATE_ROLE) is ThumbState.FAILED
    assert window.image_list.item(1).data(THUMBNAIL_ROLE) is None
    assert "15 frames" in window.image_list.item(1).data(DETAILS_ROLE)
    window.grab()


def test_cine_plays_loops_pauses_and_follows_the_frame_rate(qtbot, window):
    open_and_wait(qtbot, window, [RTDOSE])
    cine = window.cine
    assert cine.fps == DEFAULT_FPS and cine.timer.interval() == 100
    window.cine_bar.fps_box.setValue(25)
    assert cine.timer.interval() == 40
    window.cine_bar.fps_box.setValue(120)
    seen: list[int] = []
    window.state.frame_changed.connect(seen.append)
    window.cine_bar.button.click()
    assert cine.playing
    n = window.state.n_frames

    def wrapped() -> bool:  # reached the last frame, then came back round towards the start
        return n - 1 in seen and min(seen[seen.index(n - 1) :]) < n - 1

    qtbot.wait_until(wrapped, timeout=20000)
    window.cine_bar.button.click()
    assert not cine.playing and not cine.timer.isActive()
    assert not window.cine_bar.play_action.isChecked()


def test_the_cine_key_toggles_play_and_a_single_frame_image_cannot_play(qtbot, window):
    open_and_wait(qtbot, window, [DEMO, RTDOSE])  # the CT (one frame) is shown first
    assert not window.cine_bar.play_action.isEnabled()
    window.cine.play()
    assert not window.cine.playing
    window.image_list.setCurrentRow(1)
    assert window.cine_bar.play_action.isEnabled()
    assert window.cine_bar.play_action.shortcut().toString() == keys(CINE_COMMAND)[0] == "Space"
    window.canvas.setFocus()
    QTest.keyClick(window, " ")
    qtbot.wait_until(lambda: window.cine.playing)
    window.image_list.setCurrentRow(0)  # another image stops the cine
    assert not window.cine.playing


def test_preset_buttons_set_the_window_and_show_the_matching_one_checked(qtbot, window):
    open_and_wait(qtbot, window, [DEMO])
    presets = load_presets()
    assert [action.text() for _p, action in window.preset_bar.preset_actions] == [p.name for p in presets]
    assert not any(action.isChecked() for _p, action in window.preset_bar.preset_actions)  # auto window
    preset, action = window.preset_bar.preset_actions[1]
    window.preset_bar.widgetForAction(action).click()
    assert (window.state.window.center, window.state.window.width) == (preset.center, preset.width)
    assert action.isChecked()
    other = presets[0]
    QTest.keyClick(window, other.key)  # the Window menu's key: the bar follows
    assert window.preset_bar.preset_actions[0][1].isChecked() and not action.isChecked()
    window.reset_display()
    assert not any(a.isChecked() for _p, a in window.preset_bar.preset_actions)


def test_the_cine_key_still_types_a_space_in_a_text_field(qtbot, window):
    open_and_wait(qtbot, window, [RTDOSE])
    field = window.ask_panel.question
    field.setFocus()
    qtbot.wait_until(field.hasFocus)
    QTest.keyClicks(field, "is this")
    assert field.text() == "is this"
    assert not window.cine.playing
