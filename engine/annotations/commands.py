"""Every edit of an annotation document, as an undoable command.

Commands are built with the user's intent (ids and new values) and resolved against the document
when first applied: they then keep exact before/after snapshots, so undo and redo restore the very
same values (ids, timestamps, review states) however often they are repeated. Multi-annotation
commands are one undo step. Execute them with ``AnnotationDocument.execute``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.annotations.masks import FrameArrays, check_mask_fits, mask_frames
from engine.annotations.model import (
    Annotation,
    Box,
    Mask,
    MeasuredValue,
    Measurement,
    PlanePlacement,
    Review,
    edited,
    normalize_label_name,
)
from engine.annotations.undo import Command

if TYPE_CHECKING:
    from engine.annotations.document import AnnotationDocument


class _Replace(Command):
    """Base of the annotation commands: swap snapshots in and out."""

    def __init__(self, image_id: str, text: str) -> None:
        super().__init__(image_id, text)
        self._before: dict[str, Annotation | None] = {}
        self._after: dict[str, Annotation | None] | None = None

    @abstractmethod
    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        """The new values of the annotations this command changes (nothing = no-op)."""

    def redo(self, doc: AnnotationDocument) -> bool:
        if self._after is None:
            after = self._plan(doc)
            if not after:
                return False
            self._before = {key: doc.find(self.image_id, key) for key in after}
            self._after = after
        doc.apply_changes(self.image_id, self._after)
        return True

    def undo(self, doc: AnnotationDocument) -> None:
        doc.apply_changes(self.image_id, self._before)


class AddAnnotations(_Replace):
    """Create boxes or image labels (drawn, accepted from a model, imported)."""

    def __init__(self, image_id: str, annotations: Sequence[Annotation], text: str = "") -> None:
        n = len(annotations)
        single = {Measurement: "Add measurement", Mask: "Add mask"}.get(type(annotations[0]), "Add box") if n else ""
        super().__init__(image_id, text or (single if n == 1 else f"Add {n} annotations"))
        self.annotations = tuple(annotations)

    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        ref = doc.image(self.image_id)
        for annotation in self.annotations:
            if doc.find(self.image_id, annotation.id) is not None:
                raise ValueError(f"annotation {annotation.id} already exists")
            if isinstance(annotation, (Box, Measurement)) and annotation.frame >= ref.n_frames:
                raise ValueError(f"frame {annotation.frame} out of range for {ref.image_id} ({ref.n_frames} frames)")
            if isinstance(annotation, Mask):
                check_mask_fits(ref, annotation)
        return {a.id: a for a in self.annotations}


class ApplyProposals(_Replace):
    """Machine proposals for one image: new annotations, and existing ones replaced by id (a
    relabel proposal); ``remove`` drops stale proposals of an interrupted earlier attempt.

    Every image of one pre-annotation run gets one with the same ``group`` (the run id), so one
    undo removes the whole run (``AnnotationDocument.undo``).
    """

    def __init__(
        self,
        image_id: str,
        annotations: Sequence[Annotation],
        *,
        remove: Iterable[str] = (),
        group: str | None = None,
        text: str = "Pre-annotation",
    ) -> None:
        super().__init__(image_id, text)
        self.annotations = tuple(annotations)
        self.remove = tuple(remove)
        self.group = group

    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        ref = doc.image(self.image_id)
        for annotation in self.annotations:
            if isinstance(annotation, Box) and annotation.frame >= ref.n_frames:
                raise ValueError(f"frame {annotation.frame} out of range for {ref.image_id} ({ref.n_frames} frames)")
            if isinstance(annotation, Mask):
                check_mask_fits(ref, annotation)
        plan: dict[str, Annotation | None] = {key: None for key in self.remove if doc.find(self.image_id, key)}
        plan.update({a.id: a for a in self.annotations})
        return plan


class RemoveAnnotations(_Replace):
    """Delete one or several annotations in one step."""

    def __init__(self, image_id: str, annotation_ids: Iterable[str]) -> None:
        self.annotation_ids = tuple(annotation_ids)
        n = len(self.annotation_ids)
        super().__init__(image_id, "Delete annotation" if n == 1 else f"Delete {n} annotations")

    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        for key in self.annotation_ids:
            doc.annotation(self.image_id, key)  # raises KeyError for an unknown id
        return dict.fromkeys(self.annotation_ids)


class SetGeometry(_Replace):
    """Move or resize a box.

    Pass the same ``drag`` token (any hashable, e.g. a counter per mouse press) for every
    intermediate position of one drag: consecutive commands with the same token and box merge,
    so the whole drag is one undo step.
    """

    def __init__(
        self,
        image_id: str,
        annotation_id: str,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        *,
        drag: object | None = None,
    ) -> None:
        super().__init__(image_id, "Move box")
        self.annotation_id = annotation_id
        self.rect = (x1, y1, x2, y2)
        self.drag = drag

    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        box = doc.annotation(self.image_id, self.annotation_id)
        if not isinstance(box, Box):
            raise TypeError(f"annotation {self.annotation_id} is not a box")
        x1, y1, x2, y2 = self.rect
        moved = edited(box, doc.now(), x1=x1, y1=y1, x2=x2, y2=y2)
        if moved.rect == box.rect:
            return {}
        if (moved.width, moved.height) != (box.width, box.height):
            self.text = "Resize box"
        return {box.id: moved}

    def merge(self, newer: Command) -> bool:
        if (
            self.drag is None
            or not isinstance(newer, SetGeometry)
            or newer.drag != self.drag
            or newer.image_id != self.image_id
            or newer.annotation_id != self.annotation_id
        ):
            return False
        assert newer._after is not None  # an applied command
        self._after = dict(newer._after)
        if newer.text == "Resize box":
            self.text = newer.text
        return True


class SetMeasurement(_Replace):
    """Move a measurement's points (with its recomputed values); a drag merges like SetGeometry."""

    def __init__(
        self,
        image_id: str,
        annotation_id: str,
        points: tuple[tuple[float, float], ...],
        values: tuple[MeasuredValue, ...],
        placement: PlanePlacement | None = None,
        *,
        drag: object | None = None,
    ) -> None:
        super().__init__(image_id, "Edit measurement")
        self.annotation_id = annotation_id
        self.points, self.values, self.placement = tuple(points), tuple(values), placement
        self.drag = drag

    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        measurement = doc.annotation(self.image_id, self.annotation_id)
        if not isinstance(measurement, Measurement):
            raise TypeError(f"annotation {self.annotation_id} is not a measurement")
        if measurement.points == tuple(tuple(map(float, p)) for p in self.points):
            return {}
        placement = self.placement if self.placement is not None else measurement.placement
        return {
            measurement.id: edited(measurement, doc.now(), points=self.points, values=self.values, placement=placement)
        }

    def merge(self, newer: Command) -> bool:
        if (
            self.drag is None
            or not isinstance(newer, SetMeasurement)
            or newer.drag != self.drag
            or newer.image_id != self.image_id
            or newer.annotation_id != self.annotation_id
        ):
            return False
        assert newer._after is not None
        self._after = dict(newer._after)
        return True


