"""Window presets as data: built-ins in resources/presets.json, user presets in the config dir.

Sources disagree on preset values (anchors A.3), so they are data a site can edit, not code.
User presets live in ``engine.paths.config_dir()/presets.json`` (the platformdirs user config
folder; CLINLENS_CONFIG_DIR overrides it for tests and portable installs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.files import write_json_atomic
from engine.paths import config_dir, resources_dir

from .frame import Window

BUILTIN_PRESETS_PATH = resources_dir() / "presets.json"
USER_PRESETS_FILE = "presets.json"


@dataclass(frozen=True)
class Preset:
    name: str
    center: float
    width: float
    key: str | None  # "1".."9" shortcut
    user: bool = False

    def to_window(self) -> Window:
        return Window(float(self.center), float(self.width), "LINEAR", self.name)


def user_presets_path() -> Path:
    return config_dir() / USER_PRESETS_FILE


def load_presets() -> list[Preset]:
    """Built-in presets, then user presets. A user preset replaces a built-in of the same
    name (in its place) and takes over its shortcut key from any other preset."""
    presets = _read(BUILTIN_PRESETS_PATH, user=False)
    for preset in _read(user_presets_path(), user=True) if user_presets_path().exists() else []:
        if preset.key is not None:
            presets = [Preset(p.name, p.center, p.width, None, p.user) if p.key == preset.key else p for p in presets]
        names = [p.name.casefold() for p in presets]
        if preset.name.casefold() in names:
            presets[names.index(preset.name.casefold())] = preset
        else:
            presets.append(preset)
    return presets


def save_user_preset(preset: Preset) -> None:
    """Add or replace (by name) a user preset; written atomically so a crash keeps the old file."""
    path = user_presets_path()
    existing = _read(path, user=True) if path.exists() else []
    kept = [p for p in existing if p.name.casefold() != preset.name.casefold()]
    kept.append(Preset(preset.name, float(preset.center), float(preset.width), preset.key, True))
    write_json_atomic(path, {"version": 1, "presets": [_as_dict(p) for p in kept]})


def find_preset(name_or_key: str) -> Preset | None:
    """A preset by name (case-insensitive) or by its shortcut key."""
    wanted = name_or_key.strip().casefold()
    for preset in load_presets():
        if preset.name.casefold() == wanted or (preset.key is not None and preset.key == wanted):
            return preset
    return None


def _read(path: Path, *, user: bool) -> list[Preset]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [
            Preset(str(p["name"]), float(p["center"]), float(p["width"]), _key(p.get("key")), user)
            for p in data["presets"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"the presets file {path} is not valid: {exc}") from exc


def _key(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _as_dict(preset: Preset) -> dict[str, object]:
    return {"name": preset.name, "center": preset.center, "width": preset.width, "key": preset.key}
