"""A small undo stack (QUndoStack is Qt, and the engine never imports Qt).

Semantics follow QUndoStack where the GUI relies on them: a pushed command clears the redo
tail; a command may merge into the top one (a drag is one step); the oldest steps fall off past
the limit. The stack only orders commands; the document applies them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.annotations.document import AnnotationDocument

DEFAULT_UNDO_LIMIT = 100


class Command(ABC):
    """One undoable edit of one image.

    ``redo`` is called for the first application too; ``undo`` restores exactly the state
    before it. ``merge`` lets a newer, already applied command fold into this one.
    """

    group: str | None = None
    """Commands of several images that share a group (a pre-annotation run) undo and redo together."""

    def __init__(self, image_id: str, text: str) -> None:
        self.image_id = image_id
        self.text = text

    @abstractmethod
    def redo(self, doc: AnnotationDocument) -> bool:
        """Apply the edit; return False when it changed nothing (then it is not recorded)."""

    @abstractmethod
    def undo(self, doc: AnnotationDocument) -> None:
        """Revert the edit."""

    def merge(self, newer: Command) -> bool:
        """Absorb ``newer`` (already applied) into this command; True when merged."""
        return False


class UndoStack:
    """Commands in order with a cursor: ``commands[:index]`` are done, the rest can be redone."""

    def __init__(self, limit: int = DEFAULT_UNDO_LIMIT) -> None:
        if limit < 1:
            raise ValueError("the undo limit must be at least 1")
        self.limit = limit
        self._commands: list[Command] = []
        self._index = 0

    def push(self, command: Command) -> None:
        """Record an applied command: drop the redo tail, merge into the top or append."""
        del self._commands[self._index :]
        if self._commands and self._commands[-1].merge(command):
            return
        self._commands.append(command)
        overflow = len(self._commands) - self.limit
        if overflow > 0:
            del self._commands[:overflow]
        self._index = len(self._commands)

    def take_undo(self) -> Command | None:
        """Move the cursor back and return the command to revert (None when nothing to undo)."""
        if self._index == 0:
            return None
        self._index -= 1
        return self._commands[self._index]

    def peek_undo(self) -> Command | None:
        """The command ``take_undo`` would return, without moving the cursor."""
        return self._commands[self._index - 1] if self._index else None

    def peek_redo(self) -> Command | None:
        return self._commands[self._index] if self._index < len(self._commands) else None

    def take_redo(self) -> Command | None:
        if self._index == len(self._commands):
            return None
        self._index += 1
        return self._commands[self._index - 1]

    def clear(self) -> None:
        self._commands.clear()
        self._index = 0

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._commands)

    @property
    def undo_text(self) -> str:
        return self._commands[self._index - 1].text if self.can_undo else ""

    @property
    def redo_text(self) -> str:
        return self._commands[self._index].text if self.can_redo else ""

    @property
    def index(self) -> int:
        return self._index

    def __len__(self) -> int:
        return len(self._commands)
