"""Which pictures an export writes and what each is called; shared by every exporter.

Exchange formats know flat pictures, not series or multi-frame files, so each exported picture
is one frame of one image: every frame that carries a box (or, for COCO, a mask), and frame 0 of an image without
boxes (so it still appears, with its image-level labels and review flag). ``ReviewScope`` says
which review states every exporter keeps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from engine.annotations.document import AnnotationDocument
from engine.annotations.image_ref import ImageRef
from engine.annotations.model import Annotation, Box, ImageLabel, Mask, MaskFrame, Measurement, Review
from engine.imaging import FrameSource

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExportTarget:
    image: ImageRef
    frame: int  # 0-based frame index in the image
    name: str  # unique, file-system-safe stem for per-picture files (YOLO, VOC)
    boxes: tuple[Box, ...]
    masks: tuple[tuple[Mask, MaskFrame], ...] = ()  # with_masks only: each mask's pixels on this frame

    @property
    def source(self) -> FrameSource:
        return self.image.frames[self.frame]


class ExportError(Exception):
    """The export cannot be written as asked; ``str(err)`` is a sentence for the user."""


@dataclass(frozen=True)
class ReviewScope:
    """Which review states an export holds.

    Why the default leaves pending and rejected output out: an export leaves the app for a
    training set, a report or an archive (``export --format sr`` then ``pacs send``), where a
    model box nobody looked at, or one a reviewer turned down, would pass for a finding. What a
    person stands behind goes by default: their own annotations and machine output accepted or
    corrected. ``include_pending`` adds unreviewed machine output; rejected output needs its own
    ``include_rejected``, never implied by the other.
    """

    include_pending: bool = False
    include_rejected: bool = False

    def keeps(self, annotation: Annotation) -> bool:
        return self.keeps_state(annotation.review)

    def keeps_state(self, review: Review) -> bool:
        if review is Review.PENDING:
            return self.include_pending
        if review is Review.REJECTED:
            return self.include_rejected
        return True

    @property
    def states(self) -> list[str]:
        """The review states exported, for formats with a field to say so (COCO ``info``, our JSON)."""
        return [str(r) for r in Review if self.keeps_state(r)]

    def describe(self) -> str:
        """What the export holds, in words (COCO ``info.description``, the GUI's status line)."""
        added = [name for name, on in (("pending", self.include_pending), ("rejected", self.include_rejected)) if on]
        if not added:
            return "reviewed only: user annotations and accepted or corrected model output"
        return "user annotations and accepted or corrected model output, with " + " and ".join(added) + " model output"

    def title(self) -> str:
        """A few words for a short field (the SR's Series Description, 64 characters at most)."""
        added = [name for name, on in (("pending", self.include_pending), ("rejected", self.include_rejected)) if on]
        return "reviewed only" if not added else "incl. " + " and ".join(added)


REVIEWED_ONLY = ReviewScope()  # the default of every export


def selected_images(doc: AnnotationDocument, image_ids: Sequence[str] | None) -> list[ImageRef]:
    return list(doc.images) if image_ids is None else [doc.image(i) for i in image_ids]


def kept_boxes(doc: AnnotationDocument, image_id: str, scope: ReviewScope) -> list[Box]:
    """Boxes drawn on the image's own frames; boxes on reformatted planes have no picture to go to."""
    return [b for b in doc.boxes(image_id) if b.placement is None and scope.keeps(b)]


def kept_placed_boxes(doc: AnnotationDocument, image_id: str, scope: ReviewScope) -> list[Box]:
    """Boxes drawn on a reformatted plane (formats with patient coordinates: CSV, SR)."""
    return [b for b in doc.boxes(image_id) if b.placement is not None and scope.keeps(b)]


def kept_measurements(doc: AnnotationDocument, image_id: str, scope: ReviewScope) -> list[Measurement]:
    return [m for m in doc.measurements(image_id) if scope.keeps(m)]


def kept_masks(doc: AnnotationDocument, image_id: str, scope: ReviewScope) -> list[Mask]:
    return [m for m in doc.masks(image_id) if scope.keeps(m)]


def kept_labels(doc: AnnotationDocument, image_id: str, scope: ReviewScope) -> list[ImageLabel]:
    return [label for label in doc.image_labels(image_id) if scope.keeps(label)]


def export_targets(
    doc: AnnotationDocument,
    image_ids: Sequence[str] | None = None,
    *,
    scope: ReviewScope = REVIEWED_ONLY,
    reserved: Sequence[str] = (),
    with_masks: bool = False,
) -> list[ExportTarget]:
    """The exported pictures in document order, with unique names (``reserved`` names are avoided).

    ``with_masks`` (COCO) adds the frames that carry a mask and lists each mask's frame there;
    the box-only formats (YOLO, VOC) leave it off, since a picture whose masked object has no box
    would teach a detector that nothing is there.
    """
    taken = {name.lower() for name in reserved}
    targets = []
    for ref in selected_images(doc, image_ids):
        boxes = kept_boxes(doc, ref.image_id, scope)
        masks = kept_masks(doc, ref.image_id, scope) if with_masks else []
        mask_frames = {f.frame for m in masks for f in m.frames}
        targets.extend(
            ExportTarget(
                ref,
                frame,
                picture_name(ref, frame, taken),
                tuple(b for b in boxes if b.frame == frame),
                tuple((m, f) for m in masks if (f := m.on(frame)) is not None),
            )
            for frame in sorted({b.frame for b in boxes} | mask_frames) or [0]
        )
    return targets


def picture_name(ref: ImageRef, frame: int, taken: set[str]) -> str:
    """A unique, file-system-safe stem for one frame's picture (``taken``, lower-case, grows)."""
    source = ref.frames[frame]
    stem = _UNSAFE.sub("_", PurePath(source.path).stem) or "image"
    if ref.frames_in_file(source.path) > 1:
        stem = f"{stem}_f{source.frame_number:04d}"
    name, counter = stem, 1
    while name.lower() in taken:
        counter += 1
        name = f"{stem}_{counter}"
    taken.add(name.lower())
    return name


def relative_file_name(path: str, base_dir: Path) -> str:
    """A picture's file name as written into an export: relative to the export, '/'-separated."""
    try:
        return PurePath(os.path.relpath(path, base_dir)).as_posix()
    except ValueError:  # another drive on Windows
        return PurePath(path).as_posix()


def number(value: float) -> str:
    """Short exact text for a coordinate (integers without '.0', others as Python's repr)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def clipped(box: Box, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The box corners limited to the image, or None when nothing of it lies inside."""
    x1, x2 = min(max(box.x1, 0.0), width), min(max(box.x2, 0.0), width)
    y1, y2 = min(max(box.y1, 0.0), height), min(max(box.y2, 0.0), height)
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None
