"""Decode compressed pixel data in a small pool of child processes, so a native crash ends one decode.

Compressed and deflated DICOM pixel data and PNG/JPEG/TIFF pixels (Pillow) are decoded here.

Decoder libraries are C, C++ and Rust code fed with bytes from the archive. A damaged JPEG 2000
stream can make python-gdcm throw a C++ exception that ends in ``std::terminate`` (SIGABRT), which
would take the whole viewer down with every unsaved edit. Here each decode runs in a child
process; the caller blocks on a pipe with a deadline:

- the child answers: the array (or the child's clean ImageLoadError) comes back;
- the child dies (segfault, abort): the caller gets an ImageLoadError naming the file and the
  decoder, and the next request starts a fresh child;
- the deadline passes: the child is killed and the caller gets an ImageLoadError saying so;
- the answer cannot cross the pipe (a result that does not pickle or unpickle, no memory to copy
  it): the caller gets an ImageLoadError saying that, not that the pixel data is damaged.

The pool owns no thread: a call runs on the caller's thread (the viewer's frame loader, a CLI),
so nothing is left running when the pool shuts down. Children are started with "spawn", never
forked from a process that runs Qt threads.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from importlib import import_module
from multiprocessing.connection import Connection
from typing import Any

from .errors import DecodeCancelled, ImageLoadError
from .guard import is_recoverable, reason

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_WORKERS = 2  # the frame on screen plus one neighbour being prefetched
STARTUP_TIMEOUT_S = 120.0  # starting Python and importing the decoders; not counted in the time limit
_SPAWN = multiprocessing.get_context("spawn")


class _Child:
    """One decoder process and the parent's end of its pipe."""

    def __init__(self, setup: str | None) -> None:
        self.conn, child_end = _SPAWN.Pipe(duplex=True)
        self.process = _SPAWN.Process(target=_child_main, args=(child_end, setup), name="clinlens-decoder", daemon=True)
        self.process.start()
        child_end.close()
        self._lock = threading.Lock()
        self._exit_code: int | None = None
        self._stopped = False
        self.ready = False

    def wait_ready(self) -> bool:
        """Wait for the child's "ready" (its imports done), so the time limit measures decoding only."""
        if not self.ready:
            try:
                self.ready = self.conn.poll(STARTUP_TIMEOUT_S) and self.conn.recv() == "ready"
            except (EOFError, OSError):
                self.ready = False
        return self.ready

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, *, kill: bool) -> int | None:
        """End the process (kill: at once; else ask it to return) and reap it; its exit code.

        Idempotent: a shutdown and the caller that sees the pipe break may both stop a child.
        """
        with self._lock:
            if self._stopped:
                return self._exit_code
            self._stopped = True
            try:
                if kill:
                    self.process.kill()
                else:
                    self.conn.send(None)
            except (OSError, ValueError):
                pass
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            self._exit_code = self.process.exitcode
            self.conn.close()
            self.process.close()
            return self._exit_code


