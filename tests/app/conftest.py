"""Qt-side guards, in the spirit of napari's conftest: a test must not leave a QThread running."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QThread, QThreadPool


@pytest.fixture(autouse=True)
def no_leaked_qthreads(monkeypatch, qapp):
    started: list[QThread] = []
    original_start = QThread.start

    def recording_start(self, *args, **kwargs):
        started.append(self)
        return original_start(self, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", recording_start)
    yield
    pool = QThreadPool.globalInstance()
    assert pool.waitForDone(5000), "test left QThreadPool jobs running"
    running = [t for t in started if t.isRunning()]
    assert not running, f"test left {len(running)} QThread(s) running; stop and wait() them"
