"""File > Export annotations: which images, which review states, and where, in that order.

The same choices as the command line (``clinlens export IMAGES --include-pending``): the scope is
the current image or every open image, and pending model output stays out unless asked for (see
``ReviewScope``: an export leaves the app, so it holds what a person stands behind). The file
chooser opens where the user is working: the last export folder, else the images' own folder,
never the program's folder, and offers only the chosen format's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from engine.annotations import AnnotationDocument
from engine.annotations.formats import FORMATS, ReviewScope

FILE_FILTERS = {
    "coco": "COCO JSON (*.json)",
    "csv": "CSV table (*.csv)",
    "json": "ClinLens JSON (*.json)",
}
DEFAULT_NAMES = {"coco": "annotations.coco.json", "csv": "annotations.csv", "json": "annotations.clinlens.json"}


@dataclass(frozen=True)
class ExportChoice:
    """What the user chose: where, which images (None: all open), which review states."""

    out: str
    image_ids: list[str] | None
    scope: ReviewScope
    writes_folder: bool = False

    @property
    def folder(self) -> str:
        """Where the next export's chooser opens: the folder written into, or the file's folder."""
        return self.out if self.writes_folder else str(Path(self.out).parent)


class ExportScopeDialog(QDialog):
    """Current image or all open images, and whether pending (and rejected) model output goes too."""

    def __init__(self, name: str, current_title: str, total: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Export {name.upper()}")
        self.current_image = QRadioButton(f"Current image ({current_title})")
        self.all_images = QRadioButton(f"All open images ({total})")
        self.all_images.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.current_image)
        group.addButton(self.all_images)
        self.include_pending = QCheckBox("Include model output still pending review")
        self.include_pending.setToolTip(
            "Off: only your annotations and accepted or corrected model output (as on the command line "
            "without --include-pending)."
        )
        self.include_rejected = QCheckBox("Include rejected model output")
        self.include_rejected.setToolTip("Never implied by the pending option (--include-rejected).")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Choose where…")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(FORMATS[name].description))
        for widget in (self.current_image, self.all_images, self.include_pending, self.include_rejected):
            layout.addWidget(widget)
        layout.addWidget(buttons)

    def scope(self) -> ReviewScope:
        return ReviewScope(self.include_pending.isChecked(), self.include_rejected.isChecked())


def start_folder(doc: AnnotationDocument, image_id: str | None, last: str | None) -> str:
    """The last export folder if it still exists, else the folder of the current image's files."""
    if last and Path(last).is_dir():
        return last
    if image_id is not None and doc.has_image(image_id) and doc.image(image_id).paths:
        return str(Path(doc.image(image_id).paths[0]).parent)
    return str(Path.home())


def ask_export(
    parent: QWidget, name: str, doc: AnnotationDocument, image_id: str | None, last_folder: str | None
) -> ExportChoice | None:
    """The scope dialog, then the file (or folder) chooser; None when either is cancelled."""
    spec = FORMATS[name]
    title = doc.image(image_id).title if image_id is not None and doc.has_image(image_id) else ""
    dialog = ExportScopeDialog(name, title or "none", len(doc.images), parent)
    dialog.current_image.setEnabled(image_id is not None)
    if not dialog.exec():
        return None
    folder = start_folder(doc, image_id, last_folder)
    if spec.writes_folder:
        out = QFileDialog.getExistingDirectory(parent, f"Export {name.upper()} into folder", folder)
    else:
        out, _ = QFileDialog.getSaveFileName(
            parent, f"Export {name.upper()}", str(Path(folder) / DEFAULT_NAMES[name]), FILE_FILTERS[name]
        )
    if not out:
        return None
    image_ids = [image_id] if dialog.current_image.isChecked() and image_id is not None else None
    return ExportChoice(out, image_ids, dialog.scope(), spec.writes_folder)
