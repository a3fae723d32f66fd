"""Rows that carry our own objects (image work, prepared questions, outcomes) through Ray Data.

Why pickled bytes in one column: these are frozen dataclasses holding numpy frames, boxes and
provenance, not Arrow types; one ``item`` column of bytes crosses every stage unchanged and
comes back as the very object, where Ray's own fallback for Python objects varies by stage.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import threading
from collections.abc import Iterator
from typing import Any

COLUMN = "item"


def pack(obj: object) -> dict[str, bytes]:
    return {COLUMN: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)}


def unpack(row: dict[str, Any]) -> Any:
    return pickle.loads(row[COLUMN])  # our own rows, written by this run's tasks


class ClusterError(RuntimeError):
    """A Ray task or actor failed for good (after Ray's own retries): what was reported is kept."""


def _first_line(error: BaseException) -> str:
    """The failure's own sentence: the last line of the remote traceback Ray wraps it in."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return re.sub(r"^[\w.]+: ", "", lines[-1]) if lines else type(error).__name__  # without "module.Error: "


@contextlib.contextmanager
def streamed(dataset: Any) -> Iterator[Iterator[Any]]:
    """The dataset's rows, unpacked, as they arrive.

    Leaving early (a cancel, Ctrl-C, an error) closes Ray's iterator, which stops the pipeline. Ray
    Data 2.60 stops the thread that prefetches blocks for the iterator ("Prefetcher") only at the end
    of the data, and the thread itself keeps it from being collected; so the prefetchers this
    iteration started are stopped here, and a stopped run leaves no thread behind.
    """
    import ray.exceptions

    before = set(threading.enumerate())
    rows = iter(dataset.iter_rows())
    try:
        yield (unpack(row) for row in rows)
    except ray.exceptions.RayError as error:
        raise ClusterError(f"The Ray run stopped: {_first_line(error)}") from error
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
        for thread in set(threading.enumerate()) - before:
            owner = getattr(getattr(thread, "_target", None), "__self__", None)
            if thread.name == "Prefetcher" and callable(getattr(owner, "stop", None)):
                owner.stop()
                thread.join(timeout=5)
