"""Saving and loading annotation documents: the lossless JSON format, sidecars, atomic writes.

Sidecars live next to the images so that annotations travel with the data: a folder keeps
``<folder>/.clinlens/annotations.json``, a single file ``<file>.clinlens.json``. Images whose
folder cannot be written (a read-only share, the bundled demo) keep theirs in the user data
folder instead, one file per image set (``annotation_path``). Paths inside are
stored relative to the JSON file, so a folder moved together with its sidecar still binds.
A save never leaves a half-written file (temporary file in the same folder, fsync, os.replace),
and a file that cannot be read is never overwritten: ``open_sidecar`` moves it aside first.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePath
from typing import Any

from engine.annotations.document import AnnotationDocument, ImageState
from engine.annotations.image_ref import ImageRef
from engine.annotations.model import (
    Annotation,
    Box,
    ImageLabel,
    Label,
    Mask,
    MaskFrame,
    MeasuredValue,
    Measurement,
    PlanePlacement,
    Provenance,
)
from engine.annotations.rle import Rle
from engine.annotations.undo import DEFAULT_UNDO_LIMIT
from engine.files import JsonFileError, load_store, read_json, write_json_atomic
from engine.imaging import FrameSource, PixelSpacing
from engine.paths import (
    SIDECAR_DIR,
    SIDECAR_SUFFIX,
    data_dir,
    is_bundled,
    pacs_annotations_path,
    pacs_cache_dir,
)
from engine.report.model import Evidence, Finding, Observer, Report

FORMAT = "clinlens-annotations"
SCHEMA_VERSION = 4  # 2: measurements and plane placements; 3: masks; 4: reports (versions 1-3 still read)
MASKLESS_VERSION = 2
"""What a file without masks is written as: an older ClinLens, which refuses a higher version
outright, still opens every project that does not use masks."""
REPORTLESS_VERSION = 3
"""What a file with masks but no report is written as (the same reasoning, one version later)."""
SIDECAR_NAME = "annotations.json"


class DocumentError(Exception):
    """An annotation file that cannot be used; ``str(err)`` is a sentence for the user."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = None if path is None else Path(path)


class DamagedDocumentError(DocumentError):
    """Not valid JSON, or JSON that does not follow the schema."""


class UnsupportedVersionError(DocumentError):
    """Written by a newer ClinLens (higher schema version); left untouched."""


# --- file locations ------------------------------------------------------------------------


def sidecar_path(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """Where the annotations of an image set are saved by default.

    One folder: ``<folder>/.clinlens/annotations.json``; one file: ``<file>.clinlens.json``;
    several paths: the sidecar folder of their closest common folder. A series retrieved from a
    PACS lives in the evictable cache, so its annotations go to the user data folder instead,
    keyed by study and series UID (``engine.paths.pacs_annotations_path``).
    """
    items = [Path(p).absolute() for p in paths]
    if not items:
        raise ValueError("no image paths given")
    cache = pacs_cache_dir().absolute()
    series_folders = {p.parent if p.suffix == ".dcm" else p for p in items}
    if len(series_folders) == 1:
        folder = next(iter(series_folders))
        if folder.parent.parent == cache:
            return pacs_annotations_path(folder.parent.name, folder.name)
    if len(items) == 1 and not items[0].is_dir():
        return items[0].with_name(items[0].name + SIDECAR_SUFFIX)
    folders = [p if p.is_dir() else p.parent for p in items]
    return Path(os.path.commonpath(folders)) / SIDECAR_DIR / SIDECAR_NAME


def user_data_path(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """The annotation file of an image set in the user data folder, keyed by the set's paths.

    The key is a hash of the sorted absolute paths, so opening the same files or folder again finds
    the same file; the name starts with the first item's name so that people can tell them apart.
    """
    items = sorted(str(Path(p).absolute()) for p in paths)
    if not items:
        raise ValueError("no image paths given")
    key = hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:16]
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(items[0]).name)[:40] or "images"
    return data_dir() / "annotations" / f"{readable}-{key}.json"


