"""Annotations to and from the PACS as DICOM SR (TID 1500), referencing the source instances.

``send_annotations`` builds the SR of one image (a series) from the reviewed annotations and
sends it (STOW-RS or C-STORE); the local document is only read, so a refused send loses
nothing. ``annotations_from_pacs`` finds the SR series of a study, retrieves them into the
cache and reads back the annotations that reference the series being opened; later reports
win over earlier ones for the same annotation (same tracking UID). Any SR may be there (other
viewers' reports, dose reports, damaged files): what cannot be read is a warning in the
result, never an exception, so a bad SR never stops a series from opening.
"""

from __future__ import annotations

import logging
import threading

import pydicom

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.dicom_sr import build_srs
from engine.annotations.formats.sr_reader import SrFileError, SrReading, load_sr, read_sr
from engine.annotations.formats.targets import ExportError
from engine.annotations.image_ref import ImageRef
from engine.annotations.model import Annotation
from engine.pacs.cache import InstanceCache
from engine.pacs.errors import PacsError
from engine.pacs.retrieve import Connection, retrieve_series

SR_MODALITY = "SR"
log = logging.getLogger(__name__)


def send_annotations(connection: Connection, doc: AnnotationDocument, image_id: str) -> pydicom.Dataset:
    """Send the SR of ``image_id``'s reviewed annotations; returns the SR that was stored."""
    try:
        reports = build_srs(doc, image_ids=[image_id])  # reviewed only: pending model output stays local
    except ExportError as err:
        raise PacsError(f"Nothing to send: {err}.") from None
    sr = next(iter(reports.values()))
    connection.send([sr])
    return sr


def annotations_from_pacs(
    connection: Connection, cache: InstanceCache, ref: ImageRef, *, cancel: threading.Event | None = None
) -> SrReading:
    """Every annotation of ``ref`` found in the SR series of its study, and what was skipped.

    The warnings name each SR file that could not be read and each part of a report that could
    not be mapped. Documents that are not measurement reports (the dose report of nearly every
    CT study) are only logged: they are expected, and hold nothing to show.
    """
    if not ref.study_instance_uid:
        return SrReading()
    reports: list[pydicom.Dataset] = []
    warnings: list[str] = []
    for series in connection.find_series(ref.study_instance_uid):
        if series.modality != SR_MODALITY:
            continue
        result = retrieve_series(connection, cache, ref.study_instance_uid, series.series_uid, cancel=cancel)
        for path in result.paths:
            try:
                reports.append(load_sr(path))
            except SrFileError as err:
                warnings.append(str(err))
    reports.sort(key=lambda ds: (str(ds.get("ContentDate", "")), str(ds.get("ContentTime", ""))))
    merged: dict[str, Annotation] = {}
    for report in reports:
        reading = read_sr(report, ref)
        merged.update((annotation.id, annotation) for annotation in reading.annotations)
        if reading.measurement_report:
            warnings += reading.warnings
        else:
            log.info("%s", " ".join(reading.warnings))
    for warning in warnings:
        log.warning("%s", warning)
    return SrReading(tuple(merged.values()), tuple(warnings))
