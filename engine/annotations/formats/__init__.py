"""Exchange formats: every exporter has the signature ``(doc, out, *, image_ids=None,
include_pending=False, include_rejected=False) -> list[Path]`` and keeps, by default, only what a
person stands behind (``ReviewScope``); ``FORMATS`` lists them for the CLI and the GUI."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.annotations.commands import AddAnnotations
from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.coco import coco_dict, coco_to_document, export_coco, read_coco
from engine.annotations.formats.png_masks import export_png_masks
from engine.annotations.formats.table import export_csv
from engine.annotations.formats.targets import REVIEWED_ONLY, ExportError, ExportTarget, ReviewScope, export_targets
from engine.annotations.formats.voc import export_voc
from engine.annotations.formats.yolo import export_yolo
from engine.annotations.image_ref import ImageRef
from engine.annotations.model import Mask, Review
from engine.annotations.persistence import (
    DamagedDocumentError,
    DocumentError,
    document_from_dict,
    document_to_dict,
    read_document_json,
    write_json_atomic,
)


def export_json(
    doc: AnnotationDocument,
    out: str | os.PathLike[str],
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> list[Path]:
    """Our document format (read back with ``load_document``), lossless for what it keeps.

    It follows review like every export (``ReviewScope``); the top-level ``review_states`` field
    says which states it holds, so a reader can tell "no pending boxes" from "left out".
    """
    scope = ReviewScope(include_pending, include_rejected)
    out = Path(out).absolute()
    data = document_to_dict(doc, out.parent, image_ids)
    for image in data["images"]:
        image["annotations"] = [a for a in image["annotations"] if scope.keeps_state(Review(a["review"]))]
    data["review_states"] = scope.states
    write_json_atomic(out, data)
    return [out]


def read_annotation_file(path: str | os.PathLike[str], *, images: Sequence[ImageRef] = ()) -> AnnotationDocument:
    """A ClinLens JSON or COCO file as a document; ``DocumentError`` (naming the file) for anything else.

    The file is read once: COCO files have "categories" and "annotations"; anything else must
    be our format. ``images`` bind COCO images to the opened stacks (see ``read_coco``).
    """
    path = Path(path).absolute()
    data = read_document_json(path)
    try:
        if isinstance(data, dict) and "categories" in data and "annotations" in data:
            return coco_to_document(data, path.parent, images=images)
        return document_from_dict(data, path.parent)
    except DocumentError as err:
        raise type(err)(str(err), path) from None


def import_annotations(doc: AnnotationDocument, path: str | os.PathLike[str]) -> int:
    """Merge the annotations of a ClinLens JSON or COCO file into ``doc``; returns how many were added.

    All or nothing: a file that cannot be read, or whose boxes do not fit the open images,
    raises ``DocumentError`` and leaves ``doc`` exactly as it was.
    """
    imported = read_annotation_file(path, images=doc.images)
    try:
        return doc.merge(imported)
    except ValueError as err:
        raise DamagedDocumentError(f"does not fit the open images: {err}", Path(path).absolute()) from None


def export_seg(doc: AnnotationDocument, out: str | os.PathLike[str], **options: object) -> list[Path]:
    """DICOM SEG (see ``seg.export_seg``); imported on use because highdicom is slow to load."""
    from engine.annotations.formats.seg import export_seg as export

    return export(doc, out, **options)


def export_nifti(doc: AnnotationDocument, out: str | os.PathLike[str], **options: object) -> list[Path]:
    """NIfTI label maps (see ``nifti.export_nifti``); nibabel is imported on use."""
    from engine.annotations.formats.nifti import export_nifti as export

    return export(doc, out, **options)


def read_masks(doc: AnnotationDocument, image_id: str, path: str | os.PathLike[str]) -> list[Mask]:
    """The masks of a DICOM SEG (``.dcm``) or NIfTI (``.nii``, ``.nii.gz``) file for an open image.

    ``DocumentError`` (naming the file, one sentence) for a file that cannot be read or does not
    fit the image: another series, another frame count or size, a grid that is not the series'.
    """
    path = Path(path).absolute()
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        from engine.annotations.formats.nifti import nifti_masks

        return nifti_masks(doc, image_id, path)
    from engine.annotations.formats.seg import seg_masks

    return seg_masks(doc, image_id, path)


def import_masks(doc: AnnotationDocument, image_id: str, path: str | os.PathLike[str]) -> int:
    """Add the masks of a SEG or NIfTI file to an open image as one undo step; returns how many.

    All or nothing: on ``DocumentError`` the document is exactly as it was.
    """
    masks = read_masks(doc, image_id, path)
    doc.execute(AddAnnotations(image_id, masks, text=f"Import {len(masks)} mask{'s' if len(masks) != 1 else ''}"))
    return len(masks)


def export_sr(doc: AnnotationDocument, out: str | os.PathLike[str], **options: object) -> list[Path]:
    """DICOM SR (see ``dicom_sr.export_sr``); imported on use because highdicom is slow to load."""
    from engine.annotations.formats.dicom_sr import export_sr as export

    return export(doc, out, **options)


@dataclass(frozen=True)
class ExportFormat:
    name: str
    description: str
    writes_folder: bool  # True: ``out`` is a folder of files; False: ``out`` is one file
    export: Callable[..., list[Path]]


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("coco", "COCO JSON (bbox = x, y, w, h in pixels; masks as RLE segmentation)", False, export_coco),
        ExportFormat("yolo", "YOLO txt per picture (class cx cy w h, normalised) + classes.txt", True, export_yolo),
        ExportFormat("voc", "Pascal VOC XML per picture (1-based pixel corners)", True, export_voc),
        ExportFormat("csv", "CSV, one row per annotation", False, export_csv),
        ExportFormat("json", "ClinLens JSON (lossless)", False, export_json),
        ExportFormat("sr", "DICOM SR TID 1500 per study (DICOM images only)", True, export_sr),
        ExportFormat("seg", "DICOM SEG per series: masks as binary segments, one per label", True, export_seg),
        ExportFormat("nifti", "NIfTI label map (.nii.gz) per DICOM series + labels.json", True, export_nifti),
        ExportFormat("png", "PNG label map per frame with masks (8/16-bit) + labels.json", True, export_png_masks),
    )
}

__all__ = [
    "FORMATS",
    "REVIEWED_ONLY",
    "ExportError",
    "ExportFormat",
    "ExportTarget",
    "ReviewScope",
    "coco_dict",
    "coco_to_document",
    "export_coco",
    "export_csv",
    "export_json",
    "export_nifti",
    "export_png_masks",
    "export_seg",
    "export_sr",
    "export_targets",
    "export_voc",
    "export_yolo",
    "import_annotations",
    "import_masks",
    "read_annotation_file",
    "read_coco",
    "read_masks",
]
