"""The File > Open Recent list, kept in the user's config folder as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from engine.files import write_json_atomic
from engine.paths import config_dir

MAX_RECENT = 10


def _store() -> Path:
    return config_dir() / "recent.json"


def load_recent() -> list[str]:
    try:
        items = json.loads(_store().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(item) for item in items if isinstance(item, str)][:MAX_RECENT]


def remember(paths: list[str]) -> list[str]:
    """Put ``paths`` first (most recent first, no duplicates) and return the new list."""
    recent = [str(Path(p).resolve()) for p in paths]
    recent += [p for p in load_recent() if p not in recent]
    recent = recent[:MAX_RECENT]
    write_json_atomic(_store(), recent)
    return recent
