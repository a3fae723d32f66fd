"""Every keyboard shortcut and mouse control of the main window, as plain data.

The code binds its actions from this table by id (``keys("edit.undo")``), and Help > Keyboard
shortcuts and the docs page (docs/hooks.py) are generated from it, so what a user reads is what
the window does. There is no Qt here on purpose: the docs build reads the table without a GUI.

Keys are written in Qt's portable text (``QKeySequence("Ctrl+Shift+Z")``). Rows in the
``mouse`` context are gestures the canvas handles itself; they are listed, not bound.
"""

from __future__ import annotations

from dataclasses import dataclass

PAGE_FRAMES = 10  # Page Up / Page Down step this many frames

WINDOW = "window"  # a QAction of the main window: works wherever the keyboard is in the window
MOUSE = "mouse"  # a gesture on the image, handled by the canvas and the plane views


@dataclass(frozen=True)
class Shortcut:
    """One command: how it is found (menu text), the keys that run it, and what it does."""

    id: str
    text: str  # menu or tool-bar text, with its & mnemonic
    keys: tuple[str, ...]  # Qt portable text; the first is the one a menu shows
    does: str  # one line for the status tip, the dialog and the docs
    group: str
    context: str = WINDOW

    @property
    def title(self) -> str:
        """The menu text without its mnemonic ampersand and trailing ellipsis."""
        return self.text.replace("&&", "\0").replace("&", "").replace("\0", "&").removesuffix("…")


def _s(id: str, text: str, keys: str | tuple[str, ...], does: str, group: str, context: str = WINDOW) -> Shortcut:
    return Shortcut(id, text, (keys,) if isinstance(keys, str) else keys, does, group, context)


PRESET_KEYS = tuple(str(n) for n in range(1, 10))

