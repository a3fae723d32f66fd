"""Window presets as data: built-ins in resources/presets.json, user presets in the config dir.

Sources disagree on preset values (anchors A.3), so they are data a site can edit, not code.
User presets live in ``engine.paths.config_dir()/presets.json`` (the platformdirs user config
folder; CLINLENS_CONFIG_DIR overrides it for tests and portable installs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.files import JsonFileError, Loaded, load_store, read_json, write_json_atomic
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


class PresetError(ValueError):
    """A presets file that cannot be used; ``str(err)`` names the file and the reason."""


def builtin_presets() -> list[Preset]:
    """The presets shipped in resources/presets.json (``PresetError`` if the install is damaged)."""
    return _read(BUILTIN_PRESETS_PATH, user=False)


def read_user_presets() -> Loaded[list[Preset]]:
    """The user's presets. A damaged file gives none and is moved aside to
    ``presets.json.damaged-<UTC time>`` so that saving a preset never overwrites it."""
    return load_store(user_presets_path(), lambda path: _read(path, user=True), list, PresetError)


def read_presets() -> Loaded[list[Preset]]:
    """Built-in presets, then user presets, with what happened to a damaged user file.

    A user preset replaces a built-in of the same name (in its place) and takes over its
    shortcut key from any other preset.
    """
    presets = builtin_presets()
    user = read_user_presets()
    for preset in user.value:
        if preset.key is not None:
            presets = [Preset(p.name, p.center, p.width, None, p.user) if p.key == preset.key else p for p in presets]
        names = [p.name.casefold() for p in presets]
        if preset.name.casefold() in names:
            presets[names.index(preset.name.casefold())] = preset
        else:
            presets.append(preset)
    return Loaded(presets, user.problem, user.kept_as)


def load_presets() -> list[Preset]:
    """The presets to offer (see ``read_presets``; a damaged user file is still moved aside)."""
    return read_presets().value


def save_user_preset(preset: Preset) -> None:
    """Add or replace (by name) a user preset; written atomically so a crash keeps the old file."""
    kept = [p for p in read_user_presets().value if p.name.casefold() != preset.name.casefold()]
    kept.append(Preset(preset.name, float(preset.center), float(preset.width), preset.key, True))
    write_json_atomic(user_presets_path(), {"version": 1, "presets": [_as_dict(p) for p in kept]})


def find_preset(name_or_key: str) -> Preset | None:
    """A preset by name (case-insensitive) or by its shortcut key."""
    wanted = name_or_key.strip().casefold()
    for preset in load_presets():
        if preset.name.casefold() == wanted or (preset.key is not None and preset.key == wanted):
            return preset
    return None


SHORTCUT_KEYS = tuple("123456789")


def _read(path: Path, *, user: bool) -> list[Preset]:
    """Read and validate one presets file: every problem is a ``PresetError`` naming its place."""
    try:
        data = read_json(path)
    except JsonFileError as err:
        raise PresetError(f"the presets file {err}") from None
    where = f"the presets file {path}"
    if not isinstance(data, dict) or not isinstance(data.get("presets"), list):
        raise PresetError(f'{where}: expected an object with a "presets" list')
    presets, names = [], set()
    for i, item in enumerate(data["presets"]):
        at = f"{where}: presets[{i}]"
        if not isinstance(item, dict):
            raise PresetError(f"{at}: expected an object with name, center, width")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise PresetError(f"{at}.name: expected non-empty text")
        if name.strip().casefold() in names:
            raise PresetError(f"{at}: the name {name.strip()!r} appears twice")
        names.add(name.strip().casefold())
        center, width = (_number(item.get(k), f"{at}.{k}") for k in ("center", "width"))
        if width <= 0:
            raise PresetError(f"{at}.width: a window width must be positive, got {width:g}")
        presets.append(Preset(name.strip(), center, width, _key(item.get("key"), f"{at}.key"), user))
    return presets


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1e7 <= value <= 1e7:
        raise PresetError(f"{where}: expected a number of HU between -10^7 and 10^7, got {json.dumps(value)[:40]}")
    return float(value)


def _key(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    key = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if key not in SHORTCUT_KEYS:
        raise PresetError(f"{where}: a shortcut key must be one of 1-9, got {json.dumps(value)[:40]}")
    return key


def _as_dict(preset: Preset) -> dict[str, object]:
    return {"name": preset.name, "center": preset.center, "width": preset.width, "key": preset.key}
