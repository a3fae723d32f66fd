"""File > PACS servers…: the archives ClinLens can search and send to, and the cache size.

Secrets are never typed into this dialog's saved fields: an entry names the environment
variable holding its password or token, or asks for the OS keyring (where "Store in keyring…"
puts it). "Test connection" runs a QIDO query or a C-ECHO on a worker thread and shows the
answer, or the exact failure, in one sentence.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
)
from superqt.utils import create_worker

from engine.pacs import PacsError, PacsServer, PacsSettings, connect, save_pacs_settings, store_keyring_secret
from engine.pacs.servers import ADDRESS_FORMS, AUTH_MODES


def _echo(server: PacsServer) -> str:
    with connect(server) as connection:
        return connection.echo()


class PacsServersDialog(QDialog):
    tested = Signal(bool, str)  # success, the sentence shown

    def __init__(self, settings: PacsSettings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS servers")
        self.servers = list(settings.servers)
        self._settings = settings
        self.list = QListWidget()
        self.list.addItems([s.name for s in self.servers])
        self.name = QLineEdit()
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://pacs:8042/dicom-web  or  dicom://ORTHANC@pacs:4242")
        self.url.setToolTip(f"The server's address: {ADDRESS_FORMS}.")
        self.auth = QComboBox()
        self.auth.addItems(list(AUTH_MODES))
        self.username = QLineEdit()
        self.secret_env = QLineEdit()
        self.secret_env.setPlaceholderText("name of the environment variable holding the password or token")
        self.use_keyring = QCheckBox("Read the secret from the OS keyring")
        self.our_aet = QLineEdit()
        self.storage_port = QSpinBox()
        self.storage_port.setRange(0, 65535)
        self.storage_port.setSpecialValueText("none (C-GET only)")
        self.storage_bind = QLineEdit()
        self.storage_bind.setPlaceholderText("automatic: loopback for an archive on this computer, else all")
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1, 600)
        self.timeout.setSuffix(" s")
        self.cache_limit = QSpinBox()
        self.cache_limit.setRange(64, 10_000_000)
        self.cache_limit.setSuffix(" MB")
        self.cache_limit.setValue(settings.cache_limit_mb)
        self.result = QLabel()
        self.result.setWordWrap(True)  # a failure is one sentence, often longer than the form is wide
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        add, remove = QPushButton("Add"), QPushButton("Remove")
        add.clicked.connect(self.add_server)
        remove.clicked.connect(self.remove_server)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        self.keyring_button = keyring_button = QPushButton("Store secret in keyring…")
        keyring_button.clicked.connect(self._store_in_keyring)
        self.url.textChanged.connect(self._update_enabled)
        self.auth.currentTextChanged.connect(self._update_enabled)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("URL", self.url)
        form.addRow("Authentication", self.auth)
        form.addRow("User name", self.username)
        form.addRow("Secret from variable", self.secret_env)
        form.addRow("", self.use_keyring)
        form.addRow("", keyring_button)
        form.addRow("Our AE title (DIMSE)", self.our_aet)
        form.addRow("Storage port (C-MOVE)", self.storage_port)
        form.addRow("Listen on address (C-MOVE)", self.storage_bind)
        form.addRow("Timeout", self.timeout)
        form.addRow("", self.test_button)
        form.addRow(self.result)  # the whole width: beside the button it was cut to a few words
        left = QVBoxLayout()
        left.addWidget(self.list, 1)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(remove)
        left.addLayout(row)
        body = QHBoxLayout()
        body.addLayout(left, 1)
        body.addLayout(form, 2)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        cache_row = QFormLayout()
        cache_row.addRow("Retrieved-image cache limit", self.cache_limit)
        layout = QVBoxLayout(self)
        layout.addLayout(body, 1)
        layout.addLayout(cache_row)
        layout.addWidget(buttons)
        self._row = -1
        self.list.currentRowChanged.connect(self._select)
        if self.servers:
            self.list.setCurrentRow(0)
        else:
            self.add_server()

    def _form_value(self) -> PacsServer:
        return PacsServer(
            name=self.name.text().strip(),
            url=self.url.text().strip(),
            auth=self.auth.currentText(),
            username=self.username.text().strip(),
            secret_env=self.secret_env.text().strip(),
            use_keyring=self.use_keyring.isChecked(),
            our_aet=self.our_aet.text().strip(),
            storage_port=self.storage_port.value(),
            storage_bind=self.storage_bind.text().strip(),
            timeout_s=self.timeout.value(),
        )

    def _store_form(self) -> None:
        if 0 <= self._row < len(self.servers):
            self.servers[self._row] = self._form_value()
            self.list.item(self._row).setText(self.servers[self._row].name or "(unnamed)")

    def _select(self, row: int) -> None:
        self._store_form()
        self._row = row
        if not 0 <= row < len(self.servers):
            return
        server = self.servers[row]
        self.name.setText(server.name)
        self.url.setText(server.url)
        self.auth.setCurrentText(server.auth)
        self.username.setText(server.username)
        self.secret_env.setText(server.secret_env)
        self.use_keyring.setChecked(server.use_keyring)
        self.our_aet.setText(server.our_aet)
        self.storage_port.setValue(server.storage_port)
        self.storage_bind.setText(server.storage_bind)
        self.timeout.setValue(server.timeout_s)
        self.result.clear()

    def _update_enabled(self) -> None:
        """Only the fields of the entry's protocol (and chosen authentication) can be edited."""
        dimse = self.url.text().strip().lower().startswith("dicom://")
        secret = not dimse and self.auth.currentText() != "none"
        self.auth.setEnabled(not dimse)
        for widget in (self.secret_env, self.use_keyring, self.keyring_button):
            widget.setEnabled(secret)
        self.username.setEnabled(secret and self.auth.currentText() == "basic")
        self.our_aet.setEnabled(dimse)
        self.storage_port.setEnabled(dimse)
        self.storage_bind.setEnabled(dimse)

    def add_server(self) -> None:
        self._store_form()
        self.servers.append(PacsServer(name=f"PACS {len(self.servers) + 1}", url=""))
        self.list.addItem(self.servers[-1].name)
        self.list.setCurrentRow(len(self.servers) - 1)

    def remove_server(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.servers):
            self._row = -1
            del self.servers[row]
            self.list.takeItem(row)
            self._select(self.list.currentRow())

    def test_connection(self) -> None:
        server = self._form_value()
        problems = server.problems()
        if problems:
            self._show_result(False, problems[0])
            return
        self.test_button.setEnabled(False)
        self.result.setText("Testing…")
        worker = create_worker(_echo, server, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda message: self._show_result(True, message))
        worker.errored.connect(self._test_failed)
        worker.start()

    def _test_failed(self, error: Exception) -> None:
        self._show_result(False, str(error) if isinstance(error, PacsError) else f"Test failed: {error}")

    def _show_result(self, ok: bool, message: str) -> None:
        self.test_button.setEnabled(True)
        self.result.setStyleSheet("color: #7fdc7f;" if ok else "color: #ff8080;")
        self.result.setText(message)
        self._fit_result()
        self.tested.emit(ok, message)

    def _fit_result(self) -> None:
        """Grow the dialog until the wrapped message fits: a top-level window does not follow
        its label's height-for-width by itself, so a long sentence would be clipped."""
        layout = self.layout()
        layout.activate()
        if layout.hasHeightForWidth():
            needed = layout.totalHeightForWidth(self.width())
            if needed > self.height():
                self.resize(self.width(), needed)

    def _store_in_keyring(self) -> None:
        name = self.name.text().strip()
        secret, ok = QInputDialog.getText(
            self, "Store secret", f"Password or token for {name}:", QLineEdit.EchoMode.Password
        )
        if not ok or not secret:
            return
        try:
            store_keyring_secret(name, secret)
        except PacsError as err:
            self._show_result(False, str(err))
            return
        self.use_keyring.setChecked(True)
        self._show_result(True, "Stored in the OS keyring.")

    def value(self) -> PacsSettings:
        self._store_form()
        return replace(self._settings, servers=tuple(self.servers), cache_limit_mb=self.cache_limit.value())

    def accept(self) -> None:
        settings = self.value()
        for server in settings.servers:
            problems = server.problems()
            if problems:
                self._show_result(False, f"{server.name or 'An entry'}: {problems[0]}")
                return
        if len({s.name for s in settings.servers}) != len(settings.servers):
            self._show_result(False, "Two entries have the same name.")
            return
        save_pacs_settings(settings)
        super().accept()