SHORTCUTS: tuple[Shortcut, ...] = (
    # Files
    _s("file.open", "&Open files…", "Ctrl+O", "Open image files (DICOM, PNG, JPEG, TIFF) or a project file", "Files"),
    _s(
        "file.open_folder",
        "Open &folder…",
        "Ctrl+Shift+O",
        "Open every image in a folder, searched recursively",
        "Files",
    ),
    _s("file.open_pacs", "Open from &PACS…", "Ctrl+Shift+P", "Search a PACS and open a series from it", "Files"),
    _s(
        "file.save",
        "&Save annotations now",
        "Ctrl+S",
        "Save the annotations now (they also save by themselves)",
        "Files",
    ),
    _s(
        "file.save_as",
        "Save annotations &as project file…",
        "Ctrl+Shift+S",
        "Save the images and their annotations as one project file",
        "Files",
    ),
    _s("file.quit", "&Quit", "Ctrl+Q", "Save the annotations and close ClinLens", "Files"),
    # Tools
    _s("tool.pan", "Pan", "H", "Left-drag pans the image", "Tools"),
    _s(
        "tool.select", "Select", "V", "Click, move and resize annotations; drag on empty space selects several", "Tools"
    ),
    _s("tool.box", "Box", "B", "Drag a box with the current label", "Tools"),
    _s("tool.segment", "Segment", "S", "Drag a box: the segmentation model turns it into a mask", "Tools"),
    _s(
        "tool.brush",
        "Brush",
        "Shift+B",
        "Paint into the selected mask (a new mask when none is selected); one stroke is one undo step",
        "Tools",
    ),
    _s("tool.eraser", "Eraser", "Shift+E", "Erase pixels of the selected mask; one stroke is one undo step", "Tools"),
    _s("brush.smaller", "Smaller brush", "[", "Make the brush and eraser smaller", "Tools"),
    _s("brush.larger", "Larger brush", "]", "Make the brush and eraser larger", "Tools"),
    _s("measure.length", "Length", "L", "Measure a distance (drag)", "Tools"),
    _s("measure.angle", "Angle", "Shift+A", "Measure an angle (three clicks: arm, vertex, arm)", "Tools"),
    _s("measure.ellipse", "Ellipse ROI", "E", "Ellipse region: area, mean ± SD, min and max (drag)", "Tools"),
    _s(
        "measure.rectangle",
        "Rectangle ROI",
        "Shift+R",
        "Rectangle region: area, mean ± SD, min and max (drag)",
        "Tools",
    ),
    # Annotations and review
    _s("edit.undo", "&Undo", "Ctrl+Z", "Undo the last edit of this image (the menu says which)", "Annotations"),
    _s("edit.redo", "&Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo the edit just undone", "Annotations"),
    _s("edit.delete", "&Delete selected boxes", ("Del", "Backspace"), "Delete the selected annotations", "Annotations"),
    _s(
        "edit.select_all",
        "Select &all boxes on this frame",
        "Ctrl+A",
        "Select every annotation on this frame",
        "Annotations",
    ),
    _s(
        "edit.clear_selection",
        "Clear selection",
        "Esc",
        "Cancel the drawing in progress and clear the selection",
        "Annotations",
    ),
    _s(
        "review.accept",
        "&Accept (the highlighted answer box, else the selected boxes)",
        "A",
        "Accept the highlighted answer box, else the selected boxes",
        "Review",
    ),
    _s("review.reject", "Re&ject selected boxes", "X", "Reject the selected boxes", "Review"),
    _s(
        "review.image_done",
        "Mark image reviewed and go to the next one",
        ("Ctrl+Return", "Ctrl+Enter"),
        "Mark this image reviewed and show the next one",
        "Review",
    ),
    _s(
        "view.next_image",
        "Ne&xt image",
        "N",
        "The next image in the list (skips those the review filter hides)",
        "Review",
    ),
    _s("view.previous_image", "Pre&vious image", "P", "The previous image in the list", "Review"),
    # View
    _s("view.fit", "&Fit to window", "F", "Fit the image to the window", "View"),
    _s("view.actual_size", "&Actual size (1:1)", "Ctrl+0", "One screen pixel per stored pixel", "View"),
    _s("view.zoom_in", "Zoom &in", ("+", "="), "Zoom in", "View"),
    _s("view.zoom_out", "Zoom &out", "-", "Zoom out", "View"),
    _s(
        "view.report",
        "&Report",
        "Ctrl+Shift+R",
        "Show the Report panel: the study's report, its findings and sign-off",
        "View",
    ),
    _s("view.next_frame", "&Next frame", ("Right", "Down"), "The next frame or slice", "View"),
    _s("view.previous_frame", "&Previous frame", ("Left", "Up"), "The previous frame or slice", "View"),
    _s("view.page_forward", f"Forward {PAGE_FRAMES} frames", "PgDown", f"{PAGE_FRAMES} frames forward", "View"),
    _s("view.page_back", f"Back {PAGE_FRAMES} frames", "PgUp", f"{PAGE_FRAMES} frames back", "View"),
    _s("view.first_frame", "First frame", "Home", "The first frame", "View"),
    _s("view.last_frame", "Last frame", "End", "The last frame", "View"),
    _s(
        "view.corner_overlays",
        "Corner &overlays (series, slice, window, zoom)",
        "O",
        "Show or hide the text in the image corners",
        "View",
    ),
    _s(
        "view.cine",
        "Play / pause cine",
        "Space",
        "Play the frames in a loop at the frame rate beside the button",
        "View",
    ),
    _s(
        "view.retry_decoding",
        "Retry &decoding this image",
        "F5",
        "Decode this image's failed frames again (for example after raising the decode time limit in Settings)",
        "View",
    ),
    _s(
        "mpr.toggle",
        "Three &planes (axial, coronal, sagittal)",
        "M",
        "Show the series as three linked planes",
        "Planes",
    ),
    _s("mpr.layout_1x1", "1x1", "Alt+1", "One plane: the one you last clicked", "Planes"),
    _s("mpr.layout_1x3", "1x3", "Alt+2", "Three planes side by side", "Planes"),
    _s("mpr.layout_2x2", "2x2", "Alt+3", "Three planes and the volume's facts", "Planes"),
    # Window
    _s(
        "window.preset",
        "Window preset",
        PRESET_KEYS,
        "Apply the window preset with that number (Window menu)",
        "Window",
    ),
    _s("window.invert", "&Invert", "I", "Invert the grey scale", "Window"),
    _s("window.reset", "&Reset display", "R", "The header's window, no inversion, fit to window", "Window"),
    # Help
    _s("help.shortcuts", "&Keyboard shortcuts", "F1", "This list of every key and mouse control", "Help"),
    # Mouse (handled by the canvas and the plane views, listed for the reader)
    _s("mouse.frames", "Frames", "Wheel", "Step through frames or slices (zooms a single-frame image)", "Mouse", MOUSE),
    _s("mouse.zoom", "Zoom", "Ctrl+Wheel", "Zoom around the cursor", "Mouse", MOUSE),
    _s("mouse.pan", "Pan", ("Middle drag", "Left drag"), "Pan (left drag with the Pan tool)", "Mouse", MOUSE),
    _s(
        "mouse.window",
        "Window / level",
        "Right drag",
        "Change the window: horizontal is width, vertical is level",
        "Mouse",
        MOUSE,
    ),
    _s(
        "mouse.box_menu",
        "Box menu",
        "Right click on a box",
        "Segment the box, or accept or reject a model's box",
        "Mouse",
        MOUSE,
    ),
    _s(
        "mouse.add_select",
        "Add to selection",
        ("Shift+Click", "Ctrl+Click"),
        "Add a box to the selection",
        "Mouse",
        MOUSE,
    ),
    _s(
        "mouse.segment_positive",
        "Segment: include a point",
        "Segment tool: Shift+Click",
        "With a mask selected: segment it again with this point inside",
        "Mouse",
        MOUSE,
    ),
    _s(
        "mouse.segment_negative",
        "Segment: exclude a point",
        "Segment tool: Alt+Click",
        "With a mask selected: segment it again with this point outside",
        "Mouse",
        MOUSE,
    ),
)

