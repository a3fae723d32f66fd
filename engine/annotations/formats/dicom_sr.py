"""DICOM SR export: a TID 1500 Measurement Report per study, written with highdicom.

Each box becomes a TID 1410 "Planar ROI Measurements and Qualitative Evaluations" group whose
Image Region is a SCOORD ``POLYLINE`` of five points (the four corners clockwise from the
top-left, then the top-left again to close it), selected from the box's source image (SOP
Instance UID, plus Referenced Frame Number for multi-frame files). SCOORD Graphic Data are
(column, row) pairs "such that the origin at the TLHC of the TLHC pixel is 0.0\\0.0, the BRHC of
the TLHC pixel is 1.0\\1.0, and the BRHC of the BRHC pixel is Columns\\Rows" (PS3.3 Table C.18.6-1,
Spatial Coordinates Macro; also highdicom's image coordinate convention), so a pixel centre is
at +0.5. That is exactly our box convention: x is the column, y the row, no shift. The values
must lie within 0..Columns / 0..Rows, so boxes are clipped to the image (a box entirely outside
is skipped). The label is the Finding Type (a code
in the private scheme ``99CLINLENS`` whose meaning is the label text); the Tracking Unique
Identifier is ``2.25.<the box id as an integer>``, so every SR group names its ClinLens box.
Measurements (length, angle, ellipse and rectangle ROIs) are TID 1410 groups too, with their
values as TID 300 measurements (SCT Length/Angle/Area/Mean/Standard Deviation/Minimum/Maximum,
UCUM units: mm, deg, mm2, [hnsf'U]) and their shape as the region (POLYLINE, or ELLIPSE by its
two axes). Annotations drawn on a reformatted plane are SCOORD3D regions in patient coordinates
(Frame of Reference of the series). Only what a person stands behind is exported unless asked
for (``ReviewScope``: user annotations, accepted and corrected machine output; pending and
rejected ones on request), and the Series Description says which ("ClinLens annotations
(reviewed only)"); non-DICOM images cannot be referenced and are skipped.

Provenance travels with each group: the source (user, model, classifier) and review state as
qualitative evaluations coded in ``99CLINLENS``, a model score as a unitless measurement, and
for machine output an Algorithm Identification (``ClinKD`` or ``KPL``) whose parameter is the
annotation's note (the question or the retrieved descriptions). Image-level labels (KPL) are
TID 1501 groups whose source images are the instances of the labelled image.
``sr_reader.read_sr`` turns such an SR (or any SR another tool wrote) back into annotations for
one image: the round trip keeps id, label, geometry (float32, the SCOORD type), frame, source,
review, score, machine notes and the values of measurements; a note on a user annotation and
the created/modified times are not read back, and annotations drawn on a reformat (SCOORD3D)
only when they lie on a slice of the series.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.targets import (
    ExportError,
    ReviewScope,
    clipped,
    kept_boxes,
    kept_labels,
    kept_masks,
    kept_measurements,
    kept_placed_boxes,
    selected_images,
)
from engine.annotations.image_ref import ImageRef
from engine.annotations.measure import graphic_points
from engine.annotations.model import (
    Annotation,
    Box,
    ImageLabel,
    Mask,
    MeasureKind,
    Measurement,
    Source,
)
from engine.files import write_bytes_atomic
from engine.imaging import FrameSource

CODING_SCHEME = "99CLINLENS"
MANUFACTURER = "ClinLens"
_DEVICE_UID = "2.25.229615433404476045355766183357826400419"  # fixed: identifies ClinLens as observer
_VALUE_CODES = {
    "length": codes.SCT.Length,
    "angle": codes.SCT.Angle,
    "area": codes.SCT.Area,
    "mean": codes.SCT.Mean,
    "std": codes.SCT.StandardDeviation,
    "min": codes.SCT.Minimum,
    "max": codes.SCT.Maximum,
    "volume": codes.SCT.Volume,
    "diameter": codes.SCT.Diameter,
}


def label_code(label: str) -> hd.sr.CodedConcept:
    """A stable private code for a free-text label (CodeValue fits SH, CodeMeaning fits LO)."""
    value = "L" + hashlib.sha1(label.encode("utf-8")).hexdigest()[:15]
    return hd.sr.CodedConcept(value=value, scheme_designator=CODING_SCHEME, meaning=label[:64])


_UUID_HEX = re.compile(r"[0-9a-fA-F]{1,32}")


def tracking_uid(annotation_id: str) -> str:
    """The box id (uuid hex) as a DICOM UID under the UUID root 2.25 (PS3.5 B.2).

    Ids from other tools or hand-edited files (any text) get the first 128 bits of their
    SHA-256 instead, so every id gives a valid UID of at most 44 characters.
    """
    if not _UUID_HEX.fullmatch(annotation_id):
        annotation_id = hashlib.sha256(annotation_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"2.25.{int(annotation_id, 16)}"


def polyline(rect: tuple[float, float, float, float]) -> np.ndarray:
    """Closed rectangle as SCOORD (column, row) points: TL, TR, BR, BL, TL."""
    x1, y1, x2, y2 = rect
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=float)


def _source_frame(ref: ImageRef, box: Box | Measurement) -> FrameSource:
    if box.sop_instance_uid and box.frame_number:
        index = ref.frame_index(box.sop_instance_uid, box.frame_number)
        if index is not None:
            return ref.frames[index]
    return ref.frames[box.frame]


def _region(
    ref: ImageRef, item: Box | Measurement, header: pydicom.Dataset, rect: tuple[float, float, float, float] | None
) -> hd.sr.ImageRegion | hd.sr.ImageRegion3D:
    """SCOORD on the source frame, or SCOORD3D in patient coordinates for a reformatted plane."""
    kind = item.kind if isinstance(item, Measurement) else None
    if item.placement is not None:
        points = np.asarray(item.placement.points_mm, dtype=float)
        closed = len(points) > 2 and np.allclose(points[0], points[-1])
        graphic = (
            hd.sr.GraphicTypeValues3D.ELLIPSE
            if kind is MeasureKind.ELLIPSE
            else hd.sr.GraphicTypeValues3D.POLYGON
            if closed
            else hd.sr.GraphicTypeValues3D.POLYLINE
        )
        if "FrameOfReferenceUID" not in header:
            raise ExportError(
                f"{ref.title or ref.image_id} has no Frame of Reference UID, so annotations drawn "
                "on a reformatted plane cannot be written to a DICOM SR"
            )
        return hd.sr.ImageRegion3D(
            graphic_type=graphic, graphic_data=points, frame_of_reference_uid=header.FrameOfReferenceUID
        )
    source = _source_frame(ref, item)
    multi_frame = int(header.get("NumberOfFrames", 1) or 1) > 1
    graphic_data = polyline(rect) if kind is None else graphic_points(kind, item.points)
    graphic_data = np.clip(graphic_data, 0, [ref.width, ref.height])
    return hd.sr.ImageRegion(
        graphic_type=(
            hd.sr.GraphicTypeValues.ELLIPSE if kind is MeasureKind.ELLIPSE else hd.sr.GraphicTypeValues.POLYLINE
        ),
        graphic_data=graphic_data,
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=header.SOPClassUID,
            referenced_sop_instance_uid=header.SOPInstanceUID,
            referenced_frame_numbers=[source.frame_number] if multi_frame else None,
        ),
    )


def _measurements(item: Annotation) -> list[hd.sr.Measurement] | None:
    if not isinstance(item, Measurement | Mask):
        return None
    return [
        hd.sr.Measurement(name=_VALUE_CODES[v.name], value=v.value, unit=_unit_code(v.unit))
        for v in item.values
        if v.name in _VALUE_CODES
    ] or None


def _mask_sources(ref: ImageRef, mask: Mask) -> list[FrameSource]:
    """The frames a mask covers, found by their DICOM binding (a re-sorted series) or index."""
    found = []
    for item in mask.frames:
        index = None
        if item.sop_instance_uid and item.frame_number:
            index = ref.frame_index(item.sop_instance_uid, item.frame_number)
        found.append(ref.frames[item.frame if index is None else index])
    return found


def _unit_code(unit: str) -> hd.sr.CodedConcept:
    known = {
        "mm": codes.UCUM.Millimeter,
        "mm2": codes.UCUM.SquareMillimeter,
        "mL": hd.sr.CodedConcept(value="mL", scheme_designator="UCUM", meaning="milliliter"),
        "deg": codes.UCUM.Degree,
        "[hnsf'U]": codes.UCUM.HounsfieldUnit,
        "1": codes.UCUM.NoUnits,
    }
    if unit in known:
        return known[unit]
    return hd.sr.CodedConcept(value=unit, scheme_designator="UCUM", meaning=unit)  # "px", "px2"


ALGORITHMS = {Source.MODEL: "ClinKD", Source.CLASSIFIER: "KPL"}
_SOURCE_NAME = hd.sr.CodedConcept(value="SRC", scheme_designator=CODING_SCHEME, meaning="Annotation source")
_REVIEW_NAME = hd.sr.CodedConcept(value="REV", scheme_designator=CODING_SCHEME, meaning="Review state")
_KIND_NAME = hd.sr.CodedConcept(value="KIND", scheme_designator=CODING_SCHEME, meaning="Annotation kind")
MASK_KIND = hd.sr.CodedConcept(value="KIND-mask", scheme_designator=CODING_SCHEME, meaning="mask")
_SCORE_NAME = hd.sr.CodedConcept(value="SCORE", scheme_designator=CODING_SCHEME, meaning="Model score")
_NO_UNITS = hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units")


def _state_code(kind: str, value: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=f"{kind}-{value}"[:16], scheme_designator=CODING_SCHEME, meaning=value)


def algorithm_name(annotation: Annotation) -> str:
    """The model that made machine output: a mask names its segmentation model (from its
    provenance, 64 characters at most); boxes and labels keep the grounding/classifier name."""
    if isinstance(annotation, Mask) and annotation.provenance is not None and annotation.provenance.model:
        return annotation.provenance.model[-64:]
    return ALGORITHMS.get(annotation.source, "ClinLens")


def _provenance(annotation: Annotation) -> dict:
    """The TID 1410/1501 arguments that carry who made an annotation, what became of it, and its values."""
    measured = _measurements(annotation) or []
    options: dict = {
        "qualitative_evaluations": [
            hd.sr.QualitativeEvaluation(_SOURCE_NAME, _state_code("SRC", str(annotation.source))),
            hd.sr.QualitativeEvaluation(_REVIEW_NAME, _state_code("REV", str(annotation.review))),
        ]
    }
    if isinstance(annotation, Mask):  # tells our reader this group's region is in a SEG, not an image label
        options["qualitative_evaluations"].append(hd.sr.QualitativeEvaluation(_KIND_NAME, MASK_KIND))
    if annotation.score is not None:
        measured.append(hd.sr.Measurement(name=_SCORE_NAME, value=float(annotation.score), unit=_NO_UNITS))
    if measured:
        options["measurements"] = measured
    if annotation.source in ALGORITHMS:
        options["algorithm_id"] = hd.sr.AlgorithmIdentification(
            name=algorithm_name(annotation), version="1", parameters=[annotation.note] if annotation.note else None
        )
    return options


class SourceHeaders:
    """The headers (not the pixels) of the source images an SR references, read once each.

    ExportError when a file is gone or is no longer the image the annotation was drawn on.
    """

    def __init__(self) -> None:
        self._headers: dict[str, pydicom.Dataset] = {}

    def __call__(self, source: FrameSource) -> pydicom.Dataset:
        if source.path not in self._headers:
            try:
                self._headers[source.path] = pydicom.dcmread(source.path, stop_before_pixels=True)
            except (OSError, pydicom.errors.InvalidDicomError) as err:
                raise ExportError(f"cannot read the source image {source.path} for the DICOM SR: {err}") from None
        header = self._headers[source.path]
        if header.SOPInstanceUID != source.sop_instance_uid:
            raise ExportError(
                f"{source.path} is no longer the image the box was drawn on "
                f"(SOP Instance UID {header.SOPInstanceUID}, expected {source.sop_instance_uid})"
            )
        return header


Item = tuple[ImageRef, Annotation, tuple[float, float, float, float] | None]
"""One annotation to write as a measurement group: its image, itself, a box's clipped rectangle."""


