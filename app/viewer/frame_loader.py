"""Decode frames off the GUI thread, newest request first, and keep the neighbours warm.

The viewer asks for the frame on screen; a cached frame comes back at once, anything else is
decoded on one of two loader threads (compressed frames go on to a decoder process, see
engine/imaging/decoder_pool.py) and arrives through a queued signal. Scrolling queues a request
per step: requests not started yet are dropped when a newer one comes, so the frame under the
user's finger is decoded next, not the twenty it passed. After a frame arrives its neighbours
are decoded in the background, so scrolling a compressed series meets cached frames.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QThreadPool, Signal

from engine.imaging import Frame, ImageLoadError, ImageStack
from engine.imaging.decoder_pool import shutdown_decoder_pool

LOADER_THREADS = 2
PREFETCH = (1, -1, 2, -2)  # neighbours decoded after a frame arrives, nearest first
_SHOWN, _PREFETCH = 1, 0  # QThreadPool priorities


class FrameLoader(QObject):
    loaded = Signal(object, int, object)  # stack, frame index, Frame
    failed = Signal(object, int, str)  # stack, frame index, user-facing message (prefetches too)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(LOADER_THREADS)
        self._closed = False

    def request(self, stack: ImageStack, index: int) -> Frame | None:
        """The frame if it is cached; otherwise None, and `loaded` or `failed` follows."""
        cached = stack.cached_frame(index)
        if cached is not None:
            return cached
        if not self._closed:
            self._pool.clear()  # older requests not started yet are stale now
            self._pool.start(lambda: self._decode(stack, index, report=True), _SHOWN)
        return None

    def prefetch(self, stack: ImageStack, index: int) -> None:
        """Decode the neighbours of `index` in the background (results only fill the cache)."""
        for offset in PREFETCH:
            neighbour = index + offset
            if not self._closed and 0 <= neighbour < stack.n_frames and stack.cached_frame(neighbour) is None:
                self._pool.start(lambda n=neighbour: self._decode(stack, n, report=False), _PREFETCH)

    def shutdown(self) -> None:
        """Drop queued work, stop decoder processes (a running decode ends at once), join threads."""
        self._closed = True
        self._pool.clear()
        shutdown_decoder_pool()
        self._pool.waitForDone()

    def _decode(self, stack: ImageStack, index: int, *, report: bool) -> None:
        """Runs on a loader thread; signals are queued to the GUI thread."""
        try:
            frame = stack.frame(index)
        except ImageLoadError as error:
            if not self._closed:  # prefetches too: the Images list marks the image
                self.failed.emit(stack, index, str(error))
            return
        if report and not self._closed:
            self.loaded.emit(stack, index, frame)
