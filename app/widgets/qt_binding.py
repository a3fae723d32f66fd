"""A start-up check of the Qt binding itself: a PySide6 release that leaks would abort a long session.

PySide6 6.12.0's ``SignalInstance.emit()`` drops one reference to ``True`` on every call under
Python 3.11, where ``True`` is not immortal. The window and the workers emit a signal per token,
per frame and per progress step, so such a session ends in "Fatal Python error: bool_dealloc".
requirements.txt excludes that release; this catches a binding installed around it, before the
user has work to lose.
"""

from __future__ import annotations

import sys

import PySide6
from PySide6.QtCore import QObject, Signal

PROBE_EMITS = 20  # few: on a leaking binding every probe emit costs the session one reference


class _Probe(QObject):
    bare = Signal()
    one = Signal(object)


def true_references_lost(emits: int = PROBE_EMITS) -> int:
    """References to ``True`` that ``emits`` emissions of each of two signals lose (0 when sound)."""
    probe = _Probe()
    received: list[object] = []
    probe.bare.connect(lambda: received.append(None))
    probe.one.connect(received.append)
    before = sys.getrefcount(True)
    for n in range(emits):
        probe.bare.emit()
        probe.one.emit(n)
    return max(0, before - sys.getrefcount(True))


def binding_warning(emits: int = PROBE_EMITS) -> str | None:
    """A sentence for the user when the binding leaks (more than one lost reference per two emits)."""
    if true_references_lost(emits) < emits:
        return None
    return (
        f"PySide6 {PySide6.__version__} loses a reference to True on every signal it emits: this session "
        "will abort after a while (Fatal Python error: bool_dealloc). Save often, and install another "
        "version: pip install 'PySide6-Essentials!=6.12.0'."
    )
