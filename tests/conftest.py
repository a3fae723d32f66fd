"""Suite-wide guards: an isolated user directory, headless Qt, and no thread left running."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import tqdm

from engine.imaging.decoder_pool import shutdown_decoder_pool

# tqdm's monitor is a process-lifetime daemon thread started by the first progress bar (model
# saving in fixtures); it is not ours to stop, so keep it from starting at all.
tqdm.tqdm.monitor_interval = 0

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Presets, settings and caches written by a test never touch the real user's folders."""
    root = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("CLINLENS_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("CLINLENS_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("CLINLENS_DATA_DIR", str(root / "data"))


@pytest.fixture(autouse=True)
def shared_test_files_stay_untouched(request):
    """pydicom's bundled files are shared by every test: a test that opens one directly and
    annotates it would leave a sidecar that later tests (and runs) open with its annotations."""
    yield
    import pydicom.data

    folder = os.path.dirname(pydicom.data.get_testdata_file("CT_small.dcm"))
    left = sorted(name for name in os.listdir(folder) if name.endswith(".clinlens.json"))
    for name in left:
        os.remove(os.path.join(folder, name))  # clean up, so one offender fails once
    assert not left, f"{request.node.name} wrote {left} beside pydicom's test files: copy the file to tmp_path"


@pytest.fixture(autouse=True)
def no_leaked_python_threads():
    """Fail a test that leaves a Python thread running (a streamer, a loader, a server).

    Threads get a short grace period to finish what the test already asked them to stop. Threads
    Python did not start (a QThread that ran Python code shows up as a ``_DummyThread``) are
    checked by the Qt fixture in tests/app/conftest.py instead.
    """
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not isinstance(t, threading._DummyThread)
    ]
    for thread in leaked:
        thread.join(timeout=5)
    still_running = [t.name for t in leaked if t.is_alive()]
    assert not still_running, f"test left threads running: {still_running}"


@pytest.fixture(autouse=True)
def no_leaked_decoder_processes():
    """Stop the decoder processes a test started (compressed DICOM decodes in child processes)."""
    yield
    shutdown_decoder_pool()


@pytest.fixture(autouse=True)
def python_sigpipe_handling():
    """Every test starts with Python's SIGPIPE handling (ignored: a write to a closed socket raises).

    ``main()`` makes SIGPIPE fatal so that ``main.py info x | head`` ends quietly; a CLI test that
    calls it in-process would otherwise leave that behind, and the next test that writes to a socket
    its peer closed (a PACS that hangs up) would kill the whole pytest process.
    """
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
