"""View > Corner overlay fields: one checkable item per line, and the on/off key, remembered.

The choices apply to every view that follows them (the single view and each plane pane), so a
reader sets them once; every change is written at once (a crash later does not lose it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from app.viewer.corner_fields import FIELDS, CornerChoices, load_choices, save_choices


class CornerChoicesMenu(QObject):
    """Owns the reader's corner choices: the toggle action's state and the fields submenu."""

    fields_changed = Signal(frozenset)

    def __init__(self, toggle: QAction, menu: QMenu, parent: QObject | None = None) -> None:
        super().__init__(parent)
        loaded = load_choices()
        self.choices, self.problem, self.kept_as = loaded.value, loaded.problem, loaded.kept_as
        self.toggle = toggle
        toggle.setChecked(self.choices.shown)
        toggle.toggled.connect(self._shown_toggled)
        self.menu = menu.addMenu("Corner overlay &fields")
        self.field_actions: dict[str, QAction] = {}
        for item in FIELDS:
            action = self.menu.addAction(item.text)
            action.setCheckable(True)
            action.setChecked(item.id in self.choices.fields)
            action.toggled.connect(lambda on, field_id=item.id: self.set_field(field_id, on))
            self.field_actions[item.id] = action

    @property
    def fields(self) -> frozenset[str]:
        return self.choices.fields

    def follow(self, slot: Callable[[frozenset], None]) -> None:
        """Give ``slot`` the fields now and on every change."""
        slot(self.fields)
        self.fields_changed.connect(slot)

    def set_field(self, field_id: str, on: bool) -> None:
        if (field_id in self.choices.fields) != on:
            self._store(self.choices.with_field(field_id, on))
            self.field_actions[field_id].setChecked(on)  # its toggled finds nothing left to do
            self.fields_changed.emit(self.fields)

    def _shown_toggled(self, on: bool) -> None:
        self._store(CornerChoices(on, self.choices.fields))

    def _store(self, choices: CornerChoices) -> None:
        self.choices = choices
        with contextlib.suppress(OSError):  # a full disk keeps the choice for this session only
            save_choices(choices)
