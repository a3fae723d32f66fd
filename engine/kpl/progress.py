"""Progress reporting and cancellation shared by every long KPL step.

KPL runs in the GUI's worker thread, so every long loop takes a ``progress`` callback and a
``threading.Event``-like ``cancel`` flag instead of printing or blocking; the CLI passes a printer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called from the worker thread; must be cheap and thread-safe."""


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


class Cancelled(Exception):
    """Raised inside a KPL step when its cancel flag is set; nothing partial is returned."""


def check_cancel(cancel: CancelFlag | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


def report(progress: ProgressFn | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)