def _writable(path: Path) -> bool:
    """Whether a file could be created at ``path``: its nearest existing folder accepts writes."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def annotation_path(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """Where the annotations of an image set are kept (what the app autosaves and export reads).

    The sidecar (``sidecar_path``) when it already exists or its folder can be written; the user
    data folder (``user_data_path``) for images bundled with ClinLens and for read-only folders.
    """
    sidecar = sidecar_path(paths)
    if any(is_bundled(p) for p in paths):
        return user_data_path(paths)
    if sidecar.exists() or _writable(sidecar):
        return sidecar
    return user_data_path(paths)


def _relative(path: str, base_dir: Path | None) -> str:
    if base_dir is None:
        return path
    try:
        return PurePath(os.path.relpath(path, base_dir)).as_posix()
    except ValueError:  # another drive on Windows: keep it absolute
        return path


def _absolute(path: str, base_dir: Path | None) -> str:
    if base_dir is None or os.path.isabs(path):
        return path
    return os.path.normpath(base_dir / path)


# --- document <-> plain dict ---------------------------------------------------------------


def annotation_to_dict(annotation: Annotation) -> dict[str, Any]:
    common = {
        "id": annotation.id,
        "label": annotation.label,
        "source": str(annotation.source),
        "score": annotation.score,
        "note": annotation.note,
        "review": str(annotation.review),
        "created": annotation.created,
        "modified": annotation.modified,
    }
    if annotation.provenance is not None:  # optional: files without it stay readable by older versions
        common["provenance"] = asdict(annotation.provenance)
    if isinstance(annotation, ImageLabel):
        return {"type": "image_label", **common}
    if isinstance(annotation, Mask):
        return {
            "type": "mask",
            **common,
            "frames": [
                {
                    "frame": f.frame,
                    "sop_instance_uid": f.sop_instance_uid,
                    "frame_number": f.frame_number,
                    "size": [f.rle.rows, f.rle.columns],
                    "counts": f.rle.counts,
                }
                for f in annotation.frames
            ],
            "values": values_to_list(annotation.values),
        }
    bound = {
        "frame": annotation.frame,
        "sop_instance_uid": annotation.sop_instance_uid,
        "frame_number": annotation.frame_number,
    }
    if annotation.placement is not None:
        p = annotation.placement
        bound["placement"] = {
            "plane": p.plane,
            "index": p.index,
            "pixel_mm": p.pixel_mm,
            "points_mm": [list(point) for point in p.points_mm],
        }
    if isinstance(annotation, Measurement):
        return {
            "type": "measurement",
            **common,
            **bound,
            "kind": str(annotation.kind),
            "points": [list(point) for point in annotation.points],
            "values": values_to_list(annotation.values),
        }
    return {
        "type": "box",
        **common,
        **bound,
        "x1": annotation.x1,
        "y1": annotation.y1,
        "x2": annotation.x2,
        "y2": annotation.y2,
    }


def _placement_from_dict(data: Any, where: str) -> PlanePlacement | None:
    item = json_field(data, "placement", (dict, type(None)), where, None)
    if item is None:
        return None
    at = f"{where}.placement"
    points = json_field(item, "points_mm", (list,), at)
    return PlanePlacement(
        plane=json_field(item, "plane", (str,), at),
        index=json_field(item, "index", (int,), at),
        points_mm=tuple(tuple(p) for p in points),
        pixel_mm=json_field(item, "pixel_mm", (float,), at),
    )


def values_to_list(values: Sequence[MeasuredValue]) -> list[dict[str, Any]]:
    return [{"name": v.name, "value": v.value, "unit": v.unit} for v in values]


def values_from_list(items: list[Any], where: str) -> tuple[MeasuredValue, ...]:
    values = []
    for j, item in enumerate(items):
        at = f"{where}.values[{j}]"
        values.append(
            MeasuredValue(
                json_field(item, "name", (str,), at),
                json_field(item, "value", (float,), at),
                json_field(item, "unit", (str,), at),
            )
        )
    return tuple(values)


def _mask_from_dict(data: Any, where: str, common: dict[str, Any]) -> Mask:
    frames = []
    for j, item in enumerate(json_field(data, "frames", (list,), where)):
        at = f"{where}.frames[{j}]"
        size = json_field(item, "size", (list,), at)
        if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
            raise DamagedDocumentError(f"{at}.size: expected [rows, columns], got {json.dumps(size)[:40]}")
        rle = Rle(size[0], size[1], json_field(item, "counts", (str,), at))
        rle.check()  # damaged counts fail here, naming the place, not later in a view
        frames.append(
            MaskFrame(
                frame=json_field(item, "frame", (int,), at),
                rle=rle,
                sop_instance_uid=json_field(item, "sop_instance_uid", (str, type(None)), at, None),
                frame_number=json_field(item, "frame_number", (int, type(None)), at, None),
            )
        )
    values = values_from_list(json_field(data, "values", (list,), where, []), where)
    return Mask(**common, frames=tuple(frames), values=values)


def _measurement_from_dict(data: Any, where: str, common: dict[str, Any]) -> Measurement:
    values = values_from_list(json_field(data, "values", (list,), where), where)
    points = json_field(data, "points", (list,), where)
    return Measurement(
        **common,
        kind=json_field(data, "kind", (str,), where),
        frame=json_field(data, "frame", (int,), where),
        points=tuple(tuple(p) for p in points),
        values=tuple(values),
        sop_instance_uid=json_field(data, "sop_instance_uid", (str, type(None)), where, None),
        frame_number=json_field(data, "frame_number", (int, type(None)), where, None),
        placement=_placement_from_dict(data, where),
    )


def image_ref_to_dict(ref: ImageRef, base_dir: Path | None = None) -> dict[str, Any]:
    path_index = {p: i for i, p in enumerate(ref.paths)}
    return {
        "image_id": ref.image_id,
        "kind": ref.kind,
        "title": ref.title,
        "width": ref.width,
        "height": ref.height,
        "channels": ref.channels,
        "n_frames": ref.n_frames,
        "paths": [_relative(p, base_dir) for p in ref.paths],
        "frames": [
            {"path": path_index[f.path], "sop_instance_uid": f.sop_instance_uid, "frame_number": f.frame_number}
            for f in ref.frames
        ],
        "spacing": None
        if ref.spacing is None
        else {"row_mm": ref.spacing.row_mm, "col_mm": ref.spacing.col_mm, "source": ref.spacing.source},
        "study_instance_uid": ref.study_instance_uid,
        "series_instance_uid": ref.series_instance_uid,
    }


def document_to_dict(
    doc: AnnotationDocument, base_dir: Path | None = None, image_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """The document (or some of its images) as JSON-ready data; paths relative to ``base_dir``."""
    images = []
    for ref in doc.images if image_ids is None else [doc.image(i) for i in image_ids]:
        state = doc.image_state(ref.image_id)
        images.append(
            {
                **image_ref_to_dict(ref, base_dir),
                "reviewed": state.reviewed,
                "last_frame": state.last_frame,
                "annotations": [annotation_to_dict(a) for a in doc.annotations(ref.image_id)],
            }
        )
    has_masks = any(a["type"] == "mask" for image in images for a in image["annotations"])
    studies = None if image_ids is None else {doc.study_key(i) for i in image_ids}
    reports = [report_to_dict(r) for r in doc.reports() if studies is None or r.study_key in studies]
    version = SCHEMA_VERSION if reports else REPORTLESS_VERSION if has_masks else MASKLESS_VERSION
    data = {
        "format": FORMAT,
        "schema_version": version,
        "saved": doc.now(),
        "labels": [{"name": label.name, "color": label.color} for label in doc.labels],
        "images": images,
    }
    if reports:  # only then: a file without a report stays readable by a ClinLens without reports
        data["reports"] = reports
    return data


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "id": report.id,
        "study_key": report.study_key,
        "created": report.created,
        "modified": report.modified,
        "modality": report.modality,
        "template": report.template,
        "sections": dict(report.sections),
        "findings": [
            {
                "id": f.id,
                "text": f.text,
                "source": str(f.source),
                "reviewed": f.reviewed,
                "evidence": [
                    {
                        "image_id": e.image_id,
                        "frame": e.frame,
                        "annotation_id": e.annotation_id,
                        "boxes": [list(b) for b in e.boxes],
                        "title": e.title,
                        "window": None if e.window is None else list(e.window),
                        "invert": e.invert,
                    }
                    for e in f.evidence
                ],
            }
            for f in report.findings
        ],
        "status": str(report.status),
        "verifier": None if report.verifier is None else asdict(report.verifier),
        "verified": report.verified,
        "replaces": report.replaces,
        "sop_instance_uid": report.sop_instance_uid,
    }


def _numbers(value: Any, n: int, at: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n or not all(isinstance(v, int | float) for v in value):
        raise DamagedDocumentError(f"{at}: expected {n} numbers, got {json.dumps(value)[:40]}")
    return tuple(float(v) for v in value)


def _evidence_from_dict(data: Any, at: str) -> Evidence:
    window = json_field(data, "window", (list, type(None)), at, None)
    return Evidence(
        image_id=json_field(data, "image_id", (str,), at),
        frame=json_field(data, "frame", (int,), at),
        annotation_id=json_field(data, "annotation_id", (str,), at, ""),
        boxes=tuple(
            _numbers(b, 4, f"{at}.boxes[{k}]") for k, b in enumerate(json_field(data, "boxes", (list,), at, []))
        ),
        title=json_field(data, "title", (str,), at, ""),
        window=None if window is None else _numbers(window, 2, f"{at}.window"),
        invert=json_field(data, "invert", (bool,), at, False),
    )


def report_from_dict(data: Any, where: str) -> Report:
    """One report; ``DamagedDocumentError`` naming the first bad field."""
    findings = []
    for i, item in enumerate(json_field(data, "findings", (list,), where)):
        at = f"{where}.findings[{i}]"
        evidence = [
            _evidence_from_dict(e, f"{at}.evidence[{j}]")
            for j, e in enumerate(json_field(item, "evidence", (list,), at, []))
        ]
        try:
            findings.append(
                Finding(
                    id=json_field(item, "id", (str,), at),
                    text=json_field(item, "text", (str,), at),
                    source=json_field(item, "source", (str,), at, "user"),
                    reviewed=json_field(item, "reviewed", (bool,), at, True),
                    evidence=tuple(evidence),
                )
            )
        except ValueError as err:
            raise DamagedDocumentError(f"{at}: {err}") from None
    sections = json_field(data, "sections", (dict,), where)
    if not all(isinstance(v, str) for v in sections.values()):
        raise DamagedDocumentError(f"{where}.sections: expected text in every section")
    verifier = json_field(data, "verifier", (dict, type(None)), where, None)
    if verifier is not None:
        at = f"{where}.verifier"
        verifier = Observer(
            json_field(verifier, "name", (str,), at), json_field(verifier, "organization", (str,), at, "")
        )
    try:
        return Report(
            id=json_field(data, "id", (str,), where),
            study_key=json_field(data, "study_key", (str,), where),
            created=json_field(data, "created", (str,), where, ""),
            modified=json_field(data, "modified", (str,), where, ""),
            modality=json_field(data, "modality", (str,), where, ""),
            template=json_field(data, "template", (str,), where, ""),
            sections=dict(sections),
            findings=tuple(findings),
            status=json_field(data, "status", (str,), where),
            verifier=verifier,
            verified=json_field(data, "verified", (str,), where, ""),
            replaces=json_field(data, "replaces", (str,), where, ""),
            sop_instance_uid=json_field(data, "sop_instance_uid", (str,), where, ""),
        )
    except ValueError as err:
        raise DamagedDocumentError(f"{where}: {err}") from None


_MISSING = object()
_NAMES = {
    str: "text",
    int: "an integer",
    float: "a number",
    bool: "true/false",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def json_field(obj: Any, key: str, kinds: tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    """Read one JSON field with a type check; the error names the exact place in the file.

    ``float`` accepts integers too (JSON does not tell 3 from 3.0); ``bool`` never passes as int.
    """
    if not isinstance(obj, dict):
        raise DamagedDocumentError(f"{where}: expected an object")
    if key not in obj:
        if default is _MISSING:
            raise DamagedDocumentError(f"{where}: missing field {key!r}")
        return default
    value = obj[key]
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        expected = " or ".join(_NAMES[k] for k in kinds)
        raise DamagedDocumentError(f"{where}.{key}: expected {expected}, got {json.dumps(value)[:40]}")
    return value


def _provenance_from_dict(data: dict | None, where: str) -> Provenance | None:
    if data is None:
        return None
    required = ("run", "key", "model", "task")
    return Provenance(
        **{
            f.name: json_field(data, f.name, (str,), where, *(() if f.name in required else ("",)))
            for f in fields(Provenance)
        }
    )


def annotation_from_dict(data: Any, where: str) -> Annotation:
    kind = json_field(data, "type", (str,), where)
    try:
        common = {
            "id": json_field(data, "id", (str,), where),
            "label": json_field(data, "label", (str,), where),
            "source": json_field(data, "source", (str,), where),
            "score": json_field(data, "score", (float, type(None)), where, None),
            "note": json_field(data, "note", (str,), where, ""),
            "review": json_field(data, "review", (str,), where),
            "created": json_field(data, "created", (str,), where, ""),
            "modified": json_field(data, "modified", (str,), where, ""),
            "provenance": _provenance_from_dict(
                json_field(data, "provenance", (dict, type(None)), where, None), f"{where}.provenance"
            ),
        }
        if kind == "image_label":
            return ImageLabel(**common)
        if kind == "measurement":
            return _measurement_from_dict(data, where, common)
        if kind == "mask":
            return _mask_from_dict(data, where, common)
        if kind == "box":
            return Box(
                **common,
                frame=json_field(data, "frame", (int,), where),
                x1=json_field(data, "x1", (float,), where),
                y1=json_field(data, "y1", (float,), where),
                x2=json_field(data, "x2", (float,), where),
                y2=json_field(data, "y2", (float,), where),
                sop_instance_uid=json_field(data, "sop_instance_uid", (str, type(None)), where, None),
                frame_number=json_field(data, "frame_number", (int, type(None)), where, None),
                placement=_placement_from_dict(data, where),
            )
    except (ValueError, TypeError) as err:
        raise DamagedDocumentError(f"{where}: {err}") from None
    raise DamagedDocumentError(f"{where}.type: unknown annotation type {kind!r}")


def image_ref_from_dict(data: Any, where: str, base_dir: Path | None = None) -> ImageRef:
    paths = json_field(data, "paths", (list,), where)
    if not all(isinstance(p, str) for p in paths):
        raise DamagedDocumentError(f"{where}.paths: expected a list of text")
    paths = [_absolute(p, base_dir) for p in paths]
    frames = []
    for j, item in enumerate(json_field(data, "frames", (list,), where)):
        at = f"{where}.frames[{j}]"
        index = json_field(item, "path", (int,), at)
        if not 0 <= index < len(paths):
            raise DamagedDocumentError(f"{at}.path: no path number {index}")
        frames.append(
            FrameSource(
                paths[index],
                json_field(item, "sop_instance_uid", (str, type(None)), at),
                json_field(item, "frame_number", (int,), at),
            )
        )
    spacing = json_field(data, "spacing", (dict, type(None)), where, None)
    if spacing is not None:
        at = f"{where}.spacing"
        row_mm, col_mm = (json_field(spacing, key, (float,), at) for key in ("row_mm", "col_mm"))
        if not all(0 < float(v) < 1e6 for v in (row_mm, col_mm)):
            raise DamagedDocumentError(f"{at}: pixel spacing must be a positive size in mm, got {row_mm}, {col_mm}")
        spacing = PixelSpacing(float(row_mm), float(col_mm), json_field(spacing, "source", (str,), at))
    try:
        return ImageRef(
            image_id=json_field(data, "image_id", (str,), where),
            paths=tuple(paths),
            width=json_field(data, "width", (int,), where),
            height=json_field(data, "height", (int,), where),
            n_frames=json_field(data, "n_frames", (int,), where),
            frames=tuple(frames),
            kind=json_field(data, "kind", (str,), where, "raster"),
            title=json_field(data, "title", (str,), where, ""),
            channels=json_field(data, "channels", (int,), where, 1),
            spacing=spacing,
            study_instance_uid=json_field(data, "study_instance_uid", (str, type(None)), where, None),
            series_instance_uid=json_field(data, "series_instance_uid", (str, type(None)), where, None),
        )
    except ValueError as err:
        raise DamagedDocumentError(f"{where}: {err}") from None


def document_from_dict(
    data: Any, base_dir: Path | None = None, *, undo_limit: int = DEFAULT_UNDO_LIMIT
) -> AnnotationDocument:
    """Rebuild a document; raises ``DamagedDocumentError`` naming the first bad field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DamagedDocumentError(f'not a ClinLens annotation file (no "format": "{FORMAT}")')
    version = json_field(data, "schema_version", (int,), "document")
    if version > SCHEMA_VERSION:
        raise UnsupportedVersionError(
            f"schema version {version} was written by a newer ClinLens (this one reads up to {SCHEMA_VERSION})"
        )
    if version < 1:
        raise DamagedDocumentError(f"invalid schema version {version}")
    labels = []
    for i, item in enumerate(json_field(data, "labels", (list,), "document")):
        at = f"labels[{i}]"
        try:
            labels.append(Label(json_field(item, "name", (str,), at), json_field(item, "color", (str,), at)))
        except ValueError as err:
            raise DamagedDocumentError(f"{at}: {err}") from None
    if len({label.name for label in labels}) != len(labels):
        raise DamagedDocumentError("labels: a label name appears twice")
    doc = AnnotationDocument(labels=labels, undo_limit=undo_limit)
    for i, item in enumerate(json_field(data, "images", (list,), "document")):
        where = f"images[{i}]"
        ref = image_ref_from_dict(item, where, base_dir)
        if doc.has_image(ref.image_id):
            raise DamagedDocumentError(f"{where}: image {ref.image_id!r} appears twice")
        annotations = [
            annotation_from_dict(a, f"{where}.annotations[{j}]")
            for j, a in enumerate(json_field(item, "annotations", (list,), where))
        ]
        if len({a.id for a in annotations}) != len(annotations):
            raise DamagedDocumentError(f"{where}.annotations: an annotation id appears twice")
        last_frame = json_field(item, "last_frame", (int,), where, 0)
        state = ImageState(
            reviewed=json_field(item, "reviewed", (bool,), where, False),
            last_frame=last_frame if 0 <= last_frame < ref.n_frames else 0,
        )
        try:
            doc.restore_image(ref, annotations, state)
        except ValueError as err:
            raise DamagedDocumentError(f"{where}: {err}") from None
    reports = [
        report_from_dict(item, f"reports[{i}]")
        for i, item in enumerate(json_field(data, "reports", (list,), "document", []))
    ]
    if len({r.id for r in reports}) != len(reports):
        raise DamagedDocumentError("reports: a report id appears twice")
    doc.restore_reports(reports)
    doc.mark_saved()
    return doc


