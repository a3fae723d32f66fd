"""What the mask exporters share: which masks go, grouped by label, as per-frame arrays.

Every mask format (DICOM SEG, NIfTI, PNG label maps) writes one region per label, not per
annotation: two masks called "liver" are one liver. A label's number is its position in the
label set plus one (as COCO category ids; YOLO classes are the same order from 0), so one project
gives every label the same number on every image and in every format, which is what a training
set needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.targets import ReviewScope, kept_masks, selected_images
from engine.annotations.image_ref import ImageRef
from engine.annotations.model import Mask


@dataclass
class LabelMasks:
    """The union of one label's masks on one image, per frame."""

    number: int  # 1-based position in the document's label set
    label: str
    color: str
    masks: list[Mask] = field(default_factory=list)
    frames: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageMasks:
    ref: ImageRef
    labels: tuple[LabelMasks, ...]

    @property
    def frames(self) -> list[int]:
        """Frames where any label has pixels, in order."""
        return sorted({index for label in self.labels for index in label.frames})

    def label_map(self, frame: int, dtype: type = np.uint16) -> np.ndarray:
        """One frame as label values (0 background); where labels overlap, the later label wins."""
        out = np.zeros((self.ref.height, self.ref.width), dtype=dtype)
        for label in self.labels:
            if frame in label.frames:
                out[label.frames[frame]] = label.number
        return out


def image_masks(doc: AnnotationDocument, image_ids: Sequence[str] | None, scope: ReviewScope) -> list[ImageMasks]:
    """The selected images that have masks in ``scope``, each with its labels' per-frame unions."""
    order = {label.name: i for i, label in enumerate(doc.labels)}
    result = []
    for ref in selected_images(doc, image_ids):
        masks = kept_masks(doc, ref.image_id, scope)
        if not masks:
            continue
        names = sorted({m.label for m in masks}, key=lambda n: order.get(n, len(order)))
        labels = {name: LabelMasks(order[name] + 1, name, doc.label(name).color) for name in names}
        for mask in masks:
            entry = labels[mask.label]
            entry.masks.append(mask)
            for index, array in mask.arrays().items():
                entry.frames[index] = entry.frames[index] | array if index in entry.frames else array
        result.append(ImageMasks(ref, tuple(labels.values())))
    return result


def legend(images: Sequence[ImageMasks]) -> list[dict[str, object]]:
    """``[{"value", "label", "color"}]`` of the labels written (labels.json next to label maps)."""
    seen = {label.number: label for image in images for label in image.labels}
    return [{"value": n, "label": seen[n].label, "color": seen[n].color} for n in sorted(seen)]
