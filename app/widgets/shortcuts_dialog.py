"""Help > Keyboard shortcuts: the shortcut table as a searchable list.

Generated from app/widgets/shortcuts.py, the table the window binds from, so it lists exactly
what the keys do (the old Help > Controls line was typed by hand and fell behind).
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.widgets.shortcuts import SHORTCUTS, Shortcut, key_text

COLUMNS = ("Keys", "Command", "What it does", "Group")


class ShortcutsDialog(QDialog):
    """A filter field over a table with one row per command, keys first."""

    def __init__(self, parent: QWidget | None = None, rows: tuple[Shortcut, ...] = SHORTCUTS) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.rows = rows
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search keys, commands or what they do…")
        self.search.setClearButtonEnabled(True)
        self.table = QTableWidget(len(rows), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(True)  # a long description wraps instead of being cut
        for index, row in enumerate(rows):
            for column, text in enumerate((key_text(row), row.title, row.does, row.group)):
                item = QTableWidgetItem(text)
                item.setToolTip(row.does)
                self.table.setItem(index, column, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        self.table.resizeRowsToContents()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.search.textChanged.connect(self.filter)
        self.resize(1100, 680)

    def filter(self, text: str) -> None:
        """Show the rows whose keys, command, description or group contain every word of ``text``."""
        words = text.casefold().split()
        for index in range(self.table.rowCount()):
            haystack = " ".join(self.table.item(index, c).text() for c in range(len(COLUMNS))).casefold()
            self.table.setRowHidden(index, not all(word in haystack for word in words))

    def visible_commands(self) -> list[str]:
        """The ids of the rows the filter leaves visible (for tests)."""
        return [row.id for index, row in enumerate(self.rows) if not self.table.isRowHidden(index)]
