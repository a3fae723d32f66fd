"""Bind a QAction to its row of the shortcut table (app/widgets/shortcuts.py), by id.

Every binding site goes through here, so a key is written once, in the table, and each bound
action carries its command id (the ``shortcut_id`` property) for the test that compares the
window's actions with the table.
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence

from app.widgets.shortcuts import PRESET_KEYS, shortcut

ID_PROPERTY = "shortcut_id"


def bind(action: QAction, command_id: str) -> QAction:
    """Give ``action`` the keys of ``command_id`` (and its description as status tip, unless it has one)."""
    row = shortcut(command_id)
    action.setShortcuts([QKeySequence(key) for key in row.keys])
    if not action.statusTip():
        action.setStatusTip(row.does)
    action.setProperty(ID_PROPERTY, command_id)
    return action


def bind_preset(action: QAction, key: str | None) -> QAction:
    """A window preset's digit: the preset's data chooses it, the table says which digits exist."""
    if key is not None:
        if key not in PRESET_KEYS:
            raise ValueError(f"a preset key must be one of {', '.join(PRESET_KEYS)}, got {key!r}")
        action.setShortcut(QKeySequence(key))
        action.setProperty(ID_PROPERTY, "window.preset")
    return action
