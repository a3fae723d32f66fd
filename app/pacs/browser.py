"""File > Open from PACS…: search studies, expand one to its series, pick a series to open.

Every query runs on a worker thread (superqt ``create_worker``) and comes back through bound
methods, so the dialog never blocks on the network. Patient name and ID follow the viewer's
"show patient identifiers" rule: hidden until the box is ticked. Nothing here is logged.
"""

from __future__ import annotations

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
)
from superqt.utils import create_worker

from engine.pacs import PacsError, PacsServer, SeriesResult, StudyQuery, StudyResult, connect

HIDDEN = "(hidden)"
MODALITIES = ("", "CT", "MR", "CR", "DX", "MG", "US", "PT", "NM", "XA", "RF", "SR", "OT")
COLUMNS = ("Patient name", "Patient ID", "Date", "Modality", "Description", "Accession", "Series", "Instances")
_STUDY_ROLE = Qt.ItemDataRole.UserRole
_SERIES_ROLE = Qt.ItemDataRole.UserRole + 1


class _SortItem(QTreeWidgetItem):
    """Numbers sort as numbers, everything else as text."""

    def __lt__(self, other: QTreeWidgetItem) -> bool:
        column = self.treeWidget().sortColumn() if self.treeWidget() else 0
        mine, theirs = self.text(column), other.text(column)
        if mine.isdigit() and theirs.isdigit():
            return int(mine) < int(theirs)
        return mine < theirs


def _search(server: PacsServer, query: StudyQuery) -> list[StudyResult]:
    with connect(server) as connection:
        return connection.find_studies(query)


def _series(server: PacsServer, study_uid: str) -> tuple[str, list[SeriesResult]]:
    with connect(server) as connection:
        return study_uid, connection.find_series(study_uid)