class DecoderPool:
    """At most `workers` decoder processes, started on demand and restarted after a death."""

    def __init__(
        self, workers: int = DEFAULT_WORKERS, timeout_s: float = DEFAULT_TIMEOUT_S, child_setup: str | None = None
    ) -> None:
        """`child_setup` ("module:function") runs in each child before its first decode (tests
        use it to install a decoder that aborts)."""
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.child_setup = child_setup
        self.restarts = 0  # children that died or were killed, for diagnostics and tests
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._closed = False
        self._cond = threading.Condition()

    def run(self, path: str, decoder: str, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` in a child; ImageLoadError if it fails, dies or runs past the deadline.

        `func` must be a module-level function (it is sent by reference); `decoder` names the
        decoding library in messages ("JPEG 2000 (pylibjpeg, gdcm)").
        """
        if not _can_start_processes():
            return func(*args)
        name = os.path.basename(path)
        child = self._acquire(path)
        healthy = False
        try:
            if not child.wait_ready():
                code = self._retire(child, kill=True)
                child = None
                raise ImageLoadError(
                    path, f"Decoding {name} failed: the decoder process did not start ({_exit_text(code)})."
                )
            try:
                child.conn.send((func, args))
                answered = child.conn.poll(self.timeout_s)
            except (OSError, ValueError):
                answered = True  # the pipe broke: the child died before reading the request
            if not answered:
                self._retire(child, kill=True)
                child = None
                raise ImageLoadError(
                    path,
                    f"{name} took longer than {self.timeout_s:g} s to decode with the {decoder} decoder; "
                    f"the decode was abandoned (the time limit is in Settings).",
                )
            try:
                status, payload = child.conn.recv()
            except (EOFError, OSError):
                code = self._retire(child, kill=False)
                child = None
                if self._closed:
                    raise DecodeCancelled(path, f"Decoding {name} was cancelled: the viewer is closing.") from None
                raise ImageLoadError(
                    path,
                    f"The {decoder} decoder crashed on {name} ({_exit_text(code)}); this file's pixel data "
                    f"is damaged. The decoder was restarted; other images are not affected.",
                ) from None
            except BaseException as exc:  # the answer arrived but cannot be unpickled here
                if not is_recoverable(exc):
                    raise
                self._retire(child, kill=True)
                child = None
                raise ImageLoadError(path, _unsent_text(name, decoder, "could not be received", reason(exc))) from exc
            healthy = True
            if status == "error":
                raise ImageLoadError(path, payload)
            if status == "unsent":
                raise ImageLoadError(path, _unsent_text(name, decoder, "could not be sent back", payload))
            return payload
        finally:
            if child is not None:
                self._release(child, healthy)

    def shutdown(self) -> None:
        """Stop every child; callers blocked on a decode get an ImageLoadError at once."""
        with self._cond:
            self._closed = True
            children = self._idle + list(self._busy)
            self._idle = []
            self._cond.notify_all()
        for child in children:
            child.stop(kill=child in self._busy)

    def warm(self) -> None:
        """Start one child now, so the first compressed frame does not wait for Python to start."""
        with self._cond:
            if _can_start_processes() and not self._closed and not self._idle and not self._busy:
                self._idle.append(_Child(self.child_setup))

    @property
    def n_processes(self) -> int:
        with self._cond:
            return len(self._idle) + len(self._busy)

    def _acquire(self, path: str) -> _Child:
        with self._cond:
            while True:
                if self._closed:
                    raise DecodeCancelled(
                        path, f"Decoding {os.path.basename(path)} was cancelled: the viewer is closing."
                    )
                while self._idle:
                    child = self._idle.pop()
                    if child.alive():
                        self._busy.add(child)
                        return child
                    self.restarts += 1
                    child.stop(kill=True)
                if len(self._busy) < self.workers:
                    child = _Child(self.child_setup)
                    self._busy.add(child)
                    return child
                self._cond.wait()

    def _release(self, child: _Child, healthy: bool) -> None:
        with self._cond:
            self._busy.discard(child)
            if healthy and not self._closed:
                self._idle.append(child)
                self._cond.notify()
                return
            self._cond.notify()
        child.stop(kill=True)

    def _retire(self, child: _Child, *, kill: bool) -> int | None:
        with self._cond:
            self._busy.discard(child)
            if not self._closed:
                self.restarts += 1
            self._cond.notify()
        return child.stop(kill=kill)


def _can_start_processes() -> bool:
    """False in a daemonic process (a DataLoader worker), which Python forbids to start any:
    there decodes run in that process, and a crash ends the worker, which its owner reports."""
    return not multiprocessing.current_process().daemon


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"the decoder process was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"the decoder process was killed by signal {-code}"
    return f"the decoder process exited with code {code}"


def _unsent_text(name: str, decoder: str, what: str, why: str) -> str:
    """The error for a decode whose result did not cross the pipe: the file is not to blame."""
    return (
        f"The {decoder} decoder decoded {name}, but its result {what} from the decoder process ({why}); "
        "this is not damage in the file."
    )


def _send_answer(conn: Connection, answer: tuple[str, Any]) -> bool:
    """Send an answer; when it cannot be sent (a result that will not pickle, no memory to copy
    it), send why instead, so the caller does not read the child's exit as damaged pixel data.
    False when the pipe itself is gone."""
    try:
        conn.send(answer)
    except (EOFError, OSError):
        return False
    except BaseException as exc:
        if not is_recoverable(exc):
            raise
        try:
            conn.send(("unsent", reason(exc)))
        except (EOFError, OSError):
            return False
    return True


def _child_main(conn: Connection, setup: str | None) -> None:
    """Serve (func, args) requests until told to stop; failures go back as sentences."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the app's to handle
    if setup:
        module, _, function = setup.partition(":")
        getattr(import_module(module), function)()
    import_module(__package__ + ".decoders")  # pydicom, numpy and the plugins, before the clock starts
    import_module(__package__ + ".raster")  # Pillow
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        func, args = request
        try:
            answer = ("ok", func(*args))
        except ImageLoadError as exc:
            answer = ("error", str(exc))
        except BaseException as exc:
            if not is_recoverable(exc):
                raise
            answer = ("error", f"decoding failed: {reason(exc)}.")
        if not _send_answer(conn, answer):
            return


# ----- the process-wide pool
_pool: DecoderPool | None = None
_pool_pid = 0
_pool_lock = threading.Lock()
_timeout_s = DEFAULT_TIMEOUT_S
_child_setup: str | None = None


def decoder_pool() -> DecoderPool:
    """The pool of this process (a forked or spawned process gets its own)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid() or _pool._closed:
            _pool = DecoderPool(timeout_s=_timeout_s, child_setup=_child_setup)
            _pool_pid = os.getpid()
        return _pool


def set_decode_timeout(seconds: float) -> None:
    """The time limit for one compressed frame (Settings > Decode time limit)."""
    global _timeout_s
    _timeout_s = float(seconds)
    with _pool_lock:
        if _pool is not None:
            _pool.timeout_s = _timeout_s


def configure_decoder_pool(*, child_setup: str | None) -> None:
    """Run `child_setup` in every new decoder process (test hook); restarts the pool."""
    global _child_setup
    _child_setup = child_setup
    shutdown_decoder_pool()


def shutdown_decoder_pool() -> None:
    """Stop the process-wide pool's children (the next decode starts new ones)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None and _pool_pid == os.getpid():
        pool.shutdown()


atexit.register(shutdown_decoder_pool)
