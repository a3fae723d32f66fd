"""The line in the middle of the canvas that says a frame is decoding, or why it cannot be shown.

"Decoding…" appears only when a decode takes longer than a glance (DELAY_MS), so scrolling
through cached or fast frames does not flicker; an error replaces the image with its sentence.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QAbstractScrollArea, QLabel

from app.viewer.state import ViewerState

DELAY_MS = 150
_STYLE = "#decodeStatus {{ background: rgba(0, 0, 0, 190); color: {color}; padding: 8px 14px; border-radius: 4px; }}"


class DecodeStatusOverlay(QLabel):
    def __init__(self, view: QAbstractScrollArea, state: ViewerState) -> None:
        super().__init__(view)  # a child of the view, not its viewport: scrolling must not move it
        self.view = view
        self.state = state
        self.setObjectName("decodeStatus")
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
        self._delay = QTimer(self)
        self._delay.setSingleShot(True)
        self._delay.setInterval(DELAY_MS)
        self._delay.timeout.connect(self.refresh)
        view.installEventFilter(self)
        state.display_changed.connect(self._on_state)
        state.stack_changed.connect(self._on_state)
        self.hide()

    def _on_state(self) -> None:
        if self.state.loading and not self.isVisible():
            self._delay.start()  # show "decoding…" only if it is still decoding after the delay
        else:
            self.refresh()

    def refresh(self) -> None:
        state = self.state
        if state.frame_error:
            self.setStyleSheet(_STYLE.format(color="#ffb4b4"))
            self.setText(f"Frame {state.frame_index + 1} cannot be shown.\n{state.frame_error}")
        elif state.loading:
            self.setStyleSheet(_STYLE.format(color="#f0f0f0"))
            self.setText(f"Decoding frame {state.frame_index + 1}…")
        else:
            self._delay.stop()
            self.hide()
            return
        self._place()
        self.show()
        self.raise_()

    def _place(self) -> None:
        width = min(560, max(200, self.view.width() - 40))
        self.setFixedWidth(width)
        self.adjustSize()
        self.move((self.view.width() - width) // 2, (self.view.height() - self.height()) // 2)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.view and event.type() == QEvent.Type.Resize and self.isVisible():
            self._place()
        return False
