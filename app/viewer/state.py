"""What the viewer shows: which image stack, which frame, which window, inverted or not.

The canvas, the status bar, the metadata panel and (later) the model input all read this one
object, so they cannot disagree about the frame or the window a user is looking at.

Frames are never decoded here (this is the GUI thread): `set_frame` takes a cached frame at
once, or asks the FrameLoader and leaves `frame` None with `loading` set until the frame (then
`frame_changed` again) or an error (`frame_failed`, `frame_error`) arrives.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from app.viewer.frame_loader import FrameLoader
from engine.imaging import Frame, ImageStack, Window, auto_window, initial_window


class ViewerState(QObject):
    stack_changed = Signal()
    frame_changed = Signal(int)
    display_changed = Signal()  # window or invert changed
    frame_failed = Signal(str)  # a frame could not be decoded: user-facing message

    def __init__(self) -> None:
        super().__init__()
        self.stack: ImageStack | None = None
        self.frame_index = 0
        self.window: Window | None = None  # None: the header's VOI LUT applies
        self.invert = False
        self._frame: Frame | None = None
        self._window_is_user_choice = False
        self._series_auto_window: Window | None = None  # one automatic window per series
        # Set while another view (the three-plane view) shows something other than `frame`:
        # returns the frame as displayed there (a reformatted plane).
        self.shown_frame_source: Callable[[], Frame | None] | None = None
        self.shown_frame_title: Callable[[], str] | None = None  # e.g. "Coronal 120/256"
        self.loading = False  # the frame at frame_index is being decoded
        self.frame_error: str | None = None  # why the frame at frame_index cannot be shown
        self.loader = FrameLoader(self)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)

    # ----- reading
    @property
    def frame(self) -> Frame | None:
        return self._frame

    def shown_frame(self) -> Frame | None:
        """What the user looks at: the active reformatted plane in the three-plane view, else `frame`.

        The assistant is shown this, so a question asked on a coronal plane is about that plane.
        """
        return self.shown_frame_source() if self.shown_frame_source is not None else self._frame

    @property
    def n_frames(self) -> int:
        return self.stack.n_frames if self.stack else 0

    # ----- changing
    def set_stack(self, stack: ImageStack | None, frame_index: int = 0) -> None:
        self.stack = stack
        self.invert = False
        self._window_is_user_choice = False
        self._series_auto_window = None
        self._frame = None
        self.frame_index = 0
        self.loading = False
        self.frame_error = None
        self.stack_changed.emit()
        if stack is not None:
            self.set_frame(min(max(frame_index, 0), stack.n_frames - 1), force=True)

    def set_frame(self, index: int, *, force: bool = False) -> None:
        if self.stack is None:
            return
        index = min(max(index, 0), self.stack.n_frames - 1)
        if index == self.frame_index and not force:
            return
        self.frame_index = index
        self.frame_error = None
        frame = self.loader.request(self.stack, index)
        self.loading = frame is None
        self._frame = None
        if frame is not None:
            self._show(frame)
        self.frame_changed.emit(index)
        self.display_changed.emit()

    def _show(self, frame: Frame) -> None:
        self._frame = frame
        self.loading = False
        if not self._window_is_user_choice:
            self.window = self._initial_window(frame)
        self.loader.prefetch(self.stack, self.frame_index)

    def _initial_window(self, frame: Frame) -> Window | None:
        """The header's window (or VOI LUT) of this frame; without one, the series' automatic window.

        The automatic window is computed once, from the first frame shown, and kept for the whole
        series: recomputed per frame it would change the brightness from slice to slice.
        """
        if frame.has_voi_lut or frame.windows or frame.is_color:
            return initial_window(frame)
        if self._series_auto_window is None:
            self._series_auto_window = auto_window(frame)
        return self._series_auto_window

    def _on_loaded(self, stack: ImageStack, index: int, frame: Frame) -> None:
        if stack is self.stack and index == self.frame_index and self._frame is None:
            self._show(frame)
            self.frame_changed.emit(index)
            self.display_changed.emit()

    def _on_failed(self, stack: ImageStack, index: int, message: str) -> None:
        if stack is self.stack and index == self.frame_index and self._frame is None:
            self.loading = False
            self.frame_error = message
            self.frame_failed.emit(message)
            self.display_changed.emit()

    def shutdown(self) -> None:
        """Stop decoding (the window is closing)."""
        self.loader.shutdown()

    def step_frame(self, delta: int) -> None:
        self.set_frame(self.frame_index + delta)

    def set_window(self, window: Window) -> None:
        self.window = window
        self._window_is_user_choice = True
        self.display_changed.emit()

    def effective_window(self) -> Window | None:
        """The window a drag starts from: the current one, or an automatic one over the VOI LUT."""
        if self.window is not None or self._frame is None:
            return self.window
        return auto_window(self._frame)

    def toggle_invert(self) -> None:
        self.invert = not self.invert
        self.display_changed.emit()

    def user_display(self) -> tuple[Window | None, bool, int]:
        """What the user chose on this image: their window (None when automatic), inversion, frame."""
        return (self.window if self._window_is_user_choice else None), self.invert, self.frame_index

    def restore_user_display(self, choice: tuple[Window | None, bool, int]) -> None:
        """Re-apply ``user_display()`` after the same image came back as a new stack (a PACS series
        that grew while it was on screen), so the user's window, inversion and frame survive."""
        window, invert, frame = choice
        if window is not None:
            self.set_window(window)
        if invert != self.invert:
            self.toggle_invert()
        self.set_frame(frame)

    def reset_display(self) -> None:
        self.invert = False
        self._window_is_user_choice = False
        self.window = self._initial_window(self._frame) if self._frame is not None else None
        self.display_changed.emit()