# --- files ---------------------------------------------------------------------------------


def save_document(doc: AnnotationDocument, path: str | os.PathLike[str]) -> None:
    """Save atomically and mark the document clean (OSError when the disk refuses)."""
    path = Path(path).absolute()
    revision = doc.revision
    write_json_atomic(path, document_to_dict(doc, path.parent))
    doc.mark_saved(revision)


def read_document_json(path: str | os.PathLike[str]) -> Any:
    """The decoded JSON of an annotation file; ``DocumentError`` when it cannot be read,
    ``DamagedDocumentError`` when it is not usable JSON (every annotation reader starts here)."""
    try:
        return read_json(path)
    except JsonFileError as err:
        kind = DocumentError if err.unreadable else DamagedDocumentError
        raise kind(err.reason, err.path) from None


def load_document(path: str | os.PathLike[str], *, undo_limit: int = DEFAULT_UNDO_LIMIT) -> AnnotationDocument:
    """Read a document; ``DocumentError`` for a file that cannot be read or used (never touched).

    ``DamagedDocumentError`` for bad content, ``UnsupportedVersionError`` for a newer schema,
    the plain ``DocumentError`` for a file the system will not let us read.
    """
    path = Path(path).absolute()
    data = read_document_json(path)
    try:
        return document_from_dict(data, path.parent, undo_limit=undo_limit)
    except DocumentError as err:
        raise type(err)(str(err), path) from None


