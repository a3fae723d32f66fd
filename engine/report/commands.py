"""Report edits as undoable commands of the annotation document (one history per image).

A report edit is recorded in the history of the image it was made on (the one shown), so Ctrl+Z
there takes back the last report edit as it takes back the last box. Every edit swaps a whole
``Report`` snapshot, which keeps undo exact; typing in one section merges into one step per
section (``merge_key``), as a drag of a box is one step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.annotations.undo import Command
from engine.report.model import Report

if TYPE_CHECKING:
    from engine.annotations.document import AnnotationDocument


class PutReport(Command):
    """Store a new value of one report (``after``), or remove it (``after`` None: discard a draft)."""

    def __init__(
        self, image_id: str, report_id: str, after: Report | None, text: str, merge_key: str | None = None
    ) -> None:
        super().__init__(image_id, text)
        self.report_id = report_id
        self.merge_key = merge_key
        self._after = after
        self._before: Report | None = None
        self._planned = False

    def redo(self, doc: AnnotationDocument) -> bool:
        if not self._planned:
            self._before = doc.find_report(self.report_id)
            if self._before == self._after:
                return False
            self._planned = True
        doc.apply_report(self.report_id, self._after, self.image_id)
        return True

    def undo(self, doc: AnnotationDocument) -> None:
        doc.apply_report(self.report_id, self._before, self.image_id)

    def merge(self, newer: Command) -> bool:
        """Typing in the same section of the same report is one undo step."""
        if (
            isinstance(newer, PutReport)
            and self.merge_key is not None
            and newer.merge_key == self.merge_key
            and newer.report_id == self.report_id
        ):
            self._after = newer._after
            return True
        return False
