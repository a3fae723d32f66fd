"""DIMSE (C-ECHO, C-FIND, C-GET / C-MOVE, C-STORE) through pynetdicom.

Each operation opens its own association and releases it, so a connection object holds no
socket between calls. Before associating we open a plain TCP connection once: pynetdicom only
logs why a connection failed, and the user needs "refused" told apart from "unknown host".
Retrieval prefers C-GET (the instances come back on the same association); when the PACS does
not offer it and a storage port is configured, C-MOVE sends them to our own storage SCP.
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

from engine.pacs.errors import PacsError, RetrieveCancelled, SendRejected, network_error
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

    def _ae(self) -> AE:
        ae = AE(ae_title=self.server.our_aet)
        t = self.server.timeout_s
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = t
        return ae

    def _probe(self) -> None:
        try:
            socket.create_connection((self.address.host, self.address.port), timeout=self.server.timeout_s).close()
        except OSError as err:
            raise network_error(err, self.where, self.server.timeout_s) from None

    def _associate(self, ae: AE, **kwargs) -> Association:
        self._probe()
        assoc = ae.associate(self.address.host, self.address.port, ae_title=self.address.called_aet, **kwargs)
        if assoc.is_established:
            return assoc
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
                elif status.Status not in (0x0000, *_PENDING):
                    raise PacsError(f"{self.where} refused the C-FIND (status {status.Status:#06x}).")
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

    def _run_retrieve(self, assoc: Association, responses, cancel: threading.Event, failures: list[str]) -> None:
        try:
            for status, _ in responses:
                if cancel.is_set():
                    assoc.abort()
                    raise RetrieveCancelled("Retrieve cancelled.")
                if not status:
                    raise PacsError(f"{self.where} stopped answering during the retrieve (connection lost or timeout).")
                code = status.Status
                if code in _PENDING or code == 0x0000:
                    continue
                if code == 0xB000 and not failures:
                    failed = status.get("NumberOfFailedSuboperations", "some")
                    raise PacsError(f"{self.where} could not send {failed} instance(s).")
                if code != 0xB000:
                    raise PacsError(f"{self.where} refused the retrieve (status {code:#06x}).")
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
        self._run_retrieve(
            assoc, assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet), cancel, failures
        )

    def _c_move(self, identifier: Dataset, sink, cancel: threading.Event) -> None:
        failures: list[str] = []
        scp_ae = AE(ae_title=self.server.our_aet)
        scp_ae.supported_contexts = StoragePresentationContexts
        try:
            scp = scp_ae.start_server(
                ("", self.server.storage_port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, self._store_handler(sink, cancel, failures))],
            )
        except OSError as err:
            raise PacsError(
                f"Cannot listen on storage port {self.server.storage_port} for C-MOVE: {err.strerror}."
            ) from None
        try:
            ae = self._ae()
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            assoc = self._associate(ae)
            self._accepted(assoc, StudyRootQueryRetrieveInformationModelMove, "C-MOVE (Study Root)")
            self._run_retrieve(
                assoc,
                assoc.send_c_move(identifier, self.server.our_aet, StudyRootQueryRetrieveInformationModelMove),
                cancel,
                failures,
            )
        finally:
            scp.shutdown()

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
                if status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
                    raise SendRejected(f"{self.where} rejected the instance (C-STORE status {status.Status:#06x}).")
                stored += 1
        finally:
            if assoc.is_established:
                assoc.release()
        return stored


class _NoCGet(Exception):
    """The peer did not accept the C-GET presentation context."""
