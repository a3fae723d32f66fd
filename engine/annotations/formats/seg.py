"""DICOM Segmentation (SEG) export and import: masks as binary segments of the source series.

Export writes one SEG per image (series or multi-frame file) with masks: one BINARY segment per
label (the union of that label's masks), the source frames referenced one by one (each SEG frame
names its source SOP Instance UID, and frame number for a multi-frame source), segment labels as
codes (``seg_codes``), and the algorithm that made model masks (``Segment Algorithm Type``
AUTOMATIC, or SEMIAUTOMATIC once a person corrected or added to it; MANUAL for drawn masks).
Written with highdicom, atomically (``write_bytes_atomic``), to ``<out>/seg-<SeriesUID>.dcm``.

Import reads a SEG (``highdicom.seg.segread``) onto an open image: each SEG frame is placed by
the source frame it references, so the SEG must reference the image's own SOP Instances; one
mask per segment, labelled by its Segment Label. Anything else is refused with one sentence
(``DamagedDocumentError``), before the document changes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.mask_layout import ImageMasks, LabelMasks, image_masks
from engine.annotations.formats.seg_codes import segment_codes
from engine.annotations.formats.targets import ExportError, ReviewScope
from engine.annotations.image_ref import ImageRef
from engine.annotations.model import Mask, Review, Source
from engine.annotations.persistence import DamagedDocumentError
from engine.files import write_bytes_atomic

MANUFACTURER = "ClinLens"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _algorithm(label: LabelMasks) -> tuple[str, hd.AlgorithmIdentificationSequence | None]:
    """The Segment Algorithm Type of a label's masks and, for model output, which model."""
    models = [m for m in label.masks if m.source is not Source.USER]
    if not models:
        return "MANUAL", None
    touched = len(models) < len(label.masks) or any(m.review is Review.CORRECTED for m in models)
    names = sorted({m.provenance.model for m in models if m.provenance and m.provenance.model}) or ["ClinLens"]
    identification = hd.AlgorithmIdentificationSequence(
        name=", ".join(names)[:64], family=codes.cid7162.ArtificialIntelligence, version="1"
    )
    return ("SEMIAUTOMATIC" if touched else "AUTOMATIC"), identification


def _sources(ref: ImageRef) -> tuple[list[pydicom.Dataset], list[int]]:
    """The source datasets (headers) in the order highdicom expects the pixel frames, and for
    each of those frames the image's frame index.

    A series of single-frame files gives one dataset per frame; one multi-frame file gives one
    dataset whose frames follow their frame numbers.
    """
    paths = list(dict.fromkeys(f.path for f in ref.frames))
    try:
        headers = {p: pydicom.dcmread(p, stop_before_pixels=True) for p in paths}
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise ExportError(f"cannot read the source image for the DICOM SEG: {err}") from None
    for f in ref.frames:
        if str(headers[f.path].SOPInstanceUID) != f.sop_instance_uid:
            raise ExportError(f"{f.path} is no longer the image the mask was drawn on (another SOP Instance UID)")
    if len(paths) == 1 and ref.n_frames > 1:
        order = sorted(range(ref.n_frames), key=lambda i: ref.frames[i].frame_number)
        return [headers[paths[0]]], order
    if len(paths) != ref.n_frames:
        raise ExportError(f"{ref.title or ref.image_id}: a SEG needs single-frame files or one multi-frame file")
    return [headers[f.path] for f in ref.frames], list(range(ref.n_frames))


def build_seg(masks: ImageMasks) -> hd.seg.Segmentation:
    ref = masks.ref
    if ref.kind != "dicom":
        raise ExportError(f"{ref.title or ref.image_id} is not DICOM: a DICOM SEG can only reference DICOM images")
    sources, order = _sources(ref)
    pixels = np.zeros((len(order), ref.height, ref.width, len(masks.labels)), dtype=bool)
    for position, index in enumerate(order):
        for s, label in enumerate(masks.labels):
            if index in label.frames:
                pixels[position, :, :, s] = label.frames[index]
    descriptions = []
    for number, label in enumerate(masks.labels, start=1):  # SEG segments are numbered 1..N
        category, kind = segment_codes(label.label)
        algorithm_type, identification = _algorithm(label)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label.label[:64],
                segmented_property_category=category,
                segmented_property_type=kind,
                algorithm_type=algorithm_type,
                algorithm_identification=identification,
                tracking_uid=hd.UID(),
                tracking_id=label.label[:64],
            )
        )
    try:
        return hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=950,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name="ClinLens",
            software_versions="1",
            device_serial_number="0",
            content_label="MASKS",
            content_description="ClinLens masks",
            series_description="ClinLens masks",
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise ExportError(f"{ref.title or ref.image_id}: cannot write a DICOM SEG of its masks: {err}") from None


