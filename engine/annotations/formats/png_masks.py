"""PNG label maps: one grey-scale PNG per frame that carries a mask, and a labels.json legend.

What segmentation training code (nnU-Net-style 2-D loaders, torchvision, MMSeg) reads: each pixel
is the label number (position in the label set plus one, as in every mask format; 0 background);
8-bit when every number fits, else 16-bit. File names follow the other per-picture exports
(``<file stem>[_f<frame number>].png``), so a label map sits beside its picture's YOLO/VOC file.
``labels.json`` maps values to label names and colours, and lists the pictures with their
source file, frame and DICOM binding.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.mask_layout import image_masks, legend
from engine.annotations.formats.targets import ExportError, ReviewScope, picture_name, relative_file_name
from engine.files import write_bytes_atomic, write_json_atomic


def png_bytes(label_map: np.ndarray) -> bytes:
    """A label map as an 8-bit (values < 256) or 16-bit grey PNG."""
    buffer = io.BytesIO()
    if int(label_map.max(initial=0)) < 256:
        Image.fromarray(label_map.astype(np.uint8), mode="L").save(buffer, format="PNG")
    else:
        Image.fromarray(label_map.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def export_png_masks(
    doc: AnnotationDocument,
    out: str | os.PathLike[str],
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> list[Path]:
    """Write ``<out>/<name>.png`` per frame with masks in scope, and ``<out>/labels.json``."""
    scope = ReviewScope(include_pending, include_rejected)
    selected = image_masks(doc, image_ids, scope)
    if not selected:
        raise ExportError(f"no masks to export ({scope.describe()})")
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    written, pictures, taken = [], [], {"labels"}
    for masks in selected:
        for frame in masks.frames:
            name = picture_name(masks.ref, frame, taken)
            path = out / f"{name}.png"
            write_bytes_atomic(path, png_bytes(masks.label_map(frame, np.uint16)))
            written.append(path)
            source = masks.ref.frames[frame]
            pictures.append(
                {
                    "file_name": path.name,
                    "image": relative_file_name(source.path, out),
                    "image_id": masks.ref.image_id,
                    "frame": frame,
                    "frame_number": source.frame_number,
                    "sop_instance_uid": source.sop_instance_uid,
                }
            )
    labels = out / "labels.json"
    write_json_atomic(labels, {"background": 0, "labels": legend(selected), "pictures": pictures})
    return [*written, labels]
