"""Rows that carry our own objects (image work, prepared questions, outcomes) through Ray Data.

Why pickled bytes in one column: these are frozen dataclasses holding numpy frames, boxes and
provenance, not Arrow types; one ``item`` column of bytes crosses every stage unchanged and
comes back as the very object, where Ray's own fallback for Python objects varies by stage.
"""

from __future__ import annotations

import pickle
from typing import Any

COLUMN = "item"


def pack(obj: object) -> dict[str, bytes]:
    return {COLUMN: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)}


def unpack(row: dict[str, Any]) -> Any:
    return pickle.loads(row[COLUMN])  # our own rows, written by this run's tasks
