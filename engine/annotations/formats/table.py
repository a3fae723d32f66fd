"""CSV: one row per annotation, for spreadsheets and pandas.

Columns: ``image`` (file of the frame, relative to the CSV), ``image_id``, ``sop_instance_uid``,
``frame`` (0-based index), ``frame_number`` (1-based DICOM), ``label``, ``x1, y1, x2, y2``
(our pixel corners, exact), ``source``, ``score``, ``review``, ``note``, ``annotation_id``,
``kind`` (``box`` or ``image_label``; image labels leave frame and coordinates empty).
Rejected boxes are included (the review column says so) unless left out on request.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.targets import kept_boxes, number, relative_file_name, selected_images
from engine.annotations.model import Annotation, Box

COLUMNS = ("image", "image_id", "sop_instance_uid", "frame", "frame_number", "label", "x1", "y1", "x2", "y2",
           "source", "score", "review", "note", "annotation_id", "kind")


def export_csv(doc: AnnotationDocument, out: str | os.PathLike[str], *, image_ids: Sequence[str] | None = None,
               include_rejected: bool = True) -> list[Path]:
    out = Path(out).absolute()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for ref in selected_images(doc, image_ids):
        rows: list[Annotation] = [*kept_boxes(doc, ref.image_id, include_rejected), *doc.image_labels(ref.image_id)]
        for a in rows:
            common = {"image_id": ref.image_id, "label": a.label, "source": str(a.source),
                      "score": "" if a.score is None else repr(a.score), "review": str(a.review),
                      "note": a.note, "annotation_id": a.id}
            if isinstance(a, Box):
                source = ref.frames[a.frame]
                writer.writerow({**common, "image": relative_file_name(source.path, out.parent),
                                 "sop_instance_uid": a.sop_instance_uid or "", "frame": a.frame,
                                 "frame_number": "" if a.frame_number is None else a.frame_number,
                                 "x1": number(a.x1), "y1": number(a.y1), "x2": number(a.x2), "y2": number(a.y2),
                                 "kind": "box"})
            else:
                writer.writerow({**common, "image": relative_file_name(ref.paths[0], out.parent),
                                 "kind": "image_label"})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return [out]
