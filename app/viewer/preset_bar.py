"""A toolbar with one button per window preset; the preset the window matches is shown checked.

Keys 1–9 and the Window menu apply the same presets through the same callback, so the check
follows whichever way a preset was chosen, and a window dragged away from it unchecks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QToolBar, QWidget

from app.viewer.state import ViewerState
from engine.imaging import Preset, Window


def matches(window: Window | None, preset: Preset) -> bool:
    """Whether ``window`` is ``preset`` (centre and width, up to float noise)."""
    return (
        window is not None
        and math.isclose(window.center, preset.center, abs_tol=1e-6)
        and math.isclose(window.width, preset.width, abs_tol=1e-6)
    )


class PresetBar(QToolBar):
    def __init__(self, state: ViewerState, apply: Callable[[Preset], None], parent: QWidget | None = None) -> None:
        super().__init__("Window presets", parent)
        self.setObjectName("presetBar")
        self.state = state
        self.apply = apply
        self.group = QActionGroup(self)
        self.group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self.preset_actions: list[tuple[Preset, QAction]] = []
        state.display_changed.connect(self.sync)
        state.stack_changed.connect(self.sync)

    def set_presets(self, presets: list[Preset]) -> None:
        """Rebuild the buttons (after a preset was saved). Shortcuts stay on the Window menu's actions."""
        for _preset, action in self.preset_actions:
            self.group.removeAction(action)
            self.removeAction(action)
            action.deleteLater()
        self.preset_actions = []
        for preset in presets:
            action = QAction(preset.name, self)
            action.setCheckable(True)
            key = f", key {preset.key}" if preset.key else ""
            action.setToolTip(f"{preset.name}: C {preset.center:g} / W {preset.width:g}{key}")
            action.triggered.connect(lambda _checked=False, p=preset: self.apply(p))
            self.group.addAction(action)
            self.addAction(action)
            self.preset_actions.append((preset, action))
        self.sync()

    def sync(self) -> None:
        """Check the preset the current window equals, none when it equals none."""
        stack = self.state.stack  # not the frame: it is None for a moment while the next one decodes
        enabled = stack is not None and not stack.is_color
        window = self.state.window if enabled else None
        matched = False
        for preset, action in self.preset_actions:
            action.setEnabled(enabled)
            hit = not matched and matches(window, preset)
            matched = matched or hit
            action.setChecked(hit)
