"""COCO detection JSON: export and import.

Standard fields: ``bbox = [x, y, w, h]`` in pixels, origin at the top-left corner of the image
(same convention as our boxes), ``area = w * h``, ``iscrowd = 0``, categories from the label set
(ids 1..n in label-set order). Everything COCO has no field for travels in extra keys so that an
export imports back without loss: on images ``clinlens_image_id``, ``frame`` (0-based),
``frame_number`` (1-based DICOM), ``sop_instance_uid``, study/series UIDs, ``reviewed`` and
``image_labels``; on annotations ``clinlens_id``, ``source``, ``score``, ``review``, ``note``,
``created``, ``modified``, the DICOM binding, and ``xyxy`` (the exact corners, since x + w can
differ from x2 in the last bit of a float). Tools that do not know these keys ignore them.

Masks go in as one COCO annotation per mask per frame, ``segmentation`` a compressed RLE
(``{"size": [rows, columns], "counts": str}``, what pycocotools' ``mask.decode`` reads), ``area``
its pixel count, ``bbox`` its pixels' rectangle, ``iscrowd`` 0; ``clinlens_type: "mask"`` and the
mask's ``clinlens_id`` (shared by its frames) let the import rebuild one mask from them, with its
``values`` and ``provenance``. RLE
segmentations from other tools (compressed or a counts list) import as masks too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from engine.annotations.document import AnnotationDocument, ImageState
from engine.annotations.formats.targets import (
    REVIEWED_ONLY,
    ReviewScope,
    export_targets,
    kept_labels,
    relative_file_name,
)
from engine.annotations.image_ref import ImageRef
from engine.annotations.model import Box, Mask, MaskFrame, Provenance, default_review, new_id, utc_now
from engine.annotations.persistence import (
    SCHEMA_VERSION,
    DamagedDocumentError,
    annotation_from_dict,
    annotation_to_dict,
    json_field,
    read_document_json,
    values_from_list,
    values_to_list,
    write_json_atomic,
)
from engine.annotations.rle import from_coco
from engine.imaging import FrameSource


def coco_dict(
    doc: AnnotationDocument,
    base_dir: Path,
    image_ids: Sequence[str] | None = None,
    *,
    scope: ReviewScope = REVIEWED_ONLY,
) -> dict[str, Any]:
    """The COCO structure; ``file_name`` is relative to ``base_dir`` (where the JSON goes).

    ``info.description`` and ``info.review_states`` say which review states it holds (``scope``).
    """
    category_ids = {label.name: i + 1 for i, label in enumerate(doc.labels)}
    images, annotations = [], []
    for target in export_targets(doc, image_ids, scope=scope, with_masks=True):
        ref, source = target.image, target.source
        state = doc.image_state(ref.image_id)
        coco_image_id = len(images) + 1
        images.append(
            {
                "id": coco_image_id,
                "file_name": relative_file_name(source.path, base_dir),
                "width": ref.width,
                "height": ref.height,
                "clinlens_image_id": ref.image_id,
                "frame": target.frame,
                "frame_number": source.frame_number,
                "sop_instance_uid": source.sop_instance_uid,
                "study_instance_uid": ref.study_instance_uid,
                "series_instance_uid": ref.series_instance_uid,
                "reviewed": state.reviewed,
                "image_labels": [annotation_to_dict(a) for a in kept_labels(doc, ref.image_id, scope)],
            }
        )
        for box in target.boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": coco_image_id,
                    "category_id": category_ids[box.label],
                    "bbox": [box.x1, box.y1, box.width, box.height],
                    "area": box.width * box.height,
                    "iscrowd": 0,
                    "segmentation": [],
                    "clinlens_id": box.id,
                    "xyxy": list(box.rect),
                    "source": str(box.source),
                    "score": box.score,
                    "review": str(box.review),
                    "note": box.note,
                    "created": box.created,
                    "modified": box.modified,
                    "sop_instance_uid": box.sop_instance_uid,
                    "frame_number": box.frame_number,
                }
            )
        for mask, frame in target.masks:
            annotations.append(_mask_entry(mask, frame, len(annotations) + 1, coco_image_id, category_ids[mask.label]))
    return {
        "info": {
            "description": f"ClinLens annotations ({scope.describe()})",
            "review_states": scope.states,
            "date_created": doc.now(),
            "clinlens_schema": SCHEMA_VERSION,
        },
        "licenses": [],
        "categories": [
            {"id": category_ids[label.name], "name": label.name, "supercategory": "", "color": label.color}
            for label in doc.labels
        ],
        "images": images,
        "annotations": annotations,
    }


def _mask_entry(mask: Mask, frame: MaskFrame, entry_id: int, image_id: int, category_id: int) -> dict[str, Any]:
    entry = {
        "id": entry_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": frame.rle.coco(),
        "area": frame.rle.area,
        "bbox": list(frame.rle.bbox()),
        "iscrowd": 0,
        "clinlens_type": "mask",
        "clinlens_id": mask.id,
        "source": str(mask.source),
        "score": mask.score,
        "review": str(mask.review),
        "note": mask.note,
        "created": mask.created,
        "modified": mask.modified,
        "sop_instance_uid": frame.sop_instance_uid,
        "frame_number": frame.frame_number,
        "values": values_to_list(mask.values),
    }
    if mask.provenance is not None:
        entry["provenance"] = asdict(mask.provenance)
    return entry


def export_coco(
    doc: AnnotationDocument,
    out: str | os.PathLike[str],
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> list[Path]:
    out = Path(out).absolute()
    write_json_atomic(out, coco_dict(doc, out.parent, image_ids, scope=ReviewScope(include_pending, include_rejected)))
    return [out]


def read_coco(path: str | os.PathLike[str], *, images: Sequence[ImageRef] = ()) -> AnnotationDocument:
    """A document from a COCO file (ours or any other tool's).

    ``images`` (e.g. ``image_ref_from_stack`` of the opened stacks) bind the COCO images to full
    image descriptions, matched by our image id or by file path; without a match the image is
    described from the COCO entries alone (size, file names, the frames that appear).
    Raises ``DamagedDocumentError`` for files that are not valid COCO.
    """
    path = Path(path).absolute()
    data = read_document_json(path)
    try:
        return coco_to_document(data, path.parent, images=images)
    except DamagedDocumentError as err:
        raise DamagedDocumentError(str(err), path) from None


MAX_FRAMES = 100_000
"""Frame indices a COCO image entry may name: a bound so a damaged file cannot make the reader
describe a billion frames (the largest multi-frame DICOM objects hold a few thousand)."""


def _corners(item: Any, at: str) -> list[float]:
    """The box corners from ``xyxy`` (ours, exact) or ``bbox`` (x, y, w, h): four JSON numbers."""
    key = "xyxy" if isinstance(item, dict) and "xyxy" in item else "bbox"
    values = json_field(item, key, (list,), at)
    if len(values) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise DamagedDocumentError(f"{at}.{key}: expected four numbers, got {json.dumps(values)[:40]}")
    if key == "xyxy":
        return values
    x, y, w, h = values
    return [x, y, x + w, y + h]


def _image_entry(entry: Any, at: str, base_dir: Path) -> dict[str, Any]:
    """One COCO image entry, type-checked, with ``file_name`` made absolute and ``frame`` filled in."""
    frame = json_field(entry, "frame", (int,), at, 0)
    if not 0 <= frame < MAX_FRAMES:
        raise DamagedDocumentError(f"{at}.frame: expected a frame index from 0 to {MAX_FRAMES - 1}, got {frame}")
    checked = {
        "id": json_field(entry, "id", (int,), at),
        "frame": frame,
        "file_name": os.path.normpath(base_dir / json_field(entry, "file_name", (str,), at)),
        "width": json_field(entry, "width", (int,), at),
        "height": json_field(entry, "height", (int,), at),
        "reviewed": json_field(entry, "reviewed", (bool,), at, False),
        "image_labels": json_field(entry, "image_labels", (list,), at, []),
        "frame_number": json_field(entry, "frame_number", (int, type(None)), at, None),
    }
    for key in ("clinlens_image_id", "sop_instance_uid", "study_instance_uid", "series_instance_uid"):
        checked[key] = json_field(entry, key, (str, type(None)), at, None)
    return checked


def coco_to_document(data: Any, base_dir: Path, *, images: Sequence[ImageRef] = ()) -> AnnotationDocument:
    doc = AnnotationDocument()
    names = {}
    for i, category in enumerate(json_field(data, "categories", (list,), "coco")):
        at = f"categories[{i}]"
        names[json_field(category, "id", (int,), at)] = json_field(category, "name", (str,), at)
        try:
            doc.ensure_label(names[category["id"]], json_field(category, "color", (str, type(None)), at, None))
        except ValueError as err:
            raise DamagedDocumentError(f"{at}: {err}") from None

    groups: dict[str, list[dict[str, Any]]] = {}
    by_coco_id: dict[int, tuple[str, dict[str, Any]]] = {}
    for i, raw in enumerate(json_field(data, "images", (list,), "coco")):
        entry = _image_entry(raw, f"images[{i}]", base_dir)
        key = entry["clinlens_image_id"] or entry["file_name"]
        groups.setdefault(key, []).append(entry)
        by_coco_id[entry["id"]] = (key, entry)

    boxes: dict[str, list[Box]] = {key: [] for key in groups}
    mask_parts: dict[str, dict[str, dict[str, Any]]] = {}
    for i, item in enumerate(json_field(data, "annotations", (list,), "coco")):
        at = f"annotations[{i}]"
        coco_image = json_field(item, "image_id", (int,), at)
        category = json_field(item, "category_id", (int,), at)
        if coco_image not in by_coco_id or category not in names:
            raise DamagedDocumentError(f"{at}: unknown image_id {coco_image} or category_id {category}")
        key, entry = by_coco_id[coco_image]
        source = json_field(item, "source", (str,), at, "user")
        now = utc_now()
        if isinstance(item.get("segmentation"), dict):
            _collect_mask_frame(mask_parts.setdefault(key, {}), item, entry, names[category], at)
            continue
        corners = _corners(item, at)
        try:
            boxes[key].append(
                Box(
                    id=json_field(item, "clinlens_id", (str,), at, None) or new_id(),
                    frame=entry["frame"],
                    x1=corners[0],
                    y1=corners[1],
                    x2=corners[2],
                    y2=corners[3],
                    label=names[category],
                    source=source,
                    score=json_field(item, "score", (float, type(None)), at, None),
                    note=json_field(item, "note", (str,), at, ""),
                    review=json_field(item, "review", (str,), at, str(default_review(source))),
                    created=json_field(item, "created", (str,), at, now),
                    modified=json_field(item, "modified", (str,), at, now),
                    sop_instance_uid=json_field(
                        item, "sop_instance_uid", (str, type(None)), at, entry["sop_instance_uid"]
                    ),
                    frame_number=json_field(item, "frame_number", (int, type(None)), at, entry["frame_number"]),
                )
            )
        except ValueError as err:
            raise DamagedDocumentError(f"{at}: {err}") from None

    for key, entries in groups.items():
        ref = _match(key, entries, images) or _ref_from_entries(key, entries)
        labels = next((e["image_labels"] for e in entries if e["image_labels"]), [])
        image_labels = [annotation_from_dict(a, f"image {key}: image_labels[{j}]") for j, a in enumerate(labels)]
        state = ImageState(reviewed=any(e["reviewed"] for e in entries))
        masks = [_mask_from_parts(parts, f"image {key}") for parts in mask_parts.get(key, {}).values()]
        try:
            doc.restore_image(ref, [*boxes[key], *masks, *image_labels], state)
        except ValueError as err:
            raise DamagedDocumentError(f"image {key}: {err}") from None
    doc.mark_saved()
    return doc


def _collect_mask_frame(
    parts: dict[str, dict[str, Any]], item: Any, entry: dict[str, Any], label: str, at: str
) -> None:
    """One RLE annotation: a frame of the mask its ``clinlens_id`` names (a new mask without one)."""
    mask_id = json_field(item, "clinlens_id", (str, type(None)), at, None) or new_id()
    try:
        rle = from_coco(item["segmentation"], entry["height"], entry["width"])
    except (ValueError, TypeError) as err:
        raise DamagedDocumentError(f"{at}.segmentation: {err}") from None
    now = utc_now()
    source = json_field(item, "source", (str,), at, "user")
    provenance = json_field(item, "provenance", (dict, type(None)), at, None)
    part = parts.setdefault(
        mask_id,
        {
            "id": mask_id,
            "label": label,
            "source": source,
            "score": json_field(item, "score", (float, type(None)), at, None),
            "note": json_field(item, "note", (str,), at, ""),
            "review": json_field(item, "review", (str,), at, str(default_review(source))),
            "created": json_field(item, "created", (str,), at, now),
            "modified": json_field(item, "modified", (str,), at, now),
            "provenance": None
            if provenance is None
            else Provenance(**{f.name: str(provenance.get(f.name, "")) for f in fields(Provenance)}),
            "values": values_from_list(json_field(item, "values", (list,), at, []), at),
            "frames": [],
        },
    )
    if part["label"] != label:
        raise DamagedDocumentError(f"{at}: mask {mask_id} has frames with different categories")
    part["frames"].append(
        MaskFrame(
            frame=entry["frame"],
            rle=rle,
            sop_instance_uid=json_field(item, "sop_instance_uid", (str, type(None)), at, entry["sop_instance_uid"]),
            frame_number=json_field(item, "frame_number", (int, type(None)), at, entry["frame_number"]),
        )
    )


def _mask_from_parts(part: dict[str, Any], where: str) -> Mask:
    try:
        return Mask(**{**part, "frames": tuple(part["frames"])})
    except (ValueError, TypeError) as err:
        raise DamagedDocumentError(f"{where}: mask {part['id']}: {err}") from None


def _match(key: str, entries: list[dict[str, Any]], images: Sequence[ImageRef]) -> ImageRef | None:
    files = {e["file_name"] for e in entries}
    for ref in images:
        if ref.image_id == key or files & {os.path.normpath(p) for p in ref.paths}:
            return ref
    return None


def _ref_from_entries(key: str, entries: list[dict[str, Any]]) -> ImageRef:
    by_frame = {e["frame"]: e for e in entries}
    first = entries[0]
    paths = tuple(dict.fromkeys(by_frame[f]["file_name"] for f in sorted(by_frame)))
    frames = tuple(
        FrameSource(e["file_name"], e["sop_instance_uid"], e["frame_number"] or i + 1)
        if (e := by_frame.get(i))
        else FrameSource(paths[0], None, i + 1)
        for i in range(max(by_frame) + 1)
    )
    try:
        return ImageRef(
            image_id=key,
            paths=paths,
            width=first["width"],
            height=first["height"],
            n_frames=len(frames),
            frames=frames,
            kind="dicom" if first["sop_instance_uid"] else "raster",
            title=os.path.basename(paths[0]),
            study_instance_uid=first["study_instance_uid"],
            series_instance_uid=first["series_instance_uid"],
        )
    except ValueError as err:
        raise DamagedDocumentError(f"image {key}: {err}") from None
