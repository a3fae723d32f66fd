"""Reports to and from the PACS: the report's DICOM SR sent by the annotations' send path, read back.

``send_report_sr`` builds the report's SR (``engine.report.sr``) and sends it like the annotation
SR (``writeback``): the archive is asked first, so the same report sent twice stores one
instance. Nothing local changes, so a refused send (``SendRejected``) keeps the draft as it was.
``reports_from_pacs`` retrieves the SR series of a study and reads every report among them; SRs
that hold no report (measurement-only SRs, dose reports) are passed over, damaged ones are a
warning sentence, never an exception.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.sr_reader import SrFileError, load_sr
from engine.annotations.formats.targets import ExportError
from engine.pacs.cache import InstanceCache
from engine.pacs.errors import PacsError
from engine.pacs.retrieve import Connection, retrieve_series
from engine.pacs.writeback import SR_MODALITY, SentReport, is_stored
from engine.report.model import Observer, Report
from engine.report.sr import build_report_sr, report_from_sr


def send_report_sr(
    connection: Connection, doc: AnnotationDocument, report: Report, observer: Observer | None = None
) -> SentReport:
    """Send the report's SR unless the archive already holds it; ``PacsError`` says why not."""
    try:
        sr = build_report_sr(doc, report, observer)
    except ExportError as err:
        raise PacsError(f"The report was not sent: {err}.") from None
    if is_stored(connection, sr):
        return SentReport(sr, already_stored=True)
    connection.send([sr])
    return SentReport(sr)


@dataclass(frozen=True)
class PacsReports:
    reports: tuple[Report, ...] = ()
    warnings: tuple[str, ...] = ()


def reports_from_pacs(
    connection: Connection, cache: InstanceCache, study_uid: str, *, cancel: threading.Event | None = None
) -> PacsReports:
    """Every report in the SR series of a study, oldest first, and one sentence per unreadable file."""
    found: list[Report] = []
    warnings: list[str] = []
    for series in connection.find_series(study_uid):
        if series.modality != SR_MODALITY:
            continue
        result = retrieve_series(connection, cache, study_uid, series.series_uid, cancel=cancel)
        for path in result.paths:
            try:
                report = report_from_sr(load_sr(path))
            except SrFileError as err:
                warnings.append(str(err))
                continue
            if report is not None:
                found.append(report)
    found.sort(key=lambda r: r.created)
    return PacsReports(tuple(found), tuple(warnings))