@dataclass(frozen=True)
class OpenedDocument:
    """What ``open_sidecar`` found: the document, and what happened to a damaged file."""

    document: AnnotationDocument
    path: Path
    problem: str | None = None  # why the previous file could not be read
    moved_to: Path | None = None  # where that file now is


def open_sidecar(path: str | os.PathLike[str], *, undo_limit: int = DEFAULT_UNDO_LIMIT) -> OpenedDocument:
    """Open the document that autosaves to ``path``: empty when absent; a damaged file is moved aside.

    The damaged file is renamed ``<name>.damaged-<UTC timestamp>`` (``engine.files.quarantine``)
    so the next autosave cannot overwrite it, and the reason is returned for the GUI to show. A
    file from a newer ClinLens raises ``UnsupportedVersionError``; an unreadable one, or a
    damaged one that cannot be moved aside, ``DocumentError``: the caller must not save over them.
    """
    path = Path(path).absolute()
    loaded = load_store(
        path,
        lambda p: load_document(p, undo_limit=undo_limit),
        lambda: AnnotationDocument(undo_limit=undo_limit),
        DamagedDocumentError,
    )
    if loaded.problem and loaded.kept_as is None:  # could not be moved aside: must not be saved over
        raise DocumentError(loaded.problem)
    return OpenedDocument(loaded.value, path, problem=loaded.problem, moved_to=loaded.kept_as)
