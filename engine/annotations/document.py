"""The annotation document of one project: images, their annotations, the label set, review state.

The GUI owns one document on its main thread (it is not thread-safe), edits it only through
commands (``execute``/``undo``/``redo``, one undo history per image) and redraws from the
``DocumentEvent``s its listeners receive. Everything it reads back is plain frozen data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from engine.annotations.colors import distinct_color
from engine.annotations.commands import AddAnnotations
from engine.annotations.image_ref import ImageRef
from engine.annotations.masks import FrameArrays, check_mask_fits, mask_frames
from engine.annotations.model import (
    Annotation,
    Box,
    ImageLabel,
    Label,
    Mask,
    MeasuredValue,
    MeasureKind,
    Measurement,
    PlanePlacement,
    Provenance,
    Review,
    Source,
    default_review,
    new_id,
    normalize_color,
    normalize_label_name,
    utc_now,
)
from engine.annotations.undo import DEFAULT_UNDO_LIMIT, Command, UndoStack
from engine.report.model import Report

log = logging.getLogger(__name__)


class Change(StrEnum):
    """What a ``DocumentEvent`` is about."""

    ANNOTATIONS = "annotations"  # added/changed/removed annotation ids on image_id
    IMAGES = "images"  # image added (added=(id,)) or re-keyed (also removed=(old id,))
    IMAGE_STATE = "image_state"  # reviewed flag or last viewed frame of image_id
    LABELS = "labels"  # the label set (added/changed/removed label names)
    HISTORY = "history"  # undo/redo availability or texts of image_id
    REPORTS = "reports"  # reports added/changed/removed (ids), image_id: the image whose step it was


@dataclass(frozen=True)
class DocumentEvent:
    change: Change
    image_id: str | None = None
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


Listener = Callable[[DocumentEvent], None]


@dataclass(frozen=True)
class ImageState:
    reviewed: bool = False
    last_frame: int = 0  # restored when the image is shown again


@dataclass(frozen=True)
class ReviewProgress:
    reviewed_images: int
    total_images: int
    pending_annotations: int  # annotations still in review state "pending"


@dataclass
class _Entry:
    ref: ImageRef
    state: ImageState
    history: UndoStack
    annotations: dict[str, Annotation] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)  # stable draw/export order, kept across undo


class AnnotationDocument:
    """Images, annotations and labels of one project, edited through undoable commands."""

    def __init__(
        self, *, labels: Iterable[Label] = (), undo_limit: int = DEFAULT_UNDO_LIMIT, clock: Callable[[], str] = utc_now
    ) -> None:
        self.undo_limit = undo_limit
        self._clock = clock
        self._labels: dict[str, Label] = {}
        self._aliases: dict[str, str] = {}  # renamed label -> new name, so old undo steps follow renames
        self._images: dict[str, _Entry] = {}
        self._reports: dict[str, Report] = {}  # by id, in the order they were started
        self._listeners: list[Listener] = []
        self._revision = 0
        self._saved_revision = 0
        for label in labels:
            self._labels[label.name] = label

    # --- listeners -------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` after every change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, event: DocumentEvent) -> None:
        if event.change is not Change.HISTORY:
            self._revision += 1
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one broken view must not corrupt the edit that already happened
                log.exception("annotation listener failed on %s", event)

    # --- save state ------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """Increases with every change; lets a saver know whether anything happened since."""
        return self._revision

    @property
    def dirty(self) -> bool:
        return self._revision != self._saved_revision

    def mark_saved(self, revision: int | None = None) -> None:
        """Record that the state at ``revision`` (default: now) is on disk."""
        self._saved_revision = self._revision if revision is None else revision

    def now(self) -> str:
        return self._clock()

    # --- images ----------------------------------------------------------------------------

    @property
    def images(self) -> tuple[ImageRef, ...]:
        return tuple(entry.ref for entry in self._images.values())

    def has_image(self, image_id: str) -> bool:
        return image_id in self._images

    def image(self, image_id: str) -> ImageRef:
        return self._entry(image_id).ref

    def _entry(self, image_id: str) -> _Entry:
        try:
            return self._images[image_id]
        except KeyError:
            raise KeyError(f"unknown image {image_id!r}") from None

    def add_image(self, ref: ImageRef) -> str:
        """Register an opened image; returns the id its annotations live under from now on.

        A known id updates the stored description. An unknown id that names the same files as
        a known image (same SOP Instance UIDs, or the same paths after the folder moved with its
        sidecar) takes over that image's annotations. When frames were re-sorted, DICOM boxes
        follow their SOP Instance UID and frame number to the new index.
        """
        if ref.image_id not in self._images:
            old_id = self._matching_image(ref)
            if old_id is None:
                self._images[ref.image_id] = _Entry(ref, ImageState(), UndoStack(self.undo_limit))
                self._emit(DocumentEvent(Change.IMAGES, ref.image_id, added=(ref.image_id,)))
                return ref.image_id
            entry = self._images.pop(old_id)
            entry.history.clear()  # its commands name the old id
            self._images[ref.image_id] = entry
            self._emit(DocumentEvent(Change.IMAGES, ref.image_id, added=(ref.image_id,), removed=(old_id,)))
        entry = self._images[ref.image_id]
        entry.ref = ref
        moved = {}
        for annotation in entry.annotations.values():
            if isinstance(annotation, (Box, Measurement)) and annotation.sop_instance_uid and annotation.frame_number:
                index = ref.frame_index(annotation.sop_instance_uid, annotation.frame_number)
                if index is not None and index != annotation.frame:
                    moved[annotation.id] = replace(annotation, frame=index)
            elif isinstance(annotation, Mask):
                rebound = _rebind_mask(annotation, ref)
                if rebound is not annotation:
                    moved[annotation.id] = rebound
        if moved:
            entry.history.clear()  # snapshots hold the old frame indices
            self._store(ref.image_id, moved)
            self._emit(DocumentEvent(Change.HISTORY, ref.image_id))
        return ref.image_id

    def _check_merge(self, other: AnnotationDocument) -> None:
        """Raise ValueError if ``merge(other)`` would fail half-way (it binds images the same way)."""
        refs = {image_id: entry.ref for image_id, entry in self._images.items()}
        for ref in other.images:
            target = ref.image_id if ref.image_id in refs else self._matching_image(ref, refs)
            if target is None:
                target = ref.image_id
                refs[target] = ref
            n_frames = refs[target].n_frames
            for box in other.boxes(ref.image_id):
                if box.frame >= n_frames:
                    raise ValueError(f"box {box.id} is on frame {box.frame} but image {target} has {n_frames} frame(s)")
            for mask in other.masks(ref.image_id):
                try:
                    check_mask_fits(refs[target], mask)
                except ValueError as err:
                    raise ValueError(f"mask {mask.id}: {err}") from None

    def _matching_image(self, ref: ImageRef, refs: dict[str, ImageRef] | None = None) -> str | None:
        """The known image showing the same files as ``ref`` (``refs``: the images to search)."""
        uids = {f.sop_instance_uid for f in ref.frames if f.sop_instance_uid}
        known_refs = refs if refs is not None else {image_id: entry.ref for image_id, entry in self._images.items()}
        for image_id, known in known_refs.items():
            if uids and uids == {f.sop_instance_uid for f in known.frames if f.sop_instance_uid}:
                return image_id
            if not uids and set(ref.paths) == set(known.paths):
                return image_id
        return None

    def restore_image(
        self, ref: ImageRef, annotations: Iterable[Annotation] = (), state: ImageState = ImageState()
    ) -> None:
        """Put an image exactly as read from a file (readers use this; not undoable).

        Raises ValueError when a box lies on a frame the image does not have.
        """
        annotations = list(annotations)
        for annotation in annotations:
            if isinstance(annotation, (Box, Measurement)) and annotation.frame >= ref.n_frames:
                raise ValueError(
                    f"{type(annotation).__name__.lower()} {annotation.id} is on frame {annotation.frame} "
                    f"but the image has {ref.n_frames} frame(s)"
                )
            if isinstance(annotation, Mask):
                try:
                    check_mask_fits(ref, annotation)
                except ValueError as err:
                    raise ValueError(f"mask {annotation.id}: {err}") from None
        entry = _Entry(ref, state, UndoStack(self.undo_limit))
        self._images[ref.image_id] = entry
        self._emit(DocumentEvent(Change.IMAGES, ref.image_id, added=(ref.image_id,)))
        self._store(ref.image_id, {a.id: a for a in annotations})

    def image_state(self, image_id: str) -> ImageState:
        return self._entry(image_id).state

    def set_last_frame(self, image_id: str, frame: int) -> None:
        """Remember the frame the user looks at (saved, not undoable: viewing is not editing)."""
        entry = self._entry(image_id)
        entry.ref.frame(frame)  # range check
        if entry.state.last_frame != frame:
            entry.state = replace(entry.state, last_frame=frame)
            self._emit(DocumentEvent(Change.IMAGE_STATE, image_id))

    def set_reviewed_state(self, image_id: str, reviewed: bool) -> None:
        """Low-level setter for ``SetImageReviewed``; use that command from the GUI."""
        entry = self._entry(image_id)
        entry.state = replace(entry.state, reviewed=reviewed)
        self._emit(DocumentEvent(Change.IMAGE_STATE, image_id))

    # --- reading annotations ---------------------------------------------------------------

    def annotations(self, image_id: str) -> list[Annotation]:
        """All annotations of an image (boxes and image labels) in their stable order."""
        entry = self._entry(image_id)
        return sorted(entry.annotations.values(), key=lambda a: entry.order[a.id])

    def boxes(self, image_id: str, frame: int | None = None) -> list[Box]:
        """Boxes of an image; with ``frame``, those drawn on that frame itself (not on a reformat)."""
        return [
            a
            for a in self.annotations(image_id)
            if isinstance(a, Box) and (frame is None or (a.frame == frame and a.placement is None))
        ]

    def measurements(self, image_id: str, frame: int | None = None) -> list[Measurement]:
        """Measurements of an image; with ``frame``, those drawn on that frame itself."""
        return [
            a
            for a in self.annotations(image_id)
            if isinstance(a, Measurement) and (frame is None or (a.frame == frame and a.placement is None))
        ]

    def masks(self, image_id: str, frame: int | None = None) -> list[Mask]:
        """Masks of an image; with ``frame``, those with pixels on that frame."""
        return [
            a for a in self.annotations(image_id) if isinstance(a, Mask) and (frame is None or a.on(frame) is not None)
        ]

    def placed(self, image_id: str) -> list[Box | Measurement]:
        """Boxes and measurements drawn on reformatted planes (they carry patient coordinates)."""
        return [a for a in self.annotations(image_id) if isinstance(a, (Box, Measurement)) and a.placement is not None]

    def image_labels(self, image_id: str) -> list[ImageLabel]:
        return [a for a in self.annotations(image_id) if isinstance(a, ImageLabel)]

    def find(self, image_id: str, annotation_id: str) -> Annotation | None:
        return self._entry(image_id).annotations.get(annotation_id)

    def annotation(self, image_id: str, annotation_id: str) -> Annotation:
        found = self.find(image_id, annotation_id)
        if found is None:
            raise KeyError(f"unknown annotation {annotation_id!r} on {image_id!r}")
        return found

    def new_box(
        self,
        image_id: str,
        frame: int,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        label: str,
        *,
        source: Source | str = Source.USER,
        score: float | None = None,
        note: str = "",
        review: Review | str | None = None,
    ) -> Box:
        """A new box bound to its frame's DICOM source (add it with ``AddAnnotations``)."""
        frame_ref = self.image(image_id).frame(frame)
        source = Source(source)
        now = self.now()
        return Box(
            id=new_id(),
            frame=frame,
            x1=x1,
            y1=y1,
            x2=x2,
            y2=y2,
            label=label,
            source=source,
            score=score,
            note=note,
            review=Review(review) if review else default_review(source),
            created=now,
            modified=now,
            sop_instance_uid=frame_ref.sop_instance_uid,
            frame_number=frame_ref.frame_number if frame_ref.sop_instance_uid else None,
        )

    def new_measurement(
        self,
        image_id: str,
        kind: MeasureKind | str,
        frame: int,
        points: tuple[tuple[float, float], ...],
        values: tuple[MeasuredValue, ...],
        *,
        label: str = "measurement",
        placement: PlanePlacement | None = None,
        source: Source | str = Source.USER,
        note: str = "",
    ) -> Measurement:
        """A new measurement bound to its frame's DICOM source (for a reformat: the nearest slice)."""
        frame_ref = self.image(image_id).frame(frame)
        source = Source(source)
        now = self.now()
        return Measurement(
            id=new_id(),
            kind=MeasureKind(kind),
            frame=frame,
            points=points,
            values=values,
            label=label,
            source=source,
            note=note,
            review=default_review(source),
            created=now,
            modified=now,
            sop_instance_uid=frame_ref.sop_instance_uid,
            frame_number=frame_ref.frame_number if frame_ref.sop_instance_uid else None,
            placement=placement,
        )

    def new_mask(
        self,
        image_id: str,
        arrays: FrameArrays,
        label: str,
        *,
        source: Source | str = Source.USER,
        score: float | None = None,
        note: str = "",
        review: Review | str | None = None,
        provenance: Provenance | None = None,
        values: tuple[MeasuredValue, ...] = (),
    ) -> Mask:
        """A new mask from ``{frame_index: bool array (rows, columns)}`` (add it with ``AddAnnotations``).

        Each frame is bound to its DICOM source like a box; ValueError for a frame the image does
        not have, an array of another size, or nothing inside on any frame.
        """
        frames = mask_frames(self.image(image_id), arrays)
        if not frames:
            raise ValueError("the mask has no pixels inside on any frame")
        source = Source(source)
        now = self.now()
        return Mask(
            id=new_id(),
            frames=frames,
            label=label,
            source=source,
            score=score,
            note=note,
            review=Review(review) if review else default_review(source),
            created=now,
            modified=now,
            provenance=provenance,
            values=tuple(values),
        )

    def new_image_label(
        self,
        image_id: str,
        label: str,
        *,
        source: Source | str = Source.CLASSIFIER,
        score: float | None = None,
        note: str = "",
        review: Review | str | None = None,
    ) -> ImageLabel:
        self._entry(image_id)
        source = Source(source)
        now = self.now()
        return ImageLabel(
            id=new_id(),
            label=label,
            source=source,
            score=score,
            note=note,
            review=Review(review) if review else default_review(source),
            created=now,
            modified=now,
        )

    # --- editing ---------------------------------------------------------------------------

    def execute(self, command: Command) -> bool:
        """Apply a command and record it in its image's undo history (False: it changed nothing)."""
        entry = self._entry(command.image_id)
        if not command.redo(self):
            return False
        entry.history.push(command)
        self._emit(DocumentEvent(Change.HISTORY, command.image_id))
        return True

    def undo(self, image_id: str) -> bool:
        """Undo the image's last step; a grouped step (a pre-annotation run) is undone on every
        image whose last step belongs to the same group, so the whole run goes in one step."""
        command = self._entry(image_id).history.take_undo()
        if command is None:
            return False
        command.undo(self)
        self._emit(DocumentEvent(Change.HISTORY, image_id))
        if command.group is not None:
            for other_id, entry in self._images.items():
                other = entry.history.peek_undo()
                if other_id != image_id and other is not None and other.group == command.group:
                    entry.history.take_undo()
                    other.undo(self)
                    self._emit(DocumentEvent(Change.HISTORY, other_id))
        return True

    def redo(self, image_id: str) -> bool:
        """Redo the image's next step, and the rest of its group on the other images."""
        command = self._entry(image_id).history.take_redo()
        if command is None:
            return False
        command.redo(self)
        self._emit(DocumentEvent(Change.HISTORY, image_id))
        if command.group is not None:
            for other_id, entry in self._images.items():
                other = entry.history.peek_redo()
                if other_id != image_id and other is not None and other.group == command.group:
                    entry.history.take_redo()
                    other.redo(self)
                    self._emit(DocumentEvent(Change.HISTORY, other_id))
        return True

    def history(self, image_id: str) -> UndoStack:
        """The image's undo stack, for can_undo/can_redo/undo_text/redo_text (do not push to it)."""
        return self._entry(image_id).history

    def apply_changes(self, image_id: str, changes: Mapping[str, Annotation | None]) -> None:
        """Low-level write used by commands: put or remove (None) annotations, then notify."""
        self._store(image_id, changes)

    def _store(self, image_id: str, changes: Mapping[str, Annotation | None]) -> None:
        entry = self._entry(image_id)
        added, changed, removed = [], [], []
        for key, annotation in changes.items():
            if annotation is None:
                if entry.annotations.pop(key, None) is not None:
                    removed.append(key)
                continue
            label = self._resolve(annotation.label)
            if label != annotation.label:
                annotation = replace(annotation, label=label)
            self.ensure_label(label)
            (changed if key in entry.annotations else added).append(key)
            entry.annotations[key] = annotation
            entry.order.setdefault(key, len(entry.order))
        if added or changed or removed:
            self._emit(DocumentEvent(Change.ANNOTATIONS, image_id, tuple(added), tuple(changed), tuple(removed)))

    # --- labels ----------------------------------------------------------------------------

    @property
    def labels(self) -> tuple[Label, ...]:
        """The label set in order (YOLO class index = position)."""
        return tuple(self._labels.values())

    def label(self, name: str) -> Label:
        return self._labels[normalize_label_name(name)]

    def ensure_label(self, name: str, color: str | None = None) -> Label:
        """The label called ``name``, created (with ``color`` or a distinct one) when new."""
        name = normalize_label_name(name)
        if name in self._labels:
            return self._labels[name]
        label = Label(name, color or distinct_color(label.color for label in self._labels.values()))
        self._labels[name] = label
        self._aliases.pop(name, None)
        self._emit(DocumentEvent(Change.LABELS, added=(name,)))
        return label

    def set_label_color(self, name: str, color: str) -> None:
        label = self.label(name)
        color = normalize_color(color)
        if label.color != color:
            self._labels[label.name] = replace(label, color=color)
            self._emit(DocumentEvent(Change.LABELS, changed=(label.name,)))

    def rename_label(self, old: str, new: str) -> None:
        """Rename a label everywhere; renaming onto an existing label merges the two.

        Label-set edits are project settings, not undo steps; undoing an older edit that still
        names the old label lands on the new name.
        """
        old_label, new = self.label(old), normalize_label_name(new)
        if new == old_label.name:
            return
        merged = new in self._labels
        labels = {}
        for name, label in self._labels.items():
            if name == old_label.name:
                if not merged:
                    labels[new] = replace(label, name=new)
            else:
                labels[name] = label
        self._labels = labels
        for alias, target in self._aliases.items():
            if target == old_label.name:
                self._aliases[alias] = new
        self._aliases[old_label.name] = new
        self._emit(DocumentEvent(Change.LABELS, changed=(new,), removed=(old_label.name,)))
        for image_id, entry in self._images.items():
            renamed = {a.id: replace(a, label=new) for a in entry.annotations.values() if a.label == old_label.name}
            self._store(image_id, renamed)

    def remove_label(self, name: str) -> None:
        """Remove an unused label (relabel or delete its annotations first)."""
        label = self.label(name)
        used = self.label_usage(label.name)
        if used:
            raise ValueError(f"label {label.name!r} is used by {used} annotation(s)")
        del self._labels[label.name]
        self._emit(DocumentEvent(Change.LABELS, removed=(label.name,)))

    def label_usage(self, name: str) -> int:
        return sum(1 for entry in self._images.values() for a in entry.annotations.values() if a.label == name)

    def _resolve(self, name: str) -> str:
        seen = set()
        while name in self._aliases and name not in seen:
            seen.add(name)
            name = self._aliases[name]
        return name

    # --- review ----------------------------------------------------------------------------

    def progress(self) -> ReviewProgress:
        """Reviewed k of n images, and how many annotations still wait for a decision."""
        return ReviewProgress(
            reviewed_images=sum(1 for e in self._images.values() if e.state.reviewed),
            total_images=len(self._images),
            pending_annotations=sum(
                1 for e in self._images.values() for a in e.annotations.values() if a.review is Review.PENDING
            ),
        )

    def images_needing_review(self) -> list[str]:
        """Ids of the images not yet marked reviewed, in document order."""
        return [image_id for image_id, e in self._images.items() if not e.state.reviewed]

    def order_images(self, image_ids: list[str]) -> None:
        """Put the images in this order (the review order a project file keeps; ids not given stay
        after them, as they were). Nothing else changes, so it is not an undoable edit."""
        first = [i for i in dict.fromkeys(image_ids) if i in self._images]
        order = first + [i for i in self._images if i not in set(first)]
        if order != list(self._images):
            self._images = {i: self._images[i] for i in order}
            self._emit(DocumentEvent(Change.IMAGES, order[0]))

    # --- reports ---------------------------------------------------------------------------

    def study_key(self, image_id: str) -> str:
        """The study a report of this image belongs to: its Study Instance UID, else the image itself."""
        ref = self.image(image_id)
        return ref.study_instance_uid or ref.image_id

    def study_images(self, study_key: str) -> list[str]:
        """Ids of the images of a study (what a report of ``study_key`` may cite)."""
        return [ref.image_id for ref in self.images if self.study_key(ref.image_id) == study_key]

    def reports(self, study_key: str | None = None) -> list[Report]:
        """Reports (of one study), oldest first: amendments come after what they replace."""
        return [r for r in self._reports.values() if study_key is None or r.study_key == study_key]

    def find_report(self, report_id: str) -> Report | None:
        return self._reports.get(report_id)

    def current_report(self, study_key: str) -> Report | None:
        """The study's report nobody has amended yet (the newest of its chain)."""
        replaced = {r.replaces for r in self._reports.values() if r.replaces}
        current = [r for r in self.reports(study_key) if r.id not in replaced]
        return current[-1] if current else None

    def apply_report(self, report_id: str, report: Report | None, image_id: str | None = None) -> None:
        """Low-level write used by report commands: put or remove (None) a report, then notify."""
        existed = report_id in self._reports
        if report is None:
            if self._reports.pop(report_id, None) is None:
                return
            self._emit(DocumentEvent(Change.REPORTS, image_id, removed=(report_id,)))
            return
        if report.id != report_id:
            raise ValueError(f"report {report.id} stored under {report_id}")
        self._reports[report_id] = report
        key = "changed" if existed else "added"
        self._emit(DocumentEvent(Change.REPORTS, image_id, **{key: (report_id,)}))

    def restore_reports(self, reports: Iterable[Report]) -> None:
        """Put reports exactly as read from a file (readers use this; not undoable)."""
        for report in reports:
            self._reports[report.id] = report

    # --- combining documents ---------------------------------------------------------------

    def merge(self, other: AnnotationDocument) -> int:
        """Import another document's labels, images and new annotations (by id).

        The annotations added to each image form one undo step of that image; returns how many
        were added. Images and labels already here keep their description and colour. All or
        nothing: a box on a frame its target image does not have raises ValueError before
        anything changes.
        """
        self._check_merge(other)
        for label in other.labels:
            self.ensure_label(label.name, label.color)
        added = 0
        for ref in other.images:
            if self.has_image(ref.image_id):
                image_id = ref.image_id
            else:
                image_id = self._matching_image(ref) or self.add_image(ref)
            new = [a for a in other.annotations(ref.image_id) if self.find(image_id, a.id) is None]
            if new and self.execute(AddAnnotations(image_id, new, text=f"Import {len(new)} annotations")):
                added += len(new)
        return added


def _rebind_mask(mask: Mask, ref: ImageRef) -> Mask:
    """The mask with its frames following their SOP Instance UID and frame number to ``ref``'s order."""
    frames, moved = [], False
    for item in mask.frames:
        index = None
        if item.sop_instance_uid and item.frame_number:
            index = ref.frame_index(item.sop_instance_uid, item.frame_number)
        if index is not None and index != item.frame:
            frames.append(replace(item, frame=index))
            moved = True
        else:
            frames.append(item)
    return replace(mask, frames=tuple(frames)) if moved else mask
