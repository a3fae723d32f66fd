"""Key facts and a searchable DICOM tag tree; patient identifiers stay hidden until revealed."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QHeaderView,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.viewer.state import ViewerState
from engine.imaging import TagNode, key_facts, tag_tree


class MetadataPanel(QWidget):
    def __init__(self, state: ViewerState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.facts = QTableWidget(0, 2)
        self.facts.setHorizontalHeaderLabels(["Fact", "Value"])
        self.facts.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.facts.verticalHeader().setVisible(False)
        self.facts.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search tags (keyword, tag or value)")
        self.search.setClearButtonEnabled(True)
        self.reveal_phi = QCheckBox("Show patient identifiers")
        self.reveal_phi.setToolTip("Patient name, ID and birth date are hidden unless you reveal them.")
        self.tags = QTreeWidget()
        self.tags.setHeaderLabels(["Tag", "Keyword", "VR", "Value"])
        self.tags.setUniformRowHeights(True)
        self.tags.setColumnWidth(0, 115)
        self.tags.setColumnWidth(1, 140)
        self.tags.setColumnWidth(2, 34)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.facts, 1)
        layout.addWidget(self.search)
        layout.addWidget(self.reveal_phi)
        layout.addWidget(self.tags, 2)
        self.search.textChanged.connect(self._apply_filter)
        self.reveal_phi.toggled.connect(self.refresh)
        state.frame_changed.connect(self.refresh)
        state.stack_changed.connect(self.refresh)

    def refresh(self) -> None:
        stack, index = self.state.stack, self.state.frame_index
        facts = key_facts(stack, index) if stack is not None else []
        self.facts.setRowCount(len(facts))
        for row, (name, value) in enumerate(facts):
            self.facts.setItem(row, 0, QTableWidgetItem(name))
            self.facts.setItem(row, 1, QTableWidgetItem(value))
        self.facts.resizeColumnToContents(0)
        self.tags.clear()
        header = stack.header(index) if stack is not None else None
        if header is not None:
            self.tags.addTopLevelItems(
                [_tree_item(node) for node in tag_tree(header, reveal_phi=self.reveal_phi.isChecked())]
            )
        self._apply_filter(self.search.text())

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for i in range(self.tags.topLevelItemCount()):
            _filter_item(self.tags.topLevelItem(i), needle)


def _tree_item(node: TagNode) -> QTreeWidgetItem:
    item = QTreeWidgetItem([node.tag, node.keyword, node.vr, node.value])
    item.addChildren([_tree_item(child) for child in node.children])
    return item


def _filter_item(item: QTreeWidgetItem, needle: str) -> bool:
    """Show an item when it or any descendant matches; returns whether it is shown."""
    own = not needle or any(needle in item.text(column).lower() for column in range(4))
    child_match = False
    for i in range(item.childCount()):
        child_match |= _filter_item(item.child(i), needle)
    visible = own or child_match
    item.setHidden(not visible)
    return visible
