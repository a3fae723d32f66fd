"""Masks to and from the PACS as DICOM SEG, beside the SR of the same annotations.

Why its own module: the SR carries boxes, measurements and labels (and marks mask groups, so its
reader leaves them here); the pixels of a mask belong in a SEG, which every archive and viewer
(OHIF, 3D Slicer) reads. The rules are the SR's: only reviewed masks leave (pending model output
stays local), the UIDs come from the content so a resend is recognised by the archive, and a SEG
read back that is foreign or damaged is a warning, never an exception that stops a series opening.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.mask_layout import image_masks
from engine.annotations.formats.seg import MANUFACTURER, build_seg, seg_masks
from engine.annotations.formats.targets import ExportError, ReviewScope, kept_masks
from engine.annotations.image_ref import ImageRef
from engine.annotations.model import Mask, Review
from engine.pacs.errors import PacsError

SEG_MODALITY = "SEG"
log = logging.getLogger(__name__)


def set_uids(ds: pydicom.Dataset, series_uid: str, sop_uid: str) -> None:
    """Give an instance its content-derived UIDs (and its file meta, when it has one)."""
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid


def seg_content_uids(doc: AnnotationDocument, image_id: str) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the SEG from the reviewed masks' content, as for the SR."""
    kept = sorted(kept_masks(doc, image_id, ReviewScope()), key=lambda m: m.id)
    fingerprint = hashlib.sha256(repr((doc.image(image_id), kept)).encode()).hexdigest()
    return (
        generate_uid(entropy_srcs=["clinlens-seg-series", fingerprint]),
        generate_uid(entropy_srcs=["clinlens-seg-instance", fingerprint]),
    )


def build_pacs_seg(doc: AnnotationDocument, image_id: str) -> pydicom.Dataset | None:
    """The SEG of ``image_id``'s reviewed masks with content UIDs; None when there are none."""
    selected = [m for m in image_masks(doc, [image_id], ReviewScope()) if m.ref.kind == "dicom"]
    if not selected:
        return None
    try:
        seg = build_seg(selected[0])
    except ExportError as err:
        raise PacsError(f"Nothing was sent: {err}.") from None
    set_uids(seg, *seg_content_uids(doc, image_id))
    return seg


def references_series(path: Path, series_uid: str) -> bool | None:
    """Whether a SEG file references ``series_uid``; None when its header cannot be read."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any unreadable file is reported by the caller as one warning
        return None
    return series_uid in {str(item.SeriesInstanceUID) for item in header.get("ReferencedSeriesSequence", [])}


def masks_from_seg(path: Path, ref: ImageRef) -> tuple[list[Mask], str | None]:
    """The masks a study's SEG holds for ``ref``, and a warning when it is damaged or does not fit.

    A SEG of another series of the study is no concern of this one: skipped without a warning.
    Mask ids come from the SEG's SOP Instance UID, so reading it again gives the same annotations.
    ClinLens sends only reviewed masks, so its own SEGs come back accepted; others stay pending.
    """
    path = Path(path)
    referenced = references_series(path, ref.series_instance_uid or "")
    if referenced is None:
        return [], f"A segmentation in the study ({path.name}) cannot be read as DICOM; it is left out."
    if not referenced:
        log.info("%s references another series; not shown on %s", path.name, ref.series_instance_uid)
        return [], None
    doc = AnnotationDocument()
    image_id = doc.add_image(ref)
    try:
        masks = seg_masks(doc, image_id, path)
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # noqa: BLE001 - a bad SEG must never stop the series from opening
        return [], f"A segmentation in the study could not be shown: {err}"
    ours = str(header.get("Manufacturer", "")) == MANUFACTURER
    sop = str(header.get("SOPInstanceUID", path.name))
    return [
        replace(
            mask,
            id=hashlib.sha256(f"{sop}/{number}".encode()).hexdigest()[:32],
            review=Review.ACCEPTED if ours else mask.review,
        )
        for number, mask in enumerate(masks, start=1)
    ], None
