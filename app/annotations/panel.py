"""The annotation list beside the canvas: boxes (labels, sizes in millimetres and pixels) and
measurements (their own label, kind and values with units), with their review decisions.

It mirrors the document (rebuilt after every change) and the selection (both ways); clicking a
row selects the box, shows its frame and centres it.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.annotations.controller import AnnotationController
from app.annotations.rows import COLUMNS, NOTE_COLUMN, PLANE_COLUMN, box_row, mask_row, measurement_row
from app.viewer.state import ViewerState
from engine.annotations import Review, Source

KIND_SUFFIX = re.compile(r" \((length|angle|ellipse|rectangle)\)$")  # shown after a measurement's label
MIN_WIDTHS = (64, 44, 56, 80, 60, 50, 60, 40)  # Note (last) stretches


class AnnotationPanel(QWidget):
    box_activated = Signal(str)  # a row was clicked: show and centre this box
    label_entered = Signal()  # Enter in the label field: the window gives the keyboard back to the image
    report_requested = Signal(list)  # "Add to report": the ids of the selected annotations

    def __init__(self, state: ViewerState, controller: AnnotationController, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.controller = controller
        self._syncing = False
        self.label_picker = QComboBox()
        self.label_picker.setEditable(True)
        self.label_picker.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.label_picker.setToolTip("Label for new boxes; type a new name and press Enter to add one")
        self.apply_label = QPushButton("Relabel selected")
        self.rename_label = QPushButton("Rename…")
        self.rename_label.setToolTip("Rename the current label everywhere (onto an existing name merges the two)")
        self.colour_label = QPushButton("Colour…")
        self.source_toggles = {source: QCheckBox(source.value.capitalize()) for source in Source}
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QTreeWidget.SelectionMode.ExtendedSelection)
        for column, width in enumerate(MIN_WIDTHS):
            self.tree.setColumnWidth(column, width)
        self.spacing_note = QLabel()
        self.spacing_note.setWordWrap(True)
        self.accept_button = QPushButton("Accept (A)")
        self.reject_button = QPushButton("Reject (X)")
        self.corrected_button = QPushButton("Corrected")
        self.report_button = QPushButton("Add to report")
        self.report_button.setToolTip("Cite the selected annotations as findings of the study's report")
        self.image_reviewed = QCheckBox("Image reviewed")
        self.progress = QLabel()
        self.location = QLabel()  # where the annotations are saved (tooltip: the full path)
        self.location.setWordWrap(True)

        label_row = QHBoxLayout()
        label_row.addWidget(QLabel("Label"))
        label_row.addWidget(self.label_picker, 1)
        label_row.addWidget(self.apply_label)
        label_edit_row = QHBoxLayout()
        label_edit_row.addStretch(1)
        label_edit_row.addWidget(self.rename_label)
        label_edit_row.addWidget(self.colour_label)
        source_row = QHBoxLayout()
        source_row.addWidget(QLabel("Show"))
        for toggle in self.source_toggles.values():
            toggle.setChecked(True)
            source_row.addWidget(toggle)
        source_row.addStretch(1)
        review_row = QHBoxLayout()
        for button in (self.accept_button, self.reject_button, self.corrected_button, self.report_button):
            review_row.addWidget(button)
        status_row = QHBoxLayout()
        status_row.addWidget(self.image_reviewed)
        status_row.addStretch(1)
        status_row.addWidget(self.progress)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(label_row)
        layout.addLayout(label_edit_row)
        layout.addLayout(source_row)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.spacing_note)
        layout.addLayout(review_row)
        layout.addLayout(status_row)
        layout.addWidget(self.location)

        self.label_picker.lineEdit().returnPressed.connect(self._label_entered)
        self.label_picker.lineEdit().returnPressed.connect(self.label_entered)
        self.label_picker.activated.connect(lambda _i: self._label_entered())
        self.apply_label.clicked.connect(self._relabel)
        self.rename_label.clicked.connect(self._ask_rename)
        self.colour_label.clicked.connect(self._ask_colour)
        for source, toggle in self.source_toggles.items():
            toggle.toggled.connect(lambda on, s=source: controller.set_source_visible(s, on))
        self.tree.itemSelectionChanged.connect(self._tree_selection_changed)
        self.tree.itemClicked.connect(
            lambda item, _col: self.box_activated.emit(item.data(0, Qt.ItemDataRole.UserRole))
        )
        self.tree.itemChanged.connect(self._item_edited)
        self.accept_button.clicked.connect(lambda: controller.review_selected(Review.ACCEPTED))
        self.report_button.clicked.connect(lambda: self.report_requested.emit(sorted(controller.selected)))
        self.reject_button.clicked.connect(lambda: controller.review_selected(Review.REJECTED))
        self.corrected_button.clicked.connect(lambda: controller.review_selected(Review.CORRECTED))
        self.image_reviewed.toggled.connect(self._reviewed_toggled)
        controller.changed.connect(lambda _e: self.refresh())
        controller.current_image_changed.connect(self.refresh)
        state.stack_changed.connect(self.refresh)  # the spacing note needs the new stack
        controller.selection_changed.connect(self._sync_selection)
        self.refresh()

    def refresh(self) -> None:
        self._syncing = True
        controller, doc = self.controller, self.controller.doc
        self.tree.clear()
        self.setEnabled(doc is not None)
        text, tip = controller.location_note()
        self.location.setText(text)
        self.location.setToolTip(tip)
        if doc is None:
            self.progress.clear()
            self._syncing = False
            return
        names = [label.name for label in doc.labels]
        if [self.label_picker.itemText(i) for i in range(self.label_picker.count())] != names:
            self.label_picker.clear()
            self.label_picker.addItems(names)
        self.label_picker.setCurrentText(controller.current_label)
        spacing = self.state.stack.spacing if self.state.stack else None
        rows = [
            (box.id, box_row(box, spacing)) for box in controller.boxes() if box.source in controller.visible_sources
        ]
        rows += [(m.id, measurement_row(m)) for m in doc.measurements(controller.image_id)]
        rows += [(m.id, mask_row(m)) for m in doc.masks(controller.image_id) if m.source in controller.visible_sources]
        for annotation_id, row in rows:
            item = QTreeWidgetItem(row.texts)
            item.setData(0, Qt.ItemDataRole.UserRole, annotation_id)
            for column in range(len(COLUMNS)):
                item.setToolTip(column, row.tooltip)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.tree.addTopLevelItem(item)
        self._fit_columns()
        self.spacing_note.setText(
            f"mm from {spacing.source} ({spacing.row_mm:g} × {spacing.col_mm:g} mm per row × column)"
            if spacing
            else "No pixel spacing in this image: sizes in pixels only."
        )
        state = doc.image_state(controller.image_id)
        self.image_reviewed.setChecked(state.reviewed)
        progress = doc.progress()
        self.progress.setText(f"Reviewed {progress.reviewed_images} of {progress.total_images}")
        self._syncing = False
        self._sync_selection()

    def _fit_columns(self) -> None:
        """Every value readable without dragging a header: each column is as wide as its widest
        text (never narrower than its default), so an ROI's two lines ("mean 54 ± 7 HU" over "min/max 30/80") fit."""
        planes = any(self.tree.topLevelItem(r).text(PLANE_COLUMN) for r in range(self.tree.topLevelItemCount()))
        self.tree.setColumnHidden(PLANE_COLUMN, not planes)  # only a volume's reformats have planes
        for column, width in enumerate(MIN_WIDTHS):
            self.tree.resizeColumnToContents(column)
            self.tree.setColumnWidth(column, max(width, self.tree.columnWidth(column)))

    def _sync_selection(self) -> None:
        self._syncing = True
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            item.setSelected(item.data(0, Qt.ItemDataRole.UserRole) in self.controller.selected)
        self._syncing = False

    def _tree_selection_changed(self) -> None:
        if not self._syncing:
            self.controller.select({item.data(0, Qt.ItemDataRole.UserRole) for item in self.tree.selectedItems()})

    def _item_edited(self, item: QTreeWidgetItem, column: int) -> None:
        if self._syncing:
            return
        box_id = item.data(0, Qt.ItemDataRole.UserRole)
        if column == NOTE_COLUMN:
            self.controller.set_note(box_id, item.text(column))
        elif column == 0 and item.text(0).strip():
            self.controller.select({box_id})
            self.controller.relabel_selected(KIND_SUFFIX.sub("", item.text(0)).strip() or item.text(0))
        else:
            self.refresh()  # other columns are facts, not edits

    def _label_entered(self) -> None:
        self.controller.set_current_label(self.label_picker.currentText())

    def _relabel(self) -> None:
        self._label_entered()
        self.controller.relabel_selected(self.controller.current_label)

    def _ask_rename(self) -> None:
        old = self.controller.current_label
        new, ok = QInputDialog.getText(self, "Rename label", f"New name for “{old}”:", text=old)
        if ok:
            self.controller.rename_label(old, new)

    def _ask_colour(self) -> None:
        name = self.controller.current_label
        colour = QColorDialog.getColor(QColor(self.controller.doc.label(name).color), self, f"Colour of “{name}”")
        if colour.isValid():
            self.controller.set_label_color(name, colour.name())

    def _reviewed_toggled(self, on: bool) -> None:
        doc = self.controller.doc
        if not self._syncing and doc is not None and doc.image_state(self.controller.image_id).reviewed != on:
            self.controller.set_image_reviewed(on)
