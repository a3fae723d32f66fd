"""DIMSE (C-ECHO, C-FIND, C-GET / C-MOVE, C-STORE) through pynetdicom.

Each operation opens its own association and releases it, so a connection object holds no
socket between calls. The association attempt is the only probe: a bare TCP connect-and-close
before it is logged by archives as a protocol error (dcmtk: "DUL Finite State Machine Error"), so
``_Requestor`` keeps the reason pynetdicom's TCP connect failed (pynetdicom only logs it) and the
user still hears "refused", "unknown host" or "timeout". Every refusal status is one sentence
with what to do (``errors.dimse_status_error``). Retrieval prefers C-GET (the instances come
back on the same association); when the PACS does not offer it and a storage port is configured,
C-MOVE sends them to our own storage SCP, which accepts only that archive (``engine.pacs.listener``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Self

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import AddressInformation, AssociationSocket

from engine.pacs.errors import PacsError, RetrieveCancelled, SendRejected, dimse_status_error, network_error
from engine.pacs.listener import StorageListener
from engine.pacs.query import (
    SERIES_FIELDS,
    STUDY_FIELDS,
    SeriesResult,
    StudyQuery,
    StudyResult,
    series_from_dataset,
    study_from_dataset,
)
from engine.pacs.servers import PacsServer, parse_dimse_url

# pynetdicom logs identifiers (patient names) at debug/info level: keep it to warnings.
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

_PENDING = (0xFF00, 0xFF01)
_FIND_DONE = (0x0000, 0xB001)  # B001: the archive capped the matches (what came is still right)
_STORE_KEPT = (0x0000, 0xB000, 0xB006, 0xB007)  # warnings: stored, with coercion or elements dropped
_STORE_FAILED = 0xA700  # "Out of resources" answered to a C-STORE we could not keep
_STORE_CANCELLED = 0xFE00


class DimseConnection:
    """One DIMSE peer (``dicom://AET@host:port``) seen from our AE title."""

    def __init__(self, server: PacsServer) -> None:
        self.server = server
        self.address = parse_dimse_url(server.url)
        self.where = f"{self.address.host}:{self.address.port}"

    def close(self) -> None:
        """Nothing stays open between operations."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- association -----------------------------------------------------------------------

    def _ae(self) -> _Requestor:
        ae = _Requestor(ae_title=self.server.our_aet)
        t = self.server.timeout_s
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = t
        return ae

    def _associate(self, ae: _Requestor, **kwargs) -> Association:
        """Associate, or one sentence saying why not (the TCP failure, a rejection, or no answer)."""
        try:
            assoc = ae.associate(self.address.host, self.address.port, ae_title=self.address.called_aet, **kwargs)
        except OSError as err:  # the host name did not resolve: nothing was sent
            raise network_error(err, self.where, self.server.timeout_s) from None
        if assoc.is_established:
            return assoc
        if ae.connect_failure is not None:
            raise network_error(ae.connect_failure, self.where, self.server.timeout_s)
        if assoc.is_rejected:
            raise PacsError(
                f"{self.where} rejected the association: it does not accept calling AE title "
                f"{self.server.our_aet} or called AE title {self.address.called_aet}."
            )
        raise PacsError(
            f"{self.where} accepted the connection but no DICOM association was made "
            "(is it a DICOM port? did it time out?)."
        )

    def _accepted(self, assoc: Association, sop_class: str, what: str) -> None:
        if not any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts):
            assoc.release()
            raise PacsError(f"{self.where} does not offer {what}.")

    # --- operations ------------------------------------------------------------------------

    def echo(self) -> str:
        ae = self._ae()
        ae.add_requested_context(Verification)
        assoc = self._associate(ae)
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
        if not status or status.Status != 0:
            raise PacsError(f"{self.where} did not answer the C-ECHO.")
        return f"DICOM peer {self.address.called_aet} at {self.where} answered C-ECHO."

    def _find(self, identifier: Dataset) -> Iterator[Dataset]:
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = self._associate(ae)
        try:
            self._accepted(assoc, StudyRootQueryRetrieveInformationModelFind, "C-FIND (Study Root)")
            for status, found in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
                if not status:
                    raise PacsError(f"{self.where} stopped answering the C-FIND (timeout or aborted association).")
                if status.Status in _PENDING and found is not None:
                    yield found
                elif status.Status not in (*_FIND_DONE, *_PENDING):
                    raise dimse_status_error("C-FIND", status.Status, self.where, aet=self.server.our_aet)
        finally:
            if assoc.is_established:
                assoc.release()

    def find_studies(self, query: StudyQuery) -> list[StudyResult]:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        for keyword in STUDY_FIELDS:
            setattr(identifier, keyword, "")
        for keyword, value in query.filters().items():
            setattr(identifier, keyword, value)
        found = []
        for ds in self._find(identifier):
            found.append(study_from_dataset(ds))
            if len(found) >= query.limit:
                break
        return found

    def find_series(self, study_uid: str) -> list[SeriesResult]:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_uid
        for keyword in SERIES_FIELDS:
            setattr(identifier, keyword, "")
        return [series_from_dataset(ds, study_uid) for ds in self._find(identifier)]

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "IMAGE"
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid
        identifier.SOPInstanceUID = ""
        return [str(ds.SOPInstanceUID) for ds in self._find(identifier) if ds.get("SOPInstanceUID")]

    def retrieve_series(
        self,
        study_uid: str,
        series_uid: str,
        sink: Callable[[Dataset], None],
        cancel: threading.Event,
        method: str = "auto",
    ) -> None:
        """C-GET the series (``method`` "get"), C-MOVE it to our SCP ("move"), or C-GET then C-MOVE ("auto")."""
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid
        if method in ("auto", "get"):
            received = []

            def counting_sink(dataset: Dataset) -> None:
                received.append(None)
                sink(dataset)

            fallback = method == "auto" and self.server.storage_port > 0
            try:
                self._c_get(identifier, counting_sink, cancel)
                return
            except _NoCGet:
                if not fallback:
                    raise PacsError(
                        f"{self.where} does not offer C-GET and no storage port is set for C-MOVE."
                    ) from None
            except RetrieveCancelled:
                raise
            except PacsError:
                if not fallback or received:  # refused C-GET before any image: a PACS that only moves
                    raise
        self._c_move(identifier, sink, cancel)

    def _store_handler(self, sink: Callable[[Dataset], None], cancel: threading.Event, failures: list[str]):
        def on_store(event) -> int:
            if cancel.is_set():
                return _STORE_CANCELLED
            try:
                dataset = event.dataset
                dataset.file_meta = event.file_meta
                sink(dataset)
            except Exception as err:  # noqa: BLE001 - reported after the retrieve, the rest goes on
                failures.append(f"{type(err).__name__}: {err}")
                return _STORE_FAILED
            return 0x0000

        return on_store

    def _run_retrieve(
        self, assoc: Association, service: str, responses, cancel: threading.Event, failures: list[str], listener=""
    ) -> None:
        try:
            for status, _ in responses:
                if cancel.is_set():
                    assoc.abort()
                    raise RetrieveCancelled("Retrieve cancelled.")
                if not status:
                    raise PacsError(f"{self.where} stopped answering during the retrieve (connection lost or timeout).")
                code = status.Status
                if code in _PENDING or code == 0x0000 or (code == 0xB000 and failures):
                    continue  # B000 with failures of our own: those are the better explanation
                raise dimse_status_error(
                    service, code, self.where, aet=self.server.our_aet, listener=listener, detail=_failed(status)
                )
            if failures:
                raise PacsError(f"{len(failures)} instance(s) could not be kept: {failures[0]}.")
        finally:
            if assoc.is_established:
                assoc.release()

    def _c_get(self, identifier: Dataset, sink, cancel: threading.Event) -> None:
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        for cx in StoragePresentationContexts[:127]:
            ae.add_requested_context(cx.abstract_syntax)
            roles.append(build_role(cx.abstract_syntax, scp_role=True))
        failures: list[str] = []
        assoc = self._associate(
            ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, self._store_handler(sink, cancel, failures))]
        )
        if not any(cx.abstract_syntax == StudyRootQueryRetrieveInformationModelGet for cx in assoc.accepted_contexts):
            assoc.release()
            raise _NoCGet
        responses = assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        self._run_retrieve(assoc, "C-GET", responses, cancel, failures)

    def _c_move(self, identifier: Dataset, sink, cancel: threading.Event) -> None:
        """C-MOVE to our own storage SCP, which listens only for this archive and only while it runs."""
        failures: list[str] = []
        with StorageListener(self.server, self._store_handler(sink, cancel, failures)) as listener:
            ae = self._ae()
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            assoc = self._associate(ae)
            self._accepted(assoc, StudyRootQueryRetrieveInformationModelMove, "C-MOVE (Study Root)")
            responses = assoc.send_c_move(identifier, self.server.our_aet, StudyRootQueryRetrieveInformationModelMove)
            self._run_retrieve(
                assoc, "C-MOVE", responses, cancel, failures, listener=listener.where(assoc.requestor.address)
            )

    def send(self, datasets: Sequence[Dataset]) -> int:
        """C-STORE each dataset; SendRejected names the first refusal."""
        ae = self._ae()
        for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
            stored_as = {
                str(ds.file_meta.TransferSyntaxUID)
                for ds in datasets
                if str(ds.SOPClassUID) == sop_class and "TransferSyntaxUID" in getattr(ds, "file_meta", {})
            }
            syntaxes = sorted(stored_as | {ExplicitVRLittleEndian, ImplicitVRLittleEndian})
            ae.add_requested_context(sop_class, syntaxes)
        assoc = self._associate(ae)
        stored = 0
        try:
            for ds in datasets:
                started = time.monotonic()
                try:
                    status = assoc.send_c_store(ds)
                except ValueError as err:  # no accepted context for this SOP class / syntax
                    raise SendRejected(f"{self.where} does not accept {ds.SOPClassUID.name} ({err}).") from None
                if not status and time.monotonic() - started < self.server.timeout_s:  # ended by the peer
                    raise SendRejected(
                        f"{self.where} rejected the instance by aborting the association: it does "
                        f"not accept C-STORE from AE title {self.server.our_aet}."
                    )
                if not status:
                    raise PacsError(f"{self.where} stopped answering during the C-STORE (timeout).")
                if status.Status not in _STORE_KEPT:
                    raise dimse_status_error(
                        "C-STORE", status.Status, self.where, aet=self.server.our_aet, error_type=SendRejected
                    )
                stored += 1
        finally:
            if assoc.is_established:
                assoc.release()
        return stored


def _failed(status: Dataset) -> str:
    """How many sub-operations failed, when the archive says so in a C-GET / C-MOVE final status."""
    failed = status.get("NumberOfFailedSuboperations")
    return f"{failed} failed" if status.Status == 0xB000 and failed not in (None, "") else ""


class _TcpSocket(socket.socket):
    """A socket that keeps the reason its ``connect`` failed: pynetdicom logs that and drops it."""

    failure: OSError | None = None

    def connect(self, address) -> None:
        try:
            super().connect(address)
        except OSError as err:
            self.failure = err
            raise


class _ReportingSocket(AssociationSocket):
    """pynetdicom's association socket over a ``_TcpSocket``."""

    tcp: _TcpSocket | None = None

    def _create_socket(self, address: AddressInformation) -> socket.socket:
        plain = super()._create_socket(address)  # created, options set, bound
        timeout = plain.gettimeout()
        self.tcp = _TcpSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        self.tcp.settimeout(timeout)
        return self.tcp


class _Requestor(AE):
    """An AE whose last association attempt tells why its TCP connection failed (``connect_failure``),
    so the association itself is the probe: no bare TCP connection that archives log as an error."""

    _last: _ReportingSocket | None = None

    def _create_socket(self, assoc, address, tls_args) -> AssociationSocket:
        sock = self._last = _ReportingSocket(assoc, address=address)
        sock.tls_args = tls_args
        return sock

    @property
    def connect_failure(self) -> OSError | None:
        return self._last.tcp.failure if self._last is not None and self._last.tcp is not None else None


class _NoCGet(Exception):
    """The peer did not accept the C-GET presentation context."""