def group_items(ref: ImageRef, annotations: Sequence[Annotation], headers: SourceHeaders) -> list[tuple[str, Item]]:
    """The annotations of one DICOM image that can be measurement groups, each with its study UID.

    A box entirely outside the image and a mask without measured values (its pixels go to a
    SEG) are left out; the study comes from the header of the frame each annotation is on.
    """
    items: list[tuple[str, Item]] = []
    for item in annotations:
        rect = None
        if isinstance(item, ImageLabel):
            header = headers(ref.frames[0])
        elif isinstance(item, Mask):
            if not item.values:
                continue
            header = headers(ref.frames[item.frame])
        else:
            if isinstance(item, Box) and item.placement is None:
                rect = clipped(item, ref.width, ref.height)
                if rect is None:
                    continue
            header = headers(_source_frame(ref, item))
        items.append((str(header.StudyInstanceUID), (ref, item, rect)))
    return items


def measurement_groups(
    items: Sequence[Item], headers: SourceHeaders
) -> tuple[list[hd.sr.TemplateContentItem], dict[str, pydicom.Dataset]]:
    """The TID 1410/1501 groups of ``items`` and the headers of the images they reference (evidence)."""
    evidence, groups = {}, []
    for ref, annotation, rect in items:
        tracking = hd.sr.TrackingIdentifier(
            uid=tracking_uid(annotation.id), identifier=f"{annotation.label} ({annotation.id[:8]})"
        )
        if isinstance(annotation, ImageLabel | Mask):
            frames = ref.frames if isinstance(annotation, ImageLabel) else _mask_sources(ref, annotation)
            sources = []
            for source in dict.fromkeys(f.path for f in frames):
                header = headers(next(f for f in frames if f.path == source))
                evidence[header.SOPInstanceUID] = header
                sources.append(
                    hd.sr.SourceImageForMeasurementGroup(
                        referenced_sop_class_uid=header.SOPClassUID,
                        referenced_sop_instance_uid=header.SOPInstanceUID,
                    )
                )
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    finding_type=label_code(annotation.label),
                    source_images=sources,
                    **_provenance(annotation),
                )
            )
            continue
        header = headers(_source_frame(ref, annotation))
        evidence[header.SOPInstanceUID] = header
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_region=_region(ref, annotation, header, rect),
                finding_type=label_code(annotation.label),
                **_provenance(annotation),
            )
        )
    return groups, evidence


