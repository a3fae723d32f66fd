"""Crash-safe file writes shared by every store (annotations, presets, settings, recent files)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


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
    with contextlib.suppress(OSError, AttributeError):   # persist the rename (POSIX only)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
