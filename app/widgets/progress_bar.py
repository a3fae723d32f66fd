"""A progress bar whose changes are painted with the next frame, not on the spot."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QProgressBar


class ProgressBar(QProgressBar):
    """QProgressBar for bars that follow a worker's reports.

    QProgressBar.setValue (and the reset a new range may cause) repaint at once, outside the event
    loop, whenever the bar moves, so every report cost the GUI thread a paint of its own; the first
    one also flushed whatever the window had pending (11-17 ms in bench_gui_responsiveness). With
    updates off the bar only takes the change, and turning them back on schedules an ordinary
    paint that Qt merges with the rest of the frame.
    """

    def setValue(self, value: int) -> None:
        self._quietly(super().setValue, value)

    def setRange(self, minimum: int, maximum: int) -> None:
        self._quietly(super().setRange, minimum, maximum)

    def _quietly(self, change: Callable[..., None], *args: int) -> None:
        self.setUpdatesEnabled(False)
        try:
            change(*args)
        finally:
            self.setUpdatesEnabled(True)