DEVICE_OBSERVER = hd.sr.ObserverContext(
    observer_type=codes.DCM.Device,
    observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=_DEVICE_UID, name=MANUFACTURER),
)
"""ClinLens as the device observer of every SR it writes."""


def build_srs(
    doc: AnnotationDocument,
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> dict[str, hd.sr.Comprehensive3DSR]:
    """One TID 1500 report per study, keyed by StudyInstanceUID (see the module docstring).

    By default it keeps what a person stands behind (``ReviewScope``): user annotations and
    machine output accepted or corrected, as written back to a shared archive. Reads the headers
    (not the pixels) of the referenced files, which must still exist: the SR inherits patient and study.
    """
    scope = ReviewScope(include_pending, include_rejected)
    headers = SourceHeaders()
    studies: dict[str, list[Item]] = {}
    for ref in selected_images(doc, image_ids):
        if ref.kind != "dicom":
            continue
        kept = [
            *kept_boxes(doc, ref.image_id, scope),
            *kept_placed_boxes(doc, ref.image_id, scope),
            *kept_measurements(doc, ref.image_id, scope),
            *kept_labels(doc, ref.image_id, scope),
            *kept_masks(doc, ref.image_id, scope),
        ]
        for study_uid, item in group_items(ref, kept, headers):
            studies.setdefault(study_uid, []).append(item)
    if not studies:
        raise ExportError(
            f"no annotations to export on DICOM images ({scope.describe()}): "
            "a DICOM SR can only reference DICOM sources"
        )
    reports = {}
    for number, (study_uid, items) in enumerate(studies.items(), start=1):
        groups, evidence = measurement_groups(items, headers)
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=DEVICE_OBSERVER),
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=groups,
        )
        reports[study_uid] = hd.sr.Comprehensive3DSR(
            evidence=list(evidence.values()),
            content=report,
            series_instance_uid=hd.UID(),
            series_number=900 + number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            series_description=f"ClinLens annotations ({scope.title()})",
            is_complete=True,
        )
    return reports


def export_sr(
    doc: AnnotationDocument,
    out: str | os.PathLike[str],
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> list[Path]:
    """Write ``<out>/sr-<StudyInstanceUID>.dcm`` for every study with annotations on DICOM images."""
    reports = build_srs(doc, image_ids=image_ids, include_pending=include_pending, include_rejected=include_rejected)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for study_uid, sr in reports.items():
        path = out / f"sr-{study_uid}.dcm"
        buffer = io.BytesIO()
        sr.save_as(buffer)
        write_bytes_atomic(path, buffer.getvalue())  # a crash never leaves half an SR to send
        written.append(path)
    return written