class SetMaskFrames(_Replace):
    """Replace some frames of a mask: one brush or eraser stroke, one prompt, one propagation.

    ``arrays`` is ``{frame_index: bool array}``; each given frame is replaced whole (an empty
    array clears that frame), the other frames stay. One command is one undo step. Clearing every
    frame is refused (ValueError): deleting a mask is ``RemoveAnnotations``. ``values`` (the
    measurements recomputed from the new mask) replace the old ones when given.

    A later command with the same ``stroke`` token (and mask) merges into this one, as a drag of
    ``SetGeometry`` does: a brush stroke on a mask of many frames is applied at once and its
    volume, measured off the GUI thread, joins the same undo step when it arrives.
    """

    def __init__(
        self,
        image_id: str,
        annotation_id: str,
        arrays: FrameArrays,
        *,
        values: tuple[MeasuredValue, ...] | None = None,
        text: str = "Edit mask",
        stroke: object | None = None,
    ) -> None:
        super().__init__(image_id, text)
        self.annotation_id = annotation_id
        self.arrays = dict(arrays)
        self.values = None if values is None else tuple(values)
        self.stroke = stroke

    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        mask = doc.annotation(self.image_id, self.annotation_id)
        if not isinstance(mask, Mask):
            raise TypeError(f"annotation {self.annotation_id} is not a mask")
        new = {f.frame: f for f in mask_frames(doc.image(self.image_id), self.arrays)}
        frames = tuple(new.get(f.frame, f) for f in mask.frames if f.frame not in self.arrays or f.frame in new)
        frames += tuple(f for index, f in new.items() if mask.on(index) is None)
        if not frames:
            raise ValueError("this edit would leave the mask empty; delete the mask instead")
        changes: dict[str, object] = {"frames": frames}
        if self.values is not None:
            changes["values"] = self.values
        updated = edited(mask, doc.now(), **changes)
        if updated.frames == mask.frames and updated.values == mask.values:
            return {}
        return {mask.id: updated}

    def merge(self, newer: Command) -> bool:
        if (
            self.stroke is None
            or not isinstance(newer, SetMaskFrames)
            or newer.stroke != self.stroke
            or newer.image_id != self.image_id
            or newer.annotation_id != self.annotation_id
        ):
            return False
        assert newer._after is not None  # an applied command
        self._after = dict(newer._after)
        return True


