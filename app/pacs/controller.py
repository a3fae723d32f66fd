"""The PACS in the main window: File menu actions, background retrieve into the viewer, write-back.

Opening a series retrieves it on a worker thread into the on-disk cache. The first instance is
shown as soon as it is written, and the growing series replaces it every half second (frames
fill in); a progress bar and a Cancel button sit in the status bar. When the series is complete
it is opened like any folder (annotations bind to the data-folder document keyed by study and
series UID), and the SR reports stored with the study are read back as annotations.
The study's report SRs come back too and join the project (a signed one read-only, amendments
chained). Sending builds the SR from a snapshot of the document on the GUI thread and stores it on
a worker thread, so a refused send changes nothing locally; the Report panel's Send to PACS takes
the same path and the same server.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMenu, QPushButton
from superqt.utils import create_worker

from app.pacs.browser import PacsBrowser
from app.pacs.servers_dialog import PacsServersDialog
from app.viewer.series_names import mark_origin
from app.widgets.progress_bar import ProgressBar
from engine.annotations.commands import AddAnnotations
from engine.annotations.image_ref import image_ref_from_stack
from engine.annotations.persistence import document_from_dict, document_to_dict
from engine.imaging import OpenResult, open_paths
from engine.pacs import InstanceCache, PacsError, PacsServer, connect, load_pacs_settings, retrieve_series
from engine.report.commands import PutReport

PARTIAL_EVERY_S = 0.5
BYTES_PER_MB = 1024 * 1024  # the settings give the cache limit in MB (tests make it tiny)


class _Progress(QObject):
    """Signals a worker thread emits; Qt queues them to the GUI thread."""

    instance = Signal(int, int)  # done, expected (0: unknown)
    partial = Signal(object)  # OpenResult of the instances written so far


def _retrieve(
    server: PacsServer,
    study_uid: str,
    series_uid: str,
    cache: InstanceCache,
    cancel: threading.Event,
    progress: _Progress,
):
    from engine.pacs.writeback import annotations_from_pacs  # highdicom: slow to import, not at start-up

    written: list[str] = []
    last_partial = [0.0]

    def on_instance(path, done, expected):
        written.append(str(path))
        progress.instance.emit(done, expected or 0)
        now = time.monotonic()
        if done == 1 or now - last_partial[0] >= PARTIAL_EVERY_S:
            last_partial[0] = now
            progress.partial.emit(open_paths(list(written)))

    with connect(server) as connection:
        result = retrieve_series(connection, cache, study_uid, series_uid, on_instance=on_instance, cancel=cancel)
        opened = open_paths([str(p) for p in result.paths])
        found, problem, reports = [], None, ()
        if opened.stacks:
            try:
                reading = annotations_from_pacs(
                    connection, cache, image_ref_from_stack(opened.stacks[0]), cancel=cancel
                )
                found, problem = list(reading.annotations), reading.summary()
            except PacsError as err:
                problem = f"The annotations stored with this study could not be read: {err}"
            except Exception as err:  # noqa: BLE001 - a bad SR (or a bug reading it) must not leave the series incomplete
                problem = f"The annotations stored with this study could not be read ({type(err).__name__}: {err})."
            reports, report_problem = _read_reports(connection, cache, study_uid, cancel)
            problem = " ".join(p for p in (problem, report_problem) if p) or None
    return Retrieved(opened, [str(cache.series_dir(study_uid, series_uid))], found, problem, reports)


def _read_reports(connection, cache: InstanceCache, study_uid: str, cancel: threading.Event):
    """The study's reports in the archive and one sentence when some could not be read (never raises)."""
    from engine.pacs.report_writeback import reports_from_pacs

    try:
        found = reports_from_pacs(connection, cache, study_uid, cancel=cancel)
    except PacsError as err:
        return (), f"The reports stored with this study could not be read: {err}"
    except Exception as err:  # noqa: BLE001 - a bad report SR must not leave the series incomplete
        return (), f"The reports stored with this study could not be read ({type(err).__name__}: {err})."
    return found.reports, " ".join(found.warnings) or None