_BY_ID = {row.id: row for row in SHORTCUTS}


def shortcut(command_id: str) -> Shortcut:
    """The row of ``command_id``; a KeyError names a binding site whose command is not in the table."""
    return _BY_ID[command_id]


def keys(command_id: str) -> tuple[str, ...]:
    """The keys bound to ``command_id`` (portable text)."""
    return shortcut(command_id).keys


def key_text(row: Shortcut) -> str:
    """The keys as a reader writes them: ``Ctrl+Shift+Z or Ctrl+Y``; the nine preset keys as ``1–9``."""
    if row.keys == PRESET_KEYS:
        return "1–9"
    return " or ".join(row.keys)


def groups() -> dict[str, list[Shortcut]]:
    """The rows by group, in table order (the order of the dialog and the docs)."""
    grouped: dict[str, list[Shortcut]] = {}
    for row in SHORTCUTS:
        grouped.setdefault(row.group, []).append(row)
    return grouped


def markdown_table() -> str:
    """The docs page's tables, one per group (docs/hooks.py puts them in place of a marker)."""
    lines: list[str] = []
    for group, rows in groups().items():
        lines += [f"## {group}\n", "| Keys | Command | What it does |", "|---|---|---|"]
        lines += [
            f"| {_cell(' or '.join(f'`{k}`' for k in _shown(row)))} | {_cell(row.title)} | {_cell(row.does)} |"
            for row in rows
        ]
        lines.append("")
    return "\n".join(lines)


def _shown(row: Shortcut) -> tuple[str, ...]:
    return ("1–9",) if row.keys == PRESET_KEYS else row.keys


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
