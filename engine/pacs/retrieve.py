"""Series retrieval into the cache, streamed, with progress and cancel; and sending files.

Used by the GUI's background job, the command line and the benchmark alike: one function that
asks the connection for the series and writes each instance to the cache the moment it arrives,
calling ``on_instance`` so a viewer can show the first image while the rest is on its way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom import Dataset

from engine.pacs.cache import InstanceCache
from engine.pacs.dicomweb import DicomWebConnection
from engine.pacs.dimse import DimseConnection
from engine.pacs.errors import PacsError, RetrieveCancelled
from engine.pacs.servers import PacsServer

Connection = DicomWebConnection | DimseConnection
# on_instance(path, instances done, instances expected or None)
InstanceCallback = Callable[[Path, int, int | None], None]


def connect(server: PacsServer) -> Connection:
    """The connection for an entry's protocol (no network traffic yet)."""
    problems = server.problems()
    if problems:
        raise PacsError(problems[0])
    return DimseConnection(server) if server.kind == "dimse" else DicomWebConnection(server)


@dataclass(frozen=True)
class RetrieveResult:
    paths: tuple[Path, ...]
    from_cache: bool
    warning: str = ""  # the cache is stuck over its limit (everything left is open): say so once


def retrieve_series(
    connection: Connection,
    cache: InstanceCache,
    study_uid: str,
    series_uid: str,
    *,
    on_instance: InstanceCallback | None = None,
    cancel: threading.Event | None = None,
    use_cache: bool = True,
) -> RetrieveResult:
    """Fetch a series into ``cache`` (or reuse a complete cached copy) and list its files.

    Raises ``RetrieveCancelled`` when ``cancel`` is set (the whole instances already written
    stay; the series is not marked complete) and ``PacsError`` for everything else.
    """
    cancel = cancel or threading.Event()
    if use_cache and cache.is_complete(study_uid, series_uid):
        paths = cache.paths(study_uid, series_uid)
        cache.touch(study_uid, series_uid)
        for done, path in enumerate(paths, start=1):
            if on_instance:
                on_instance(path, done, len(paths))
        return RetrieveResult(tuple(paths), from_cache=True)
    expected = expected_instances(connection, study_uid, series_uid)
    if expected == 0:
        raise PacsError("The PACS lists no instances in this series.")
    cache.touch(study_uid, series_uid)
    written: dict[Path, None] = {}
    held: list[Dataset] = []  # the newest instance, kept back until the next one proves it complete

    def store(dataset: Dataset) -> None:
        path = cache.put(study_uid, series_uid, dataset)
        written[path] = None
        if on_instance:
            on_instance(path, len(written), expected)

    def sink(dataset: Dataset) -> None:
        if str(dataset.get("SeriesInstanceUID", "")) != series_uid:
            raise PacsError("The PACS sent an instance of another series.")
        if held:
            store(held.pop())
        held.append(dataset)

    try:
        connection.retrieve_series(study_uid, series_uid, sink, cancel)
        if cancel.is_set():
            raise RetrieveCancelled("Retrieve cancelled.")
        # A multipart answer cut off by a dying server ends without an error, its last part parsed
        # from whatever arrived: keep that part only when the answer was as long as announced.
        if held and len(written) + 1 >= expected:
            store(held.pop())
    finally:
        eviction = cache.evict(keep=[(study_uid, series_uid)])
    if len(written) < expected:
        raise PacsError(
            f"The PACS sent {len(written)} of the {expected} instances of the series and stopped "
            f"(connection to {connection_name(connection)} lost?); open it again to fetch the rest."
        )
    cache.mark_complete(study_uid, series_uid, len(written))
    return RetrieveResult(tuple(written), from_cache=False, warning=eviction.warning)


def connection_name(connection: Connection) -> str:
    return connection.where if isinstance(connection, DimseConnection) else connection.url


def expected_instances(connection: Connection, study_uid: str, series_uid: str) -> int:
    """How many instances the series has: the series-level count when the PACS gives one (one cheap
    query; listing 300 instances first would delay the first image), else the instance list."""
    for series in connection.find_series(study_uid):
        if series.series_uid == series_uid and series.instance_count is not None:
            return series.instance_count
    return len(connection.instance_uids(study_uid, series_uid))


def read_for_send(paths: Sequence[str | Path]) -> list[Dataset]:
    """Read the files to send; PacsError naming the first that is not DICOM."""
    datasets = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(path))
        except (OSError, pydicom.errors.InvalidDicomError) as err:
            raise PacsError(f"{path} cannot be sent: it is not a readable DICOM file ({type(err).__name__}).") from None
    return datasets