@dataclass(frozen=True)
class Retrieved:
    """What a retrieve brings back to the GUI thread: the series, its annotations and the study's reports."""

    opened: OpenResult
    paths: list[str]
    annotations: list
    problem: str | None
    reports: tuple = ()


def _send(server: PacsServer, doc, image_id: str) -> str:
    from engine.pacs.writeback import send_report

    with connect(server) as connection:
        sent = send_report(connection, doc, image_id)
    objects = sent.objects
    if sent.already_stored:
        return (
            f"Not sent again: {server.name} already holds these annotations ({objects}); "
            "change them to send a new report."
        )
    return f"Annotations sent to {server.name} as {objects}."


def _send_report(server: PacsServer, doc, report_id: str, observer, pdf: bytes | None) -> str:
    from engine.pacs.report_writeback import send_report_sr

    report = doc.find_report(report_id)
    if report is None:
        raise PacsError("The report was not sent: it was discarded before the send began.")
    with connect(server) as connection:
        sent = send_report_sr(connection, doc, report, observer, pdf)
    objects = sent.objects
    if sent.already_stored:
        return f"Not sent again: {server.name} already holds this report ({objects})."
    state = "signed" if report.is_final else "draft"
    return f"Report ({state}) sent to {server.name} as {objects}."


class PacsController(QObject):
    retrieve_finished = Signal(object)  # OpenResult of the complete series
    retrieve_failed = Signal(str)  # one sentence (also "Retrieve cancelled.")
    partial_shown = Signal(int)  # frames shown so far
    send_finished = Signal(str)  # one sentence, success or failure
    report_send_finished = Signal(str, bool)  # one sentence; True when the report is in the archive

    def __init__(self, window, file_menu: QMenu) -> None:
        super().__init__(window)
        self.window = window
        self.browser: PacsBrowser | None = None
        self._cancel: threading.Event | None = None
        self._origin: dict[str, PacsServer] = {}  # stack key -> the server it came from
        self._pending_origin: PacsServer | None = None
        self._progress: _Progress | None = None
        self.cache = InstanceCache()  # one for the window: it knows which series are open (pinned)
        self.progress_bar = ProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setFormat("PACS %v/%m")
        self.cancel_button = QPushButton("Cancel retrieve")
        self.cancel_button.clicked.connect(self.cancel)
        for widget in (self.progress_bar, self.cancel_button):
            window.statusBar().addPermanentWidget(widget)
            widget.hide()
        self.retrieve_finished.connect(self._report_cache_warning)
        self.retrieve_failed.connect(self._report_cache_warning)
        window._command(file_menu, "file.open_pacs", self.browse)
        window._action(file_menu, "Send annotations to PACS", self.send_current)
        window._action(file_menu, "PACS &servers…", self.edit_servers)

    @property
    def busy(self) -> bool:
        return self._cancel is not None

    # ----- dialogs
    def browse(self) -> PacsBrowser:
        settings = load_pacs_settings()
        self.browser = PacsBrowser(
            list(settings.servers), reveal_phi=self.window.metadata.reveal_phi.isChecked(), parent=self.window
        )
        self.browser.open_series.connect(self.open_series)
        self.browser.show()
        return self.browser

    def edit_servers(self) -> PacsServersDialog:
        dialog = PacsServersDialog(load_pacs_settings(), parent=self.window)
        dialog.show()
        return dialog

    # ----- retrieve
    def open_series(self, server: PacsServer, study_uid: str, series_uid: str) -> None:
        if self.busy:
            self.window.banner.show_message("A series is still being retrieved: cancel it or wait for it to finish.")
            return
        self._cancel = threading.Event()
        self._pending_origin = server
        self._partial_frames = 0
        progress = self._progress = _Progress(self)
        progress.instance.connect(self._on_instance)
        progress.partial.connect(self._show_partial)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.cancel_button.show()
        self.window.statusBar().showMessage(f"Retrieving from {server.name}…")
        self.cache.limit_bytes = load_pacs_settings().cache_limit_mb * BYTES_PER_MB
        self._pin_open_series((study_uid, series_uid))
        worker = create_worker(
            _retrieve,
            server,
            study_uid,
            series_uid,
            self.cache,
            self._cancel,
            progress,
            _start_thread=False,
            _ignore_errors=True,
        )
        worker.returned.connect(self._on_retrieved)
        worker.errored.connect(self._on_failed)
        worker.start()

    def _pin_open_series(self, opening: tuple[str, str]) -> None:
        """Pin every cached series shown in the window (image list, or the partial series on screen)
        and the one being opened; unpin the rest. Frames decode lazily from the cache files, so a
        retrieve (of this series' SR reports, say) must not evict what is open."""
        shown = [*self.window.stacks, self.window.state.stack]
        open_now = {self.cache.series_of(p) for stack in shown if stack is not None for p in stack.paths}
        open_now = (open_now - {None}) | {opening}
        for key in self.cache.pinned() - open_now:
            self.cache.unpin(*key)
        for key in open_now - self.cache.pinned():
            self.cache.pin(*key)

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def shutdown(self) -> None:
        """Cancel a running retrieve (the window is closing)."""
        self.cancel()

    def _on_instance(self, done: int, expected: int) -> None:
        if expected:
            self.progress_bar.setRange(0, expected)
        self.progress_bar.setValue(done)

    def _show_partial(self, opened: OpenResult) -> None:
        if not opened.stacks or self._cancel is None:
            return
        stack = opened.stacks[0]
        if self._partial_frames == 0:
            self.window.annotations.show_stack(None)  # boxes of the previous image must not show on this one
        state = self.window.state
        choice = state.user_display() if self._partial_frames else None  # the same series, grown
        state.set_stack(stack)
        if choice is not None:
            state.restore_user_display(choice)
        self.window.setWindowTitle(f"ClinLens — {stack.title} (retrieving…)")
        self._partial_frames = stack.n_frames
        self.partial_shown.emit(stack.n_frames)

    def _finish(self) -> None:
        self._cancel = None
        if self._progress is not None:
            self._progress.deleteLater()
            self._progress = None
        self.progress_bar.hide()
        self.cancel_button.hide()
        self.window.statusBar().clearMessage()

    def _report_cache_warning(self, *_result) -> None:
        """Last, after the opened series has set its own messages: the cache is stuck over its limit."""
        warning = self.cache.take_warning()
        if warning:
            self.window.statusBar().showMessage(warning, 15000)

    def _on_failed(self, error: Exception) -> None:
        self._finish()
        message = str(error) if isinstance(error, PacsError) else f"Retrieve failed: {error}"
        self.window.banner.show_message(message)
        if self._partial_frames:  # the partial series stays visible but is not annotated
            self.window.setWindowTitle(f"ClinLens — incomplete series ({self._partial_frames} frames)")
        self.retrieve_failed.emit(message)

    def _on_retrieved(self, retrieved: Retrieved) -> None:
        opened, paths, found, problem = retrieved.opened, retrieved.paths, retrieved.annotations, retrieved.problem
        choice = self.window.state.user_display() if self._partial_frames else None
        self._finish()
        self.window._on_opened((opened, paths))
        if choice is not None and self.window.state.stack in opened.stacks:
            self.window.state.restore_user_display(choice)
        for stack in opened.stacks:
            self._origin[stack.key] = self._pending_origin
            if stack in self.window.stacks and self._pending_origin is not None:
                item = self.window.image_list.item(self.window.stacks.index(stack))
                mark_origin(item, stack, self._pending_origin.name)
        if found and self.window.annotations.image_id is not None:
            self._import(found)
        if retrieved.reports and self.window.annotations.image_id is not None:
            self._import_reports(retrieved.reports)
        if problem:
            self.window.banner.show_message(problem)
        self.retrieve_finished.emit(opened)

    def _import(self, found) -> None:
        controller = self.window.annotations
        doc, image_id = controller.doc, controller.image_id
        new = [a for a in found if doc.find(image_id, a.id) is None]
        for annotation in new:
            doc.ensure_label(annotation.label)
        if new:
            doc.execute(AddAnnotations(image_id, new, text="Annotations from PACS"))
            self.window.statusBar().showMessage(f"{len(new)} annotation(s) read from the PACS", 5000)

    def _import_reports(self, reports) -> None:
        """The study's reports from the archive join the project (one undo step each), chained to its own."""
        from engine.pacs.report_writeback import reports_to_add

        controller = self.window.annotations
        doc, image_id = controller.doc, controller.image_id
        added = reports_to_add(doc, doc.study_key(image_id), tuple(reports))
        for report in added:
            doc.execute(PutReport(image_id, report.id, report, "Report from PACS"))
        if added:
            self.window.statusBar().showMessage(f"{len(added)} report(s) of this study read from the PACS", 5000)

    # ----- send
    def _server_for(self, stack) -> PacsServer | None:
        """Where a send goes: the server the series came from, else the default (or first) one."""
        server = self._origin.get(stack.key)
        if server is None:
            settings = load_pacs_settings()
            server = settings.server(settings.default_server) or (settings.servers[0] if settings.servers else None)
        return server

    def send_current(self) -> None:
        controller = self.window.annotations
        stack = self.window.state.stack
        if controller.doc is None or controller.image_id is None or stack is None:
            self.window.banner.show_message("Open an annotated DICOM series first.")
            return
        server = self._server_for(stack)
        if server is None:
            self.window.banner.show_message("No PACS configured: add one under File > PACS servers….")
            return
        snapshot = document_from_dict(document_to_dict(controller.doc))  # the worker never sees the live document
        self.window.statusBar().showMessage(f"Sending annotations to {server.name}…")
        worker = create_worker(_send, server, snapshot, controller.image_id, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_sent)
        worker.errored.connect(self._on_send_failed)
        worker.start()

    def send_report(self, report_id: str, observer, pdf: bytes | None) -> None:
        """Send a report's SR (and PDF) on a worker thread; the answer is ``report_send_finished``."""
        controller = self.window.annotations
        stack = self.window.state.stack
        server = None if stack is None else self._server_for(stack)
        if controller.doc is None or server is None:
            message = "No PACS configured: add one under File > PACS servers…; the report is kept on this computer."
            self.window.banner.show_message(message)
            self.report_send_finished.emit(message, False)
            return
        snapshot = document_from_dict(document_to_dict(controller.doc))  # the worker never sees the live document
        self.window.statusBar().showMessage(f"Sending the report to {server.name}…")
        worker = create_worker(
            _send_report, server, snapshot, report_id, observer, pdf, _start_thread=False, _ignore_errors=True
        )
        worker.returned.connect(self._on_report_sent)
        worker.errored.connect(self._on_report_send_failed)
        worker.start()

    def _on_report_sent(self, message: str) -> None:
        self.window.statusBar().showMessage(message, 8000)
        self.report_send_finished.emit(message, True)

    def _on_report_send_failed(self, error: Exception) -> None:
        self.window.statusBar().clearMessage()
        message = str(error) if isinstance(error, PacsError) else f"Sending the report failed: {error}"
        message = f"{message} The report is kept as it was on this computer."
        self.window.banner.show_message(message)
        self.report_send_finished.emit(message, False)

    def _on_sent(self, message: str) -> None:
        self.window.statusBar().showMessage(message, 8000)
        self.send_finished.emit(message)

    def _on_send_failed(self, error: Exception) -> None:
        self.window.statusBar().clearMessage()
        message = str(error) if isinstance(error, PacsError) else f"Sending failed: {error}"
        self.window.banner.show_message(f"{message} Your annotations are unchanged on this computer.")
        self.send_finished.emit(message)
