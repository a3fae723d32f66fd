"""Crash-safe file writes and damage-safe JSON reads shared by every store and every JSON reader
(annotations, presets, settings, recent files, knowledge bases, model configs)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON so that ``path`` holds either the old or the new content, never a mix.

    Serialise first (a bad value fails before the disk is touched), write a temporary file in
    the same folder, fsync it, then os.replace it over the target. On any failure the temporary
    file is removed and the previous file is left as it was.
    """
    write_bytes_atomic(path, json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], payload: bytes) -> None:
    """Write ``payload`` so that ``path`` holds either the old or the new content (see write_json_atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError, AttributeError):  # persist the rename (POSIX only)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class JsonFileError(ValueError):
    """A JSON file that cannot be used; ``str(err)`` names the file and says why in words.

    ``unreadable`` tells a file the system would not let us read (missing, a folder, no
    permission) from one whose content is damaged: only damaged files are moved aside.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, *, unreadable: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason
        self.unreadable = unreadable


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: str | os.PathLike[str]) -> Any:
    """The decoded content of a JSON file; any problem becomes one ``JsonFileError``.

    Why one reader for every store: each failure Python's json module can produce (bad UTF-8,
    bad syntax, nesting deep enough to exhaust the stack, integers too long to convert, NaN and
    Infinity, lone surrogate escapes that could never be written back as UTF-8) must reach the
    user as one sentence naming the file, not as a traceback from wherever the data is used. A
    UTF-8 byte order mark (Windows editors add one) is accepted.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise JsonFileError(path, f"cannot be read ({err.strerror or err})", unreadable=True) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise JsonFileError(path, f"not UTF-8 text (bad byte at offset {err.start})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise JsonFileError(path, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise JsonFileError(path, "not usable JSON (nested too deeply)") from None
    except ValueError as err:  # NaN/Infinity, or an integer longer than Python converts
        raise JsonFileError(path, f"not usable JSON ({err})") from None
    try:  # the check write_json_atomic makes: what we read, we can write back
        json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise JsonFileError(path, "not usable JSON (text with an unpaired surrogate escape)") from None
    except ValueError:  # 1e400 parses as infinity
        raise JsonFileError(path, "not usable JSON (a number too large to represent)") from None
    except RecursionError:
        raise JsonFileError(path, "not usable JSON (nested too deeply)") from None
    return data


def quarantine(path: str | os.PathLike[str]) -> Path:
    """Move a damaged file aside to ``<name>.damaged-<UTC timestamp>`` and return the new path.

    Every store the app rewrites (sidecars, settings, user presets, recent files) does this
    before it would save over a file it could not read, so no user data is ever lost silently.
    """
    path = Path(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved = path.with_name(f"{path.name}.damaged-{stamp}")
    counter = 1
    while moved.exists():
        counter += 1
        moved = path.with_name(f"{path.name}.damaged-{stamp}-{counter}")
    os.replace(path, moved)
    return moved


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """What ``load_store`` found: the value to use, and what happened to a damaged file."""

    value: T
    problem: str | None = None  # why the file could not be used (a sentence naming it)
    kept_as: Path | None = None  # where the damaged file now is


def load_store(
    path: str | os.PathLike[str],
    load: Callable[[Path], T],
    default: Callable[[], T],
    damaged: type[Exception] | tuple[type[Exception], ...],
) -> Loaded[T]:
    """Read a file the app later rewrites: absent gives ``default()``; damaged is moved aside.

    ``load`` reads and validates the file and raises ``damaged`` for bad content; the file is
    then quarantined and ``default()`` used, with the reason returned for the GUI to show.
    Other exceptions of ``load`` (a file from a newer version) propagate untouched.
    """
    path = Path(path)
    if not path.exists():
        return Loaded(default())
    try:
        return Loaded(load(path))
    except damaged as err:
        try:
            kept = quarantine(path)
        except OSError as move_err:
            return Loaded(default(), f"{err} (it could not be moved aside: {move_err.strerror or move_err})")
        return Loaded(default(), str(err), kept)