class PacsBrowser(QDialog):
    """Search one of the configured servers; ``open_series`` fires with (server, study, series)."""

    search_finished = Signal(int)  # number of studies listed (-1: failed)
    series_loaded = Signal(str)  # study UID whose series are now listed
    open_series = Signal(object, str, str)  # PacsServer, StudyInstanceUID, SeriesInstanceUID

    def __init__(self, servers: list[PacsServer], *, reveal_phi: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.resize(1000, 600)
        self.servers = list(servers)
        self.server = QComboBox()
        self.server.addItems([s.name for s in self.servers])
        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("part of the name; * ? wildcards")
        self.accession = QLineEdit()
        self.description = QLineEdit()
        self.description.setPlaceholderText("part of the study description")
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.use_dates = QCheckBox("Study date from")
        self.date_from = QDateEdit(QDate.currentDate().addYears(-1))
        self.date_to = QDateEdit(QDate.currentDate())
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
        self.use_dates.toggled.connect(self.date_from.setEnabled)
        self.use_dates.toggled.connect(self.date_to.setEnabled)
        self.reveal_phi = QCheckBox("Show patient identifiers")
        self.reveal_phi.setChecked(reveal_phi)
        self.reveal_phi.toggled.connect(self._refresh_identifiers)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        self.open_button = QPushButton("Open series")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self._open_selected)
        self.status = QLabel(
            "Choose a server and search." if self.servers else "No PACS configured: add one under File > PACS servers…"
        )
        self.status.setWordWrap(True)
        self.results = QTreeWidget()
        self.results.setHeaderLabels(list(COLUMNS))
        self.results.setSortingEnabled(True)
        self.results.sortByColumn(2, Qt.SortOrder.DescendingOrder)
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results.setUniformRowHeights(True)
        self.results.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.results.itemExpanded.connect(self._expand)
        self.results.itemSelectionChanged.connect(self._selection_changed)
        self.results.itemDoubleClicked.connect(lambda item, _col: self._open_item(item))

        fields = QGridLayout()
        fields.addWidget(QLabel("Server"), 0, 0)
        fields.addWidget(self.server, 0, 1)
        fields.addWidget(QLabel("Patient ID"), 0, 2)
        fields.addWidget(self.patient_id, 0, 3)
        fields.addWidget(QLabel("Patient name"), 0, 4)
        fields.addWidget(self.patient_name, 0, 5)
        fields.addWidget(QLabel("Accession"), 1, 0)
        fields.addWidget(self.accession, 1, 1)
        fields.addWidget(QLabel("Modality"), 1, 2)
        fields.addWidget(self.modality, 1, 3)
        fields.addWidget(QLabel("Description"), 1, 4)
        fields.addWidget(self.description, 1, 5)
        dates = QHBoxLayout()
        dates.addWidget(self.use_dates)
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        dates.addStretch(1)
        dates.addWidget(self.reveal_phi)
        dates.addWidget(self.search_button)
        bottom = QFormLayout()
        bottom.addRow(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons.addWidget(self.open_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(fields)
        layout.addLayout(dates)
        layout.addWidget(self.results, 1)
        layout.addLayout(bottom)
        layout.addLayout(buttons)

    # ----- search
    def current_server(self) -> PacsServer | None:
        index = self.server.currentIndex()
        return self.servers[index] if 0 <= index < len(self.servers) else None

    def query(self) -> StudyQuery:
        dates = ""
        if self.use_dates.isChecked():
            dates = f"{self.date_from.date().toString('yyyyMMdd')}-{self.date_to.date().toString('yyyyMMdd')}"
        return StudyQuery(
            patient_id=self.patient_id.text(),
            patient_name=self.patient_name.text(),
            accession=self.accession.text(),
            date_range=dates,
            modality=self.modality.currentText(),
            description=self.description.text(),
        )

    def search(self) -> None:
        server = self.current_server()
        if server is None:
            self.status.setText("No PACS configured: add one under File > PACS servers…")
            return
        self.search_button.setEnabled(False)
        self.status.setText(f"Searching {server.name}…")
        worker = create_worker(_search, server, self.query(), _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._show_studies)
        worker.errored.connect(self._search_failed)
        worker.start()

    def _search_failed(self, error: Exception) -> None:
        self.search_button.setEnabled(True)
        self.status.setText(str(error) if isinstance(error, PacsError) else f"Search failed: {error}")
        self.search_finished.emit(-1)

    def _show_studies(self, studies: list[StudyResult]) -> None:
        self.search_button.setEnabled(True)
        self.results.setSortingEnabled(False)
        self.results.clear()
        for study in studies:
            item = _SortItem(self._study_texts(study))
            item.setData(0, _STUDY_ROLE, study)
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.results.addTopLevelItem(item)
        self.results.setSortingEnabled(True)
        for column in range(len(COLUMNS)):
            self.results.resizeColumnToContents(column)
        self.status.setText(
            f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found. "
            "Expand a study to see its series; double-click a series to open it."
        )
        self.search_finished.emit(len(studies))

    def _study_texts(self, study: StudyResult) -> list[str]:
        show = self.reveal_phi.isChecked()
        date = f"{study.date[:4]}-{study.date[4:6]}-{study.date[6:]}" if len(study.date) == 8 else study.date
        return [
            study.patient_name.replace("^", " ") if show else HIDDEN,
            study.patient_id if show else HIDDEN,
            date,
            "/".join(study.modalities),
            study.description,
            study.accession,
            "" if study.series_count is None else str(study.series_count),
            "" if study.instance_count is None else str(study.instance_count),
        ]

    def _refresh_identifiers(self) -> None:
        for index in range(self.results.topLevelItemCount()):
            item = self.results.topLevelItem(index)
            texts = self._study_texts(item.data(0, _STUDY_ROLE))
            item.setText(0, texts[0])
            item.setText(1, texts[1])

    # ----- series
    def _expand(self, item: QTreeWidgetItem) -> None:
        study: StudyResult | None = item.data(0, _STUDY_ROLE)
        server = self.current_server()
        if study is None or server is None or item.childCount():
            return
        self.status.setText("Listing the series…")
        worker = create_worker(_series, server, study.study_uid, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._show_series)
        worker.errored.connect(self._search_failed)
        worker.start()

    def _study_item(self, study_uid: str) -> QTreeWidgetItem | None:
        for index in range(self.results.topLevelItemCount()):
            item = self.results.topLevelItem(index)
            if item.data(0, _STUDY_ROLE).study_uid == study_uid:
                return item
        return None

    def _show_series(self, found: tuple[str, list[SeriesResult]]) -> None:
        study_uid, series = found
        parent = self._study_item(study_uid)
        if parent is None:
            return
        for entry in sorted(series, key=lambda s: (s.number is None, s.number or 0)):
            count = "" if entry.instance_count is None else str(entry.instance_count)
            label = f"Series {entry.number}" if entry.number is not None else "Series"
            child = _SortItem([label, "", "", entry.modality, entry.description, "", "", count])
            child.setData(0, _SERIES_ROLE, entry)
            parent.addChild(child)
        self.status.setText(f"{len(series)} series. Double-click one (or select it and press Open) to open it.")
        self.series_loaded.emit(study_uid)

    def _selection_changed(self) -> None:
        items = self.results.selectedItems()
        self.open_button.setEnabled(bool(items) and items[0].data(0, _SERIES_ROLE) is not None)

    def _open_selected(self) -> None:
        items = self.results.selectedItems()
        if items:
            self._open_item(items[0])

    def _open_item(self, item: QTreeWidgetItem) -> None:
        series: SeriesResult | None = item.data(0, _SERIES_ROLE)
        server = self.current_server()
        if series is not None and server is not None:
            self.open_series.emit(server, series.study_uid, series.series_uid)
            self.accept()