def export_seg(
    doc: AnnotationDocument,
    out: str | os.PathLike[str],
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> list[Path]:
    """Write ``<out>/seg-<SeriesInstanceUID>.dcm`` for every DICOM image with masks in scope."""
    scope = ReviewScope(include_pending, include_rejected)
    selected = [m for m in image_masks(doc, image_ids, scope) if m.ref.kind == "dicom"]
    if not selected:
        raise ExportError(f"no masks to export on DICOM images ({scope.describe()})")
    segs = [(m.ref, build_seg(m)) for m in selected]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ref, seg in segs:
        name = ref.series_instance_uid or str(seg.SOPInstanceUID)
        path = out / f"seg-{name}.dcm"
        buffer = io.BytesIO()
        seg.save_as(buffer)
        write_bytes_atomic(path, buffer.getvalue())
        written.append(path)
    return written


# --- import --------------------------------------------------------------------------------


def _read(path: Path) -> hd.seg.Segmentation:
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise DamagedDocumentError(f"cannot be read as DICOM ({err})", path) from None
    if str(header.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise DamagedDocumentError("is not a DICOM Segmentation (SEG) object", path)
    try:
        return hd.seg.segread(path)
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise DamagedDocumentError(f"is a DICOM SEG that cannot be read ({err})", path) from None


def _functional(group: pydicom.Dataset, shared: pydicom.Dataset, keyword: str) -> pydicom.Dataset:
    """A functional group's item, per frame or shared by all (highdicom shares what is equal)."""
    sequence = group.get(keyword) or shared.get(keyword)
    if not sequence:
        raise AttributeError(keyword)
    return sequence[0]


def seg_masks(doc: AnnotationDocument, image_id: str, path: str | os.PathLike[str]) -> list[Mask]:
    """The masks a SEG file holds for an open image (one per segment); nothing is added yet."""
    path = Path(path).absolute()
    ref = doc.image(image_id)
    seg = _read(path)
    if ref.kind != "dicom":
        raise DamagedDocumentError(f"cannot go on {ref.title or image_id}, which is not a DICOM image", path)
    series = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    if ref.series_instance_uid and series and ref.series_instance_uid not in series:
        raise DamagedDocumentError(
            f"references another series ({', '.join(sorted(series))}), not the open one ({ref.series_instance_uid})",
            path,
        )
    rows, columns = int(seg.Rows), int(seg.Columns)
    if (rows, columns) != (ref.height, ref.width):
        raise DamagedDocumentError(
            f"has {rows}x{columns} frames but the open image is {ref.height}x{ref.width} (rows x columns)", path
        )
    frames = seg.pixel_array.reshape(-1, rows, columns)
    per_frame = seg.get("PerFrameFunctionalGroupsSequence", [])
    if len(per_frame) != len(frames):
        raise DamagedDocumentError(
            f"has {len(frames)} frames but describes {len(per_frame)} (Per-frame Functional Groups)", path
        )
    shared = (seg.get("SharedFunctionalGroupsSequence") or [pydicom.Dataset()])[0]
    arrays: dict[int, dict[int, np.ndarray]] = {}
    for i, group in enumerate(per_frame):
        try:
            identification = _functional(group, shared, "SegmentIdentificationSequence")
            segment = int(identification.ReferencedSegmentNumber)
            source = _functional(group, shared, "DerivationImageSequence").SourceImageSequence[0]
        except (AttributeError, IndexError, TypeError, ValueError):
            raise DamagedDocumentError(f"frame {i + 1} does not name its segment and source image", path) from None
        uid = str(source.ReferencedSOPInstanceUID)
        index = ref.frame_index(uid, int(source.get("ReferencedFrameNumber", 1) or 1))
        if index is None:
            raise DamagedDocumentError(
                f"frame {i + 1} lies on an image that is not part of the open series (SOP Instance UID {uid})", path
            )
        target = arrays.setdefault(segment, {})
        target[index] = target.get(index, np.zeros((rows, columns), bool)) | (frames[i] > 0)
    masks = []
    for number, per_index in sorted(arrays.items()):
        description = seg.get_segment_description(number)
        label = str(description.segment_label or f"segment {number}")
        automatic = hd.seg.SegmentAlgorithmTypeValues(description.algorithm_type).value != "MANUAL"
        try:
            masks.append(doc.new_mask(image_id, per_index, label, source=Source.MODEL if automatic else Source.USER))
        except ValueError as err:
            raise DamagedDocumentError(f"segment {number} does not fit the open image: {err}", path) from None
    if not masks:
        raise DamagedDocumentError("holds no segment with pixels inside", path)
    return masks
