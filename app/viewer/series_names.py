"""How an open image set is named in the image list: what it is, where it is, where it came from.

The stack's title is the series description (or modality, series number and file name); a series
retrieved from a PACS carries its server's name, so it never looks like a second local "CT 1".
The tooltip holds what tells two similar series apart: path, Series Instance UID, frames, origin.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListWidgetItem

from engine.imaging import ImageStack

ORIGIN_PREFIX = "⇩ "  # marks a series retrieved from a PACS
ORIGIN_ROLE = Qt.ItemDataRole.UserRole + 1  # the list item's PACS server name (None: local files)
DISAGREE_PREFIX = "≠ "  # a second opinion: the two models disagree on this image (reviewed first)


def item_text(stack: ImageStack, origin: str | None = None, reviewed: bool = False, disagree: bool = False) -> str:
    text = stack.title + (f" — {origin}" if origin else "")
    flags = ("✓ " if reviewed else "") + (DISAGREE_PREFIX if disagree else "")
    return flags + (ORIGIN_PREFIX if origin else "") + text


def item_tooltip(stack: ImageStack, origin: str | None = None) -> str:
    header = stack.header(0) if stack.kind == "dicom" else None
    lines = [stack.title]
    if header is not None:
        facts = [str(header.get(k) or "").strip() for k in ("Modality", "SeriesNumber")]
        if any(facts):
            lines.append(f"Modality {facts[0] or '?'}, series {facts[1] or '?'}")
        uid = str(header.get("SeriesInstanceUID") or "")
        if uid:
            lines.append(f"Series UID {uid}")
    lines.append(f"{stack.n_frames} frame(s), {stack.columns} × {stack.rows} px")
    lines.append(f"From PACS: {origin}" if origin else "From this computer")
    lines += list(stack.paths[:3]) + ([f"… and {len(stack.paths) - 3} more files"] if len(stack.paths) > 3 else [])
    return "\n".join(lines)


def mark_origin(item: QListWidgetItem, stack: ImageStack, origin: str) -> None:
    """Name a list item as retrieved from the PACS server ``origin`` (kept through later renames)."""
    item.setData(ORIGIN_ROLE, origin)
    item.setText(item_text(stack, origin))
    item.setToolTip(item_tooltip(stack, origin))