class SetLabel(_Replace):
    """Relabel one or several annotations (the label joins the label set if new)."""

    def __init__(self, image_id: str, annotation_ids: Iterable[str], label: str) -> None:
        self.annotation_ids = tuple(annotation_ids)
        self.label = normalize_label_name(label)
        super().__init__(image_id, f"Label as {self.label}")

    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        current = [doc.annotation(self.image_id, key) for key in self.annotation_ids]
        now = doc.now()
        return {a.id: edited(a, now, label=self.label) for a in current if a.label != self.label}


class SetNote(_Replace):
    """Change the free-text note of an annotation."""

    def __init__(self, image_id: str, annotation_id: str, note: str) -> None:
        super().__init__(image_id, "Edit note")
        self.annotation_id = annotation_id
        self.note = note

    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        annotation = doc.annotation(self.image_id, self.annotation_id)
        if annotation.note == self.note:
            return {}
        return {annotation.id: edited(annotation, doc.now(), note=self.note)}


class SetReview(_Replace):
    """Accept, reject or mark corrected one or several annotations in one step."""

    def __init__(self, image_id: str, annotation_ids: Iterable[str], review: Review | str) -> None:
        self.annotation_ids = tuple(annotation_ids)
        self.review = Review(review)
        verb = {
            Review.ACCEPTED: "Accept",
            Review.REJECTED: "Reject",
            Review.CORRECTED: "Mark corrected",
            Review.PENDING: "Reset review of",
        }[self.review]
        n = len(self.annotation_ids)
        super().__init__(image_id, f"{verb} {'annotation' if n == 1 else f'{n} annotations'}")

    def _plan(self, doc: AnnotationDocument) -> dict[str, Annotation | None]:
        current = [doc.annotation(self.image_id, key) for key in self.annotation_ids]
        now = doc.now()
        return {a.id: replace(a, review=self.review, modified=now) for a in current if a.review != self.review}


class SetImageReviewed(Command):
    """Mark a whole image reviewed (or not); counts towards the review progress."""

    def __init__(self, image_id: str, reviewed: bool = True) -> None:
        super().__init__(image_id, "Mark image reviewed" if reviewed else "Mark image not reviewed")
        self.reviewed = reviewed

    def redo(self, doc: AnnotationDocument) -> bool:
        if doc.image_state(self.image_id).reviewed == self.reviewed:
            return False
        doc.set_reviewed_state(self.image_id, self.reviewed)
        return True

    def undo(self, doc: AnnotationDocument) -> None:
        doc.set_reviewed_state(self.image_id, not self.reviewed)
