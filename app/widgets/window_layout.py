"""The main window's geometry and dock layout, kept between sessions in the user's config folder.

Qt serialises both (``saveGeometry``, ``saveState``) as opaque bytes; they are stored base64 in
``window.json`` beside the other settings, written atomically like them. A missing file means a
first start, where the window opens maximised instead of at a fixed size; a damaged file is
moved aside (as every store is) and counts as a first start.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QByteArray
from PySide6.QtWidgets import QMainWindow

from engine.files import JsonFileError, load_store, read_json, write_json_atomic
from engine.paths import config_dir

LAYOUT_VERSION = 1  # raise when docks or tool bars change so that an old saved state is not applied


@dataclass(frozen=True)
class SavedLayout:
    geometry: bytes
    state: bytes


def _store() -> Path:
    return config_dir() / "window.json"


def _read(path: Path) -> SavedLayout | None:
    data = read_json(path)  # JsonFileError: damaged
    if not isinstance(data, dict) or data.get("version") != LAYOUT_VERSION:
        return None  # an older layout: start as on a first start, it is overwritten on close
    try:
        return SavedLayout(base64.b64decode(data["geometry"]), base64.b64decode(data["state"]))
    except (KeyError, TypeError, binascii.Error):
        raise JsonFileError(path, "not a saved window layout") from None


def load_layout() -> SavedLayout | None:
    """The saved layout, or None on a first start (or after a damaged file was set aside)."""
    return load_store(_store(), _read, lambda: None, JsonFileError).value


def save_layout(window: QMainWindow) -> None:
    geometry = bytes(window.saveGeometry().data())
    state = bytes(window.saveState(LAYOUT_VERSION).data())
    write_json_atomic(
        _store(),
        {
            "version": LAYOUT_VERSION,
            "geometry": base64.b64encode(geometry).decode("ascii"),
            "state": base64.b64encode(state).decode("ascii"),
        },
    )


def restore_layout(window: QMainWindow) -> bool:
    """Apply the saved geometry and dock layout to ``window`` (not yet shown); False on a first start."""
    saved = load_layout()
    if saved is None:
        return False
    restored = window.restoreGeometry(QByteArray(saved.geometry))
    window.restoreState(QByteArray(saved.state), LAYOUT_VERSION)
    return restored
