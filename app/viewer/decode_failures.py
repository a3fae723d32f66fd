"""Mark the images whose frames could not be decoded in the Images list, and retry them.

A stack remembers a frame that failed (damaged bytes stay damaged, and a decoder that crashed
on them would crash again), so the failure is shown once and returning to the frame is instant.
Some failures are worth a second try: a decode abandoned at the time limit may finish after the
limit is raised in Settings. "Retry decoding this image" (View menu, F5, or the button in the
red strip) forgets the image's failures and decodes the frame on screen again.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QStyle

from app.viewer.state import ViewerState
from app.widgets.error_banner import ErrorBanner
from app.widgets.key_bindings import bind
from app.widgets.shortcuts import shortcut
from engine.imaging import ImageLoadError, ImageStack

_PLAIN_TOOLTIP = Qt.ItemDataRole.UserRole + 1  # the item's tooltip before a failure was added
_LISTED = 3  # failures spelled out in a tooltip


class DecodeFailureMarks(QObject):
    """A warning icon and the reasons on each Images-list item with failed frames; the retry action."""

    def __init__(
        self,
        state: ViewerState,
        image_list: QListWidget,
        stacks: Callable[[], list[ImageStack]],
        banner: ErrorBanner,
        parent: QObject,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.image_list = image_list
        self.stacks = stacks
        self.retry_action = bind(QAction(shortcut("view.retry_decoding").text, parent), "view.retry_decoding")
        self.retry_action.setEnabled(False)
        self.retry_action.triggered.connect(self.retry)
        banner.add_action(self.retry_action, "Retry decoding")
        state.loader.failed.connect(self._on_failed)  # a bound method: queued to the GUI thread
        state.stack_changed.connect(self._update_action)

    def mark(self, stack: ImageStack) -> None:
        """Show (or clear) the mark of `stack` from what it remembers now."""
        item = self._item(stack)
        if item is not None:
            failures = stack.failures()
            plain = item.data(_PLAIN_TOOLTIP)
            if failures:
                if plain is None:
                    plain = item.toolTip()
                    item.setData(_PLAIN_TOOLTIP, plain)
                item.setIcon(self.image_list.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
                item.setToolTip(f"{plain}\n\n{_summary(failures)}")
            elif plain is not None:
                item.setIcon(QIcon())
                item.setToolTip(plain)
                item.setData(_PLAIN_TOOLTIP, None)
        self._update_action()

    def _on_failed(self, stack: ImageStack, _index: int, _message: str) -> None:
        self.mark(stack)

    def retry(self) -> None:
        """Forget the failures of the image on screen and decode its frame again."""
        stack = self.state.stack
        if stack is None or not stack.forget_failures():
            return
        self.mark(stack)
        self.state.set_frame(self.state.frame_index, force=True)

    def _update_action(self) -> None:
        stack = self.state.stack
        self.retry_action.setEnabled(stack is not None and bool(stack.failures()))

    def _item(self, stack: ImageStack) -> QListWidgetItem | None:
        for row, open_stack in enumerate(self.stacks()):
            if open_stack is stack:
                return self.image_list.item(row)
        return None


def _summary(failures: dict[int, ImageLoadError]) -> str:
    count = len(failures)
    lines = [f"⚠ {count} frame{'s' if count > 1 else ''} could not be decoded (View > Retry decoding this image, F5):"]
    lines += [f"Frame {index + 1}: {error}" for index, error in list(failures.items())[:_LISTED]]
    if count > _LISTED:
        lines.append(f"… and {count - _LISTED} more.")
    return "\n".join(lines)
