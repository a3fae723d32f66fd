"""Pascal VOC XML: one ``<name>.xml`` per exported picture.

VOC counts pixels from 1 and its ``xmax``/``ymax`` are inclusive pixel indices, so a box with
our corners (x1, y1, x2, y2) is written ``xmin = x1 + 1``, ``ymin = y1 + 1``, ``xmax = x2``,
``ymax = y2`` (the whole image is 1, 1, width, height; readers such as Detectron subtract 1 from
xmin/ymin to get back to 0-based corners). Boxes are clipped to the image (``truncated`` = 1
when that cut them); values are integers when exact, else rounded to 3 decimals. For a frame of
a multi-frame file ``<filename>`` names the file and the XML name carries ``_f<frame number>``.
Rejected boxes are left out unless asked for.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.targets import ExportTarget, ReviewScope, clipped, export_targets, number


def _add(parent: ET.Element, tag: str, text: str | int | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
    return element


def voc_tree(target: ExportTarget) -> ET.ElementTree:
    ref, path = target.image, target.source.path
    root = ET.Element("annotation")
    _add(root, "folder", os.path.basename(os.path.dirname(path)))
    _add(root, "filename", os.path.basename(path))
    _add(root, "path", path)
    _add(_add(root, "source"), "database", "ClinLens")
    size = _add(root, "size")
    _add(size, "width", ref.width)
    _add(size, "height", ref.height)
    _add(size, "depth", ref.channels)
    _add(root, "segmented", 0)
    for box in target.boxes:
        rect = clipped(box, ref.width, ref.height)
        if rect is None:
            continue
        x1, y1, x2, y2 = rect
        obj = _add(root, "object")
        _add(obj, "name", box.label)
        _add(obj, "pose", "Unspecified")
        _add(obj, "truncated", int(rect != box.rect))
        _add(obj, "difficult", 0)
        bndbox = _add(obj, "bndbox")
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            _add(bndbox, tag, number(round(value, 3)))
    ET.indent(root)
    return ET.ElementTree(root)


def export_voc(
    doc: AnnotationDocument,
    out: str | os.PathLike[str],
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> list[Path]:
    """VOC has no place to say which review states it holds (see ``export_yolo``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for target in export_targets(doc, image_ids, scope=ReviewScope(include_pending, include_rejected)):
        path = out / f"{target.name}.xml"
        voc_tree(target).write(path, encoding="utf-8", xml_declaration=True)
        written.append(path)
    return written
