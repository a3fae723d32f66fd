"""The File > Open Recent list, kept in the user's config folder as JSON."""

from __future__ import annotations

from pathlib import Path

from engine.files import JsonFileError, load_store, read_json, write_json_atomic
from engine.paths import config_dir

MAX_RECENT = 10


def _store() -> Path:
    return config_dir() / "recent.json"


def _read(path: Path) -> list[str]:
    items = read_json(path)  # JsonFileError: damaged
    if not isinstance(items, list):
        raise JsonFileError(path, "not a list of paths")
    return [item for item in items if isinstance(item, str)][:MAX_RECENT]


def load_recent() -> list[str]:
    """The remembered paths; a damaged list is moved aside (recent.json.damaged-…) and starts empty."""
    return load_store(_store(), _read, list, JsonFileError).value


def remember(paths: list[str]) -> list[str]:
    """Put ``paths`` first (most recent first, no duplicates) and return the new list."""
    recent = [str(Path(p).resolve()) for p in paths]
    recent += [p for p in load_recent() if p not in recent]
    recent = recent[:MAX_RECENT]
    write_json_atomic(_store(), recent)
    return recent
