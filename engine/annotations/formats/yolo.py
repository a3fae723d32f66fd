"""YOLO detection labels: one ``<name>.txt`` per exported picture plus ``classes.txt``.

Each line is ``class cx cy w h``: the class index is the label's position in the label set
(line number in ``classes.txt``, from 0), and the centre and size are divided by the image width
(x) and height (y), so they lie in [0, 1]. Boxes are clipped to the image first; a box left
with no area is skipped. Rejected boxes are left out unless asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.targets import ReviewScope, clipped, export_targets
from engine.files import write_text_atomic

CLASSES_FILE = "classes.txt"


def yolo_line(class_index: int, rect: tuple[float, float, float, float], width: int, height: int) -> str:
    x1, y1, x2, y2 = rect
    return (
        f"{class_index} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
        f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
    )


def export_yolo(
    doc: AnnotationDocument,
    out: str | os.PathLike[str],
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> list[Path]:
    """YOLO has no place to say which review states it holds: the default (``ReviewScope``)
    keeps what a person stands behind; docs/reference/formats.md says so."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    class_index = {label.name: i for i, label in enumerate(doc.labels)}
    classes = out / CLASSES_FILE
    write_text_atomic(classes, "".join(f"{label.name}\n" for label in doc.labels))
    written = [classes]
    reserved = [Path(CLASSES_FILE).stem]
    scope = ReviewScope(include_pending, include_rejected)
    for target in export_targets(doc, image_ids, scope=scope, reserved=reserved):
        ref = target.image
        lines = [
            yolo_line(class_index[box.label], rect, ref.width, ref.height)
            for box in target.boxes
            if (rect := clipped(box, ref.width, ref.height))
        ]
        path = out / f"{target.name}.txt"
        write_text_atomic(path, "".join(f"{line}\n" for line in lines))
        written.append(path)
    return written
