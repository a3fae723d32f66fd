"""CSV: one row per annotation, for spreadsheets and pandas.

Columns: ``image`` (file of the frame, relative to the CSV), ``image_id``, ``sop_instance_uid``,
``slice`` (1-based: the slice number the viewer shows, in the image's frame order), ``frame_index``
(the same frame, 0-based, for code), ``frame_number`` (1-based DICOM frame number within its file,
1 for single-frame files), ``label``, ``x1, y1, x2, y2``
(our pixel corners, exact), ``source``, ``score``, ``review``, ``note``, ``annotation_id``,
``kind`` (``box``, ``image_label``, or the measurement kind: ``length``, ``angle``, ``ellipse``,
``rectangle``; image labels leave frame and coordinates empty). Measurements fill ``points``
(x y pairs separated by ``;``), x1..y2 with the points' bounding rectangle, their values in
``length_mm``, ``angle_deg``, ``area_mm2``, ``mean``, ``std``, ``min``, ``max`` (``value_unit``
is the UCUM unit of the ROI statistics, ``[hnsf'U]`` for HU), and ``plane``, ``plane_slice``
(1-based, as on screen), ``plane_index`` (0-based) when drawn on a reformatted plane (then
``points_mm`` holds the patient coordinates, and the pixel columns are that plane's display
coordinates; boxes drawn on a plane get these too). Masks are one row each (kind ``mask``):
the frame columns name their first frame, ``mask_slices`` all of them (1-based, ``;``-separated),
x1..y2 the bounding rectangle of the pixels inside on every frame, ``mask_pixels`` the pixel count,
and the values measured from the mask (when the segmentation engine stored them) fill
``area_mm2``, ``volume_ml``, ``diameter_mm`` and the HU statistics; the pixels themselves go to
the mask formats (SEG, NIfTI, COCO RLE, PNG label maps).
Which review states are exported follows ``ReviewScope`` (pending and rejected machine output
only on request); the ``review`` column says the state of every row.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.targets import (
    ReviewScope,
    kept_boxes,
    kept_labels,
    kept_masks,
    kept_measurements,
    kept_placed_boxes,
    number,
    relative_file_name,
    selected_images,
)
from engine.annotations.model import Annotation, Box, Mask, MeasuredValue, Measurement, PlanePlacement
from engine.files import write_text_atomic

COLUMNS = (
    "image",
    "image_id",
    "sop_instance_uid",
    "slice",
    "frame_index",
    "frame_number",
    "label",
    "x1",
    "y1",
    "x2",
    "y2",
    "source",
    "score",
    "review",
    "note",
    "annotation_id",
    "kind",
    "points",
    "length_mm",
    "angle_deg",
    "area_mm2",
    "mean",
    "std",
    "min",
    "max",
    "value_unit",
    "plane",
    "plane_slice",
    "plane_index",
    "points_mm",
    "volume_ml",
    "diameter_mm",
    "mask_slices",
    "mask_pixels",
)
_VALUE_COLUMNS = {
    "length": "length_mm",
    "angle": "angle_deg",
    "area": "area_mm2",
    "mean": "mean",
    "std": "std",
    "min": "min",
    "max": "max",
    "volume": "volume_ml",
    "diameter": "diameter_mm",
}


def export_csv(
    doc: AnnotationDocument,
    out: str | os.PathLike[str],
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> list[Path]:
    out = Path(out).absolute()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    scope = ReviewScope(include_pending, include_rejected)
    for ref in selected_images(doc, image_ids):
        rows: list[Annotation] = [
            *kept_boxes(doc, ref.image_id, scope),
            *kept_placed_boxes(doc, ref.image_id, scope),
            *kept_measurements(doc, ref.image_id, scope),
            *kept_masks(doc, ref.image_id, scope),
            *kept_labels(doc, ref.image_id, scope),
        ]
        for a in rows:
            common = {
                "image_id": ref.image_id,
                "label": a.label,
                "source": str(a.source),
                "score": "" if a.score is None else repr(a.score),
                "review": str(a.review),
                "note": a.note,
                "annotation_id": a.id,
            }
            if isinstance(a, Measurement):
                writer.writerow(
                    {
                        **common,
                        **_measurement_columns(a),
                        "image": relative_file_name(ref.frames[a.frame].path, out.parent),
                    }
                )
            elif isinstance(a, Mask):
                writer.writerow(
                    {**common, **_mask_columns(a), "image": relative_file_name(ref.frames[a.frame].path, out.parent)}
                )
            elif isinstance(a, Box):
                source = ref.frames[a.frame]
                writer.writerow(
                    {
                        **common,
                        "image": relative_file_name(source.path, out.parent),
                        "sop_instance_uid": a.sop_instance_uid or "",
                        **_frame_columns(a.frame),
                        "frame_number": "" if a.frame_number is None else a.frame_number,
                        "x1": number(a.x1),
                        "y1": number(a.y1),
                        "x2": number(a.x2),
                        "y2": number(a.y2),
                        "kind": "box",
                        **_placement_columns(a.placement),
                    }
                )
            else:
                writer.writerow(
                    {**common, "image": relative_file_name(ref.paths[0], out.parent), "kind": "image_label"}
                )
    write_text_atomic(out, buffer.getvalue())  # the csv module's own line endings, unchanged
    return [out]


def _measurement_columns(m: Measurement) -> dict[str, object]:
    xs, ys = [p[0] for p in m.points], [p[1] for p in m.points]
    row: dict[str, object] = {
        "sop_instance_uid": m.sop_instance_uid or "",
        **_frame_columns(m.frame),
        "frame_number": "" if m.frame_number is None else m.frame_number,
        "kind": str(m.kind),
        "x1": number(min(xs)),
        "y1": number(min(ys)),
        "x2": number(max(xs)),
        "y2": number(max(ys)),
        "points": ";".join(f"{number(x)} {number(y)}" for x, y in m.points),
    }
    return {**row, **_value_columns(m.values), **_placement_columns(m.placement)}


def _value_columns(values: Sequence[MeasuredValue]) -> dict[str, object]:
    row: dict[str, object] = {}
    for value in values:
        if value.name in _VALUE_COLUMNS:
            row[_VALUE_COLUMNS[value.name]] = repr(value.value)
        if value.name == "mean":
            row["value_unit"] = value.unit
    return row


def _mask_columns(m: Mask) -> dict[str, object]:
    boxes = [f.rle.bbox() for f in m.frames]
    first = m.frames[0]
    return {
        "sop_instance_uid": first.sop_instance_uid or "",
        **_frame_columns(first.frame),
        "frame_number": "" if first.frame_number is None else first.frame_number,
        "kind": "mask",
        "x1": number(min(b[0] for b in boxes)),
        "y1": number(min(b[1] for b in boxes)),
        "x2": number(max(b[0] + b[2] for b in boxes)),
        "y2": number(max(b[1] + b[3] for b in boxes)),
        "mask_slices": ";".join(str(f.frame + 1) for f in m.frames),
        "mask_pixels": m.area_pixels,
        **_value_columns(m.values),
    }


def _frame_columns(frame: int) -> dict[str, object]:
    """The frame as people read it (1-based, as on screen) and as code indexes it (0-based)."""
    return {"slice": frame + 1, "frame_index": frame}


def _placement_columns(placement: PlanePlacement | None) -> dict[str, object]:
    if placement is None:
        return {}
    return {
        "plane": placement.plane,
        "plane_slice": placement.index + 1,
        "plane_index": placement.index,
        "points_mm": ";".join(" ".join(repr(v) for v in p) for p in placement.points_mm),
    }
