"""Crash-safe file writes and damage-safe reads shared by every store and every reader of a file
ClinLens wrote: JSON documents (annotations, presets, settings, recent files, knowledge bases, model
configs, PACS servers, conversations) through ``read_json``, append-only logs (pre-annotation run
logs, evaluation predictions) through ``read_jsonl``."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
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


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically (see write_json_atomic); line endings are written as given."""
    write_bytes_atomic(path, text.encode("utf-8"))


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


@dataclass(frozen=True)
class JsonLines:
    """What ``read_jsonl`` recovered from an append-only log: every readable record, and why
    each other line was left out (one sentence per line, naming its number)."""

    records: list[Any]
    problems: list[str]

    def damage(self, path: str | os.PathLike[str]) -> str | None:
        """One sentence for the user about the skipped lines, or None when every line was read."""
        if not self.problems:
            return None
        more = f" and {len(self.problems) - 1} more damaged line(s)" if len(self.problems) > 1 else ""
        return (
            f"{Path(path).name} is damaged ({self.problems[0]}{more}); "
            f"the {len(self.records)} readable record(s) are used"
        )


def _decode_line(raw: bytes) -> tuple[Any, str | None]:
    """One line's JSON value, or why it is not one (the reasons ``read_json`` gives, per line)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:  # a write cut inside a character, perhaps with a record glued after it
        try:
            rest = raw[err.end :].decode("utf-8")
        except UnicodeDecodeError:
            return None, f"not UTF-8 text (bad byte at column {err.start + 1})"
        return _glued_tail(rest, 0), f"not UTF-8 text (bad byte at column {err.start + 1})"
    try:
        value = json.loads(text, parse_constant=_reject_constant)
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")  # what we read, we can write back
    except json.JSONDecodeError as err:
        return _glued_tail(text, 1), f"not valid JSON (column {err.colno}: {err.msg})"
    except (ValueError, RecursionError) as err:
        return None, f"not usable JSON ({err.__class__.__name__})"
    return value, None


def _glued_tail(text: str, first: int) -> Any:
    """The complete object that ends a line whose start was cut off (a write torn by a crash,
    then a record appended straight after it by an older ClinLens), or None.

    The leftmost ``{`` from which one whole JSON object runs to the end of the line is the start
    of the glued record: anything left of it is the torn one.
    """
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    stripped = text.rstrip()
    start = stripped.find("{", first)
    while start != -1:
        try:
            value, end = decoder.raw_decode(stripped, start)
        except (ValueError, RecursionError):
            value, end = None, -1
        if end == len(stripped) and isinstance(value, dict):
            return value
        start = stripped.find("{", start + 1)
    return None


def read_jsonl(path: str | os.PathLike[str]) -> JsonLines:
    """The records of a JSON-lines log ClinLens appends to (run logs, predictions).

    Why not ``read_json`` per line: a log is written while work happens, so a crash can leave a
    last line cut off, and a disk or an editor can damage one in the middle. Neither may cost the
    records around it, nor crash the reader: every damaged line is skipped and reported by its
    number (bad UTF-8 included), a record glued after a torn one is recovered, and a missing
    file is an empty log. Only a file the system will not let us read raises ``JsonFileError``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return JsonLines([], [])
    except OSError as err:
        raise JsonFileError(path, f"cannot be read ({err.strerror or err})", unreadable=True) from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    lines = raw.split(b"\n")
    torn = lines.pop()  # after the last newline: empty, or a line whose write never finished
    records, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        value, problem = _decode_line(line)
        if problem is not None:
            recovered = " (the record glued after it was recovered)" if value is not None else ""
            problems.append(f"line {number} is {problem}{recovered}")
        if value is not None:
            records.append(value)
    if torn.strip():
        problems.append(f"line {len(lines) + 1} is cut off (its write never finished)")
    return JsonLines(records, problems)


def append_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """Append one line per record and fsync, so an interrupted run keeps every finished record.

    Why the newline check: when the last write was cut off (a crash, a full disk), the file
    does not end with a newline, and a record appended straight after it would be glued to the
    torn line and lost with it. A newline is written first, so the new record stands alone.
    """
    payload = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records).encode("utf-8")
    if not payload:
        return
    path = Path(path)
    with path.open("a+b") as handle:
        if handle.seek(0, os.SEEK_END) > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                payload = b"\n" + payload
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def rewrite_jsonl(path: str | os.PathLike[str], lines: JsonLines) -> Path:
    """Keep a damaged log aside (``quarantine``) and write its readable records back in its place.

    Why: a damaged line would otherwise be reported on every later read; the original stays
    beside it for anyone who wants to look at what was lost. Returns where the original is.
    """
    kept = quarantine(path)
    payload = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in lines.records)
    write_bytes_atomic(path, payload.encode("utf-8"))
    return kept
