"""Annotations to and from the PACS as DICOM SR (TID 1500), referencing the source instances.

``send_annotations`` builds the SR of one image (a series) from the reviewed annotations and
sends it (STOW-RS or C-STORE); the local document is only read, so a refused send loses nothing.
The SR's UIDs come from its content, so sending unchanged annotations again finds the report
already in the archive and stores no duplicate. ``annotations_from_pacs`` finds the SR series of
a study, retrieves them into the cache and reads back the annotations that reference the series
being opened; later reports win over earlier ones for the same annotation (same tracking UID).
Any SR may be there (other viewers' reports, dose reports, damaged files): what cannot be read
is a warning in the result, never an exception, so a bad SR never stops a series from opening.

Masks travel as a DICOM SEG beside the SR (``seg_writeback``): the same review scope, the same
content-derived UIDs and ask-the-archive-first rule, and the study's SEG series are read back
with the SRs (only SEGs that reference the series being opened).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass

import pydicom
from pydicom.uid import generate_uid

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.dicom_sr import build_srs
from engine.annotations.formats.sr_reader import SrFileError, SrReading, load_sr, read_sr
from engine.annotations.formats.targets import (
    ExportError,
    ReviewScope,
    kept_boxes,
    kept_labels,
    kept_masks,
    kept_measurements,
    kept_placed_boxes,
)
from engine.annotations.image_ref import ImageRef
from engine.annotations.model import Annotation
from engine.pacs.cache import InstanceCache
from engine.pacs.errors import PacsError
from engine.pacs.retrieve import Connection, retrieve_series
from engine.pacs.seg_writeback import SEG_MODALITY, build_pacs_seg, masks_from_seg, set_uids

SR_MODALITY = "SR"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentReport:
    """What a send did: the SR, and whether the archive already held it (nothing was stored)."""

    sr: pydicom.Dataset | None  # None only when the reviewed annotations are masks without measurements
    already_stored: bool = False  # True only when the archive already held everything (SR and SEG)
    seg: pydicom.Dataset | None = None  # the SEG of the reviewed masks, when there are any
    pdf: pydicom.Dataset | None = None  # a report's Encapsulated PDF, when it was sent with its SR

    @property
    def instances(self) -> tuple[pydicom.Dataset, ...]:
        return tuple(ds for ds in (self.sr, self.seg, self.pdf) if ds is not None)

    @property
    def objects(self) -> str:
        """'DICOM SR 1.2… and DICOM SEG 1.2…' (a report of masks without measurements is a SEG alone; a
        report sent with its PDF adds it): what the status bar and ``main.py pacs send`` say was sent."""
        kinds = (("SR", self.sr), ("SEG", self.seg), ("PDF", self.pdf))
        return " and ".join(f"DICOM {kind} {ds.SOPInstanceUID}" for kind, ds in kinds if ds is not None)


def nothing_to_send(doc: AnnotationDocument, image_id: str) -> str | None:
    """The real reason there is no SR to send, most basic first ("" reasons never reach the user).

    Checked before building: an image without annotations is told so, not that "a DICOM SR can
    only reference DICOM sources" (true, but not why nothing went).
    """
    ref = doc.image(image_id)
    everything = [
        *doc.boxes(image_id),
        *doc.measurements(image_id),
        *doc.image_labels(image_id),
        *doc.masks(image_id),
    ]
    if not everything:
        return "Nothing to send: this image has no annotations yet. Draw a box or a measurement first."
    if ref.kind != "dicom":
        return (
            "Nothing to send: a DICOM SR can only reference DICOM images, and this image is not DICOM "
            "(a PNG, JPEG or other picture). Export the annotations (File > Export annotations) instead."
        )
    scope = ReviewScope()
    if not any(scope.keeps(annotation) for annotation in everything):
        return (
            f"Nothing to send: the {len(everything)} annotation(s) on this image are model output still "
            "pending review or rejected. Accept (A) what is right, then send."
        )
    return None


def content_uids(doc: AnnotationDocument, image_id: str) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) derived from what the SR says, not from the clock.

    Why: the same annotations sent again must be the same DICOM object. Archives identify an
    instance by its UIDs (Orthanc by Patient/Study/Series/SOP UIDs, dcm4chee by SOP Instance UID)
    and keep the first copy of a UID they already hold, so a resend stores nothing new; changed
    annotations get new UIDs and are a new report, as DICOM requires of changed content.
    """
    scope = ReviewScope()
    kept = [
        *kept_boxes(doc, image_id, scope),
        *kept_placed_boxes(doc, image_id, scope),
        *kept_measurements(doc, image_id, scope),
        *kept_labels(doc, image_id, scope),
        *kept_masks(doc, image_id, scope),
    ]
    fingerprint = hashlib.sha256(repr((doc.image(image_id), sorted(kept, key=lambda a: a.id))).encode()).hexdigest()
    return (
        generate_uid(entropy_srcs=["clinlens-sr-series", fingerprint]),
        generate_uid(entropy_srcs=["clinlens-sr-instance", fingerprint]),
    )


def send_report(connection: Connection, doc: AnnotationDocument, image_id: str) -> SentReport:
    """Send the SR of ``image_id``'s reviewed annotations, unless the archive already holds it."""
    reason = nothing_to_send(doc, image_id)
    if reason:
        raise PacsError(reason)
    seg = build_pacs_seg(doc, image_id)  # before anything is sent: a SEG that cannot be built sends nothing
    try:
        reports = build_srs(doc, image_ids=[image_id])  # reviewed only: pending model output stays local
    except ExportError as err:
        if seg is None:
            raise PacsError(f"Nothing to send: {err}.") from None
        reports = {}  # masks without measurements: their SEG says everything
    sr = next(iter(reports.values()), None)
    if sr is not None:
        set_uids(sr, *content_uids(doc, image_id))
    new = [ds for ds in (sr, seg) if ds is not None and not is_stored(connection, ds)]
    if new:
        connection.send(new)
    return SentReport(sr, already_stored=not new, seg=seg)


def is_stored(connection: Connection, ds: pydicom.Dataset) -> bool:
    """Whether the archive already holds this instance (asked, never assumed)."""
    series = connection.instance_uids(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
    return str(ds.SOPInstanceUID) in series


def send_annotations(connection: Connection, doc: AnnotationDocument, image_id: str) -> pydicom.Dataset | None:
    """Send the SR (and SEG) of ``image_id``'s reviewed annotations; returns the SR (sent now or before)."""
    return send_report(connection, doc, image_id).sr


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
    masks: list[Annotation] = []
    for series in connection.find_series(ref.study_instance_uid):
        if series.modality == SEG_MODALITY:
            result = retrieve_series(connection, cache, ref.study_instance_uid, series.series_uid, cancel=cancel)
            for path in result.paths:
                found, problem = masks_from_seg(path, ref)
                masks += found
                if problem:
                    warnings.append(problem)
            continue
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
    merged.update((mask.id, mask) for mask in masks)
    for warning in warnings:
        log.warning("%s", warning)
    return SrReading(tuple(merged.values()), tuple(warnings))
