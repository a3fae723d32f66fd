"""Reports to and from the PACS: the report's DICOM SR sent by the annotations' send path, read back.

``send_report_sr`` builds the report's SR (``engine.report.sr``), and when asked its Encapsulated
PDF (``engine.report.pdf_dicom``), and sends them like the annotation SR (``writeback``): the
archive is asked first, so the same report sent twice stores one instance. Nothing local changes,
so a refused send (``SendRejected``) keeps the draft as it was.
``reports_from_pacs`` retrieves the SR series of a study and reads every report among them; SRs
that hold no report (measurement-only SRs, dose reports, other vendors' SRs) are passed over,
damaged ones are a warning sentence, never an exception. ``reports_to_add`` says which of them a
project lacks: the archive's copy of a report the project already holds (the same SR instance) is
not added twice, and a draft from the archive never joins a study the project already reports on
(the local draft is newer work); an amendment's predecessor is named by the project's own id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.sr_reader import SrFileError, load_sr
from engine.annotations.formats.targets import ExportError
from engine.pacs.cache import InstanceCache
from engine.pacs.errors import PacsError
from engine.pacs.retrieve import Connection, retrieve_series
from engine.pacs.writeback import SR_MODALITY, SentReport, is_stored
from engine.report.model import Observer, Report
from engine.report.pdf_dicom import build_report_pdf_dicom
from engine.report.sr import build_report_sr, report_from_sr, report_uids


def send_report_sr(
    connection: Connection,
    doc: AnnotationDocument,
    report: Report,
    observer: Observer | None = None,
    pdf: bytes | None = None,
) -> SentReport:
    """Send the report's SR (and, given the printed ``pdf``, its Encapsulated PDF) unless the archive
    already holds them; ``PacsError`` says why not. Both are built before anything is sent."""
    try:
        sr = build_report_sr(doc, report, observer)
        document = None if pdf is None else build_report_pdf_dicom(doc, report, pdf)
    except ExportError as err:
        raise PacsError(f"The report was not sent: {err}.") from None
    new = [ds for ds in (sr, document) if ds is not None and not is_stored(connection, ds)]
    if new:
        connection.send(new)
    return SentReport(sr, already_stored=not new, pdf=document)


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
        # Every report of a study shares one series: a cached copy is stale once another report joined it.
        cached = cache.is_complete(study_uid, series.series_uid) and len(cache.paths(study_uid, series.series_uid))
        fresh = cached == len(connection.instance_uids(study_uid, series.series_uid))
        result = retrieve_series(connection, cache, study_uid, series.series_uid, cancel=cancel, use_cache=fresh)
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


def reports_to_add(doc: AnnotationDocument, study_key: str, found: tuple[Report, ...]) -> list[Report]:
    """The archive's reports of ``study_key`` the project lacks, oldest first, chained to its own."""
    local = {report_uids(r)[1]: r.id for r in doc.reports(study_key)}
    had_reports = bool(local)
    added = []
    for report in found:
        if report.study_key != study_key or report.id in local or doc.find_report(report.id) is not None:
            continue
        if not report.is_final and had_reports:
            continue
        report = replace(report, replaces=local.get(report.replaces, report.replaces))
        local[report.id] = report.id
        added.append(report)
    return added
