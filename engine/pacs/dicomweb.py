"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) through dicomweb-client.

Every request goes through ``_call`` so that any failure becomes one ``PacsError`` sentence.
Retrieval streams: ``iter_series`` parses the multipart answer part by part, so the first
instance reaches the caller while the rest is still on the wire.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Self, TypeVar

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from requests.adapters import HTTPAdapter

from engine.pacs.errors import PacsError, RetrieveCancelled, SendRejected, http_error
from engine.pacs.query import (
    SERIES_FIELDS,
    STUDY_FIELDS,
    SeriesResult,
    StudyQuery,
    StudyResult,
    series_from_dataset,
    study_from_dataset,
)
from engine.pacs.servers import PacsServer

T = TypeVar("T")
# Their debug output and retry warnings carry request URLs, whose query can hold patient identifiers.
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
logging.getLogger("retrying").setLevel(logging.ERROR)
# Query characters sent literally: some servers (Orthanc 1.10's DICOMweb plugin among them) match
# query values without percent-decoding them, so ``%2A`` would be searched as text, not a wildcard.
_LITERAL = {"%2A": "*", "%3F": "?", "%5E": "^", "%2C": ","}


class _LiteralWildcards(HTTPAdapter):
    """Sends DICOM wildcards and the PN separator unescaped (RFC 3986 allows them in a query)."""

    def send(self, request, *args, **kwargs):
        if request.url and "?" in request.url:
            path, query = request.url.split("?", 1)
            for encoded, literal in _LITERAL.items():
                query = query.replace(encoded, literal).replace(encoded.lower(), literal)
            request.url = f"{path}?{query}"
        return super().send(request, *args, **kwargs)


class DicomWebConnection:
    """One DICOMweb server; cheap to create, holds a requests session."""

    def __init__(self, server: PacsServer) -> None:
        self.server = server
        self.url = server.url.strip().rstrip("/")
        session = requests.Session()
        for scheme in ("http://", "https://"):
            session.mount(scheme, _LiteralWildcards())
        secret = server.secret()
        if server.auth == "basic":
            session.auth = (server.username, secret or "")
        elif server.auth == "bearer":
            session.headers["Authorization"] = f"Bearer {secret}"
        self._session = session
        self._client = DICOMwebClient(self.url, session=session, timeout=server.timeout_s)
        self._client.set_http_retry_params(retry=False)  # a refused password must not be retried

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except PacsError:
            raise
        except Exception as err:
            raise http_error(err, self.url, self.server.timeout_s) from err

    def echo(self) -> str:
        """A one-study QIDO query: proves address, credentials and DICOM answers."""
        self._call(lambda: [Dataset.from_json(item) for item in self._client.search_for_studies(limit=1)])
        return f"DICOMweb service at {self.url} answered a QIDO-RS query."

    def find_studies(self, query: StudyQuery) -> list[StudyResult]:
        def search() -> list[StudyResult]:
            # a space cannot travel literally either: "?" matches it (and nothing much else)
            filters = {key: value.replace(" ", "?") for key, value in query.filters().items()}
            found = self._client.search_for_studies(
                search_filters=filters, fields=list(STUDY_FIELDS), limit=query.limit
            )
            return [study_from_dataset(Dataset.from_json(item)) for item in found]

        return self._call(search)

    def find_series(self, study_uid: str) -> list[SeriesResult]:
        def search() -> list[SeriesResult]:
            found = self._client.search_for_series(study_uid, fields=list(SERIES_FIELDS))
            return [series_from_dataset(Dataset.from_json(item), study_uid) for item in found]

        return self._call(search)

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        def search() -> list[str]:
            found = self._client.search_for_instances(study_uid, series_uid, fields=["SOPInstanceUID"])
            return [str(item["00080018"]["Value"][0]) for item in found]  # KeyError/TypeError: not DICOM JSON

        return self._call(search)

    def retrieve_series(
        self, study_uid: str, series_uid: str, sink: Callable[[Dataset], None], cancel: threading.Event
    ) -> None:
        """WADO-RS of the whole series, in the transfer syntax the server stores (no transcoding).

        The multipart answer is parsed part by part, each instance going to ``sink`` the moment
        it is complete, while the rest is still on the wire.
        """

        def stream() -> None:
            instances = self._client.iter_series(study_uid, series_uid, media_types=(("application/dicom", "*"),))
            try:
                for dataset in instances:
                    if cancel.is_set():
                        raise RetrieveCancelled("Retrieve cancelled.")
                    sink(dataset)
            finally:
                instances.close()  # closes the HTTP response on cancel and on error

        self._call(stream)

    def send(self, datasets: Sequence[Dataset]) -> int:
        """STOW-RS; returns how many were stored, SendRejected when any was refused."""

        def store() -> int:
            try:
                answer = self._client.store_instances(list(datasets))
            except requests.HTTPError as err:
                if err.response is not None and err.response.status_code in (400, 403, 409, 415, 422):
                    raise SendRejected(f"{self.url} rejected the upload (HTTP {err.response.status_code}).") from None
                raise
            failed = answer.get("FailedSOPSequence") or []
            if failed:
                reason = failed[0].get("FailureReason", "")
                raise SendRejected(
                    f"{self.url} rejected {len(failed)} of {len(datasets)} instance(s)"
                    f"{f' (failure reason {reason:#06x})' if reason != '' else ''}."
                )
            return len(answer.get("ReferencedSOPSequence") or datasets)

        return self._call(store)
