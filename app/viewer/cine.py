"""Cine: play the frames of a multi-frame stack at a frame rate, looping as OHIF's cine does.

A QTimer on the GUI thread asks ViewerState.set_frame for the next frame, which takes a cached
frame or asks the FrameLoader: nothing is decoded here. When the frame on screen has not arrived
yet at the next tick, no new request is made; the ticks are counted instead, and once it arrives
the player jumps ahead by as many frames, so a slow decode lowers the shown rate but the clip
keeps its speed and requests never queue up behind each other.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QHBoxLayout, QSpinBox, QStyle, QToolButton, QWidget

from app.viewer.state import ViewerState
from app.widgets.key_bindings import bind
from app.widgets.shortcuts import key_text, shortcut

CINE_COMMAND = "view.cine"  # its key (Space) is in the shortcut table
DEFAULT_FPS = 10
MIN_FPS, MAX_FPS = 1, 120


class CinePlayer(QObject):
    playing_changed = Signal(bool)

    def __init__(self, state: ViewerState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.fps = DEFAULT_FPS
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(_interval_ms(self.fps))
        self.timer.timeout.connect(self._tick)
        self._owed = 0  # ticks that passed while the frame on screen was still decoding
        state.stack_changed.connect(self.pause)  # another image: it starts still, as it opens

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def can_play(self) -> bool:
        return self.state.n_frames > 1

    def play(self) -> None:
        if self.playing or not self.can_play():
            return
        self._owed = 0
        self.timer.start()
        self.playing_changed.emit(True)

    def pause(self) -> None:
        if self.playing:
            self.timer.stop()
            self.playing_changed.emit(False)

    def toggle(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def set_fps(self, fps: int) -> None:
        self.fps = min(max(int(fps), MIN_FPS), MAX_FPS)
        self.timer.setInterval(_interval_ms(self.fps))

    def _tick(self) -> None:
        n = self.state.n_frames
        if n < 2:
            self.pause()
            return
        if self.state.loading:  # skip ahead once it arrives rather than queueing a request per tick
            self._owed += 1
            return
        step, self._owed = 1 + self._owed, 0
        self.state.set_frame((self.state.frame_index + step) % n)  # loops at the end


def _interval_ms(fps: int) -> int:
    return max(1, round(1000 / fps))


class CineBar(QWidget):
    """Play/pause button and frame-rate box; the play action carries the key of ``view.cine``."""

    def __init__(self, player: CinePlayer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.player = player
        self.play_action = bind(QAction(shortcut(CINE_COMMAND).title, self), CINE_COMMAND)
        self.play_action.setCheckable(True)
        self.play_action.setStatusTip("Play the frames of this image in a loop at the chosen frame rate")
        self.play_action.triggered.connect(lambda _checked=False: player.toggle())
        self.button = QToolButton()
        self.button.setDefaultAction(self.play_action)
        # icon and word: some styles (and the offscreen platform) have no media icons
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.fps_box = QSpinBox()
        self.fps_box.setRange(MIN_FPS, MAX_FPS)
        self.fps_box.setValue(player.fps)
        self.fps_box.setSuffix(" fps")
        self.fps_box.setToolTip("Cine frame rate (frames per second)")
        self.fps_box.valueChanged.connect(player.set_fps)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.fps_box)
        player.playing_changed.connect(self._show_playing)
        player.state.stack_changed.connect(self._update_enabled)
        self._show_playing(False)
        self._update_enabled()

    def _show_playing(self, playing: bool) -> None:
        pixmap = QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        self.play_action.setIcon(self.style().standardIcon(pixmap))
        self.play_action.setChecked(playing)
        self.play_action.setIconText("Pause" if playing else "Play")
        self.play_action.setToolTip(f"{'Pause' if playing else 'Play'} cine ({key_text(shortcut(CINE_COMMAND))})")

    def _update_enabled(self) -> None:
        self.play_action.setEnabled(self.player.can_play())
