"""The one place where "anything a damaged file can make a library raise" becomes an ImageLoadError.

pydicom, Pillow and the native decoders raise many exception types on hostile bytes
(NotImplementedError for an unknown VR, TypeError for a multi-valued Rows, struct errors...),
and Rust decoders built with pyo3 raise ``pyo3_runtime.PanicException``, which derives from
``BaseException`` so ``except Exception`` misses it. The seams that touch file contents (header
reading, header facts, decoding) run under `guarded`, so the imaging API keeps its contract:
an image or an `ImageLoadError` with the file name and the reason in words. ``KeyboardInterrupt``,
``SystemExit`` and ``GeneratorExit`` are never swallowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ImageLoadError, VolumeError

_NEVER_SWALLOWED = (KeyboardInterrupt, SystemExit, GeneratorExit)
MAX_REASON = 200


@contextmanager
def guarded(path: str, doing: str) -> Iterator[None]:
    """Turn any failure in the block into ImageLoadError("NAME could not be DOING: reason")."""
    try:
        yield
    except ImageLoadError:
        raise
    except _NEVER_SWALLOWED:
        raise
    except BaseException as exc:
        raise ImageLoadError(path, f"{os.path.basename(path)} could not be {doing}: {reason(exc)}.") from exc


def is_recoverable(exc: BaseException) -> bool:
    """True for a failure a file can cause (anything but an interrupt or an exit)."""
    return not isinstance(exc, _NEVER_SWALLOWED)


def reason(exc: BaseException) -> str:
    """One short line about an exception: its message, or its type when it has none."""
    text = " ".join(str(exc).split())
    kind = type(exc).__name__
    if not text:
        text = kind
    elif kind not in ("ValueError", "OSError", "RuntimeError", "Exception"):
        text = f"{text} ({kind})"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


@contextmanager
def guarded_volume(label: str) -> Iterator[None]:
    """Turn any failure in the block into VolumeError("LABEL: ... reason").

    The last resort behind the checked header reads of volume_headers: the MPR view calls the
    geometry on the GUI thread and the CLI prints one sentence, so nothing else may escape.
    ImageLoadError (a frame that would not decode) passes unchanged: it already names its file.
    """
    try:
        yield
    except (ImageLoadError, VolumeError):
        raise
    except _NEVER_SWALLOWED:
        raise
    except BaseException as exc:
        raise VolumeError(f"{label}: the geometry headers could not be read as a volume ({reason(exc)}).") from exc
