"""The GUI's side of the annotation document: which image is current, what is selected, autosave.

Every edit goes through an engine command (so it is undoable); the document's plain-Python events
are re-emitted as a Qt signal for the overlay and the panels. Each opened image set gets the
document of its annotation file (the sidecar, or the user data folder for read-only images),
saved atomically a moment after the last edit and on close.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from engine.annotations import (
    AddAnnotations,
    AnnotationDocument,
    Box,
    Change,
    DocumentError,
    DocumentEvent,
    RemoveAnnotations,
    Review,
    SetGeometry,
    SetImageReviewed,
    SetLabel,
    SetNote,
    SetReview,
    Source,
    annotation_path,
    image_ref_from_stack,
    load_document,
    open_sidecar,
    save_document,
)
from engine.annotations.model import normalize_label_name
from engine.imaging import ImageStack
from engine.paths import data_dir

AUTOSAVE_DELAY_MS = 800
DEFAULT_LABEL = "finding"


class AnnotationController(QObject):
    changed = Signal(object)  # DocumentEvent of the current image's document
    selection_changed = Signal()
    current_image_changed = Signal()
    problem = Signal(str)  # user-facing message (damaged sidecar, disk full, ...)
    saved = Signal(str)  # path written

    def __init__(self) -> None:
        super().__init__()
        self._documents: dict[Path, AnnotationDocument] = {}
        self._read_only: set[Path] = set()
        self._document_of_stack: dict[str, Path] = {}
        self._image_id_of_stack: dict[str, str] = {}
        self._project: Path | None = None  # the project file the images being opened belong to
        self.doc: AnnotationDocument | None = None
        self.image_id: str | None = None
        self.stack: ImageStack | None = None
        self.selected: set[str] = set()
        self.current_label = DEFAULT_LABEL
        self.visible_sources: set[Source] = set(Source)
        self._drag_tokens = itertools.count()
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save_all)

    # ----- documents
    def attach(self, stacks: list[ImageStack], opened_paths: list[str]) -> None:
        """Bind newly opened stacks to the annotation document of the image set they came from."""
        path, self._project = (self._project or annotation_path(opened_paths)), None
        if path not in self._documents:
            try:
                opened = open_sidecar(path)
            except DocumentError as error:  # a newer format or an unreadable file: never save over it
                self.problem.emit(
                    f"Annotations in {path} cannot be used ({error}); edits in this session will not be saved there."
                )
                self._read_only.add(path)
                document = AnnotationDocument()
            else:
                document = opened.document
                if opened.problem:
                    self.problem.emit(
                        f"The annotation file {path.name} was damaged ({opened.problem}). "
                        f"It was kept as {opened.moved_to.name}; starting with no annotations."
                    )
            document.subscribe(lambda event, d=document: self._on_document_event(d, event))
            if not document.labels:
                document.ensure_label(DEFAULT_LABEL)
            self._documents[path] = document
        document = self._documents[path]
        for stack in stacks:
            self._document_of_stack[stack.key] = path
            self._image_id_of_stack[stack.key] = document.add_image(image_ref_from_stack(stack))

    def show_stack(self, stack: ImageStack | None) -> int:
        """Make ``stack`` the current image; returns the frame to show (the one last viewed)."""
        self.stack = stack
        self.selected = set()
        if stack is None or stack.key not in self._document_of_stack:
            self.doc, self.image_id = None, None
            self.current_image_changed.emit()
            return 0
        self.doc = self._documents[self._document_of_stack[stack.key]]
        self.image_id = self._image_id_of_stack[stack.key]
        if self.current_label not in {label.name for label in self.doc.labels}:
            self.current_label = self.doc.labels[0].name
        self.current_image_changed.emit()
        return self.doc.image_state(self.image_id).last_frame

    def use_project(self, path: str) -> list[str]:
        """Open a project file: its images will be attached to it (and saved there); returns
        their paths to open. Raises DocumentError / OSError when it cannot be read."""
        project = Path(path).absolute()
        document = self._documents.get(project) or load_document(project)
        if project not in self._documents:
            document.subscribe(lambda event, d=document: self._on_document_event(d, event))
            self._documents[project] = document
        self._project = project
        return list(dict.fromkeys(p for ref in document.images for p in ref.paths))

    def document_for(self, stack: ImageStack) -> tuple[AnnotationDocument, str] | None:
        """The document an open stack's annotations live in, and its image id there."""
        path = self._document_of_stack.get(stack.key)
        return None if path is None else (self._documents[path], self._image_id_of_stack[stack.key])

    def save_as(self, path: str) -> bool:
        """Save the current image set's document to a project file of the user's choice and keep
        autosaving there (instead of the sidecar) for this session; False when refused or failed.

        Refused when ``path`` is where another open image set's annotations are saved: taking it
        over would drop that document (its unsaved edits, and every later autosave of its
        images). Merging the two instead would silently move the other set's annotations into a
        file the user picked for this one; viewers such as Slicer and OHIF never merge on Save As
        either, so the user picks another name and both documents stay as they were.
        """
        old = self.document_path()
        if old is None:
            return False
        new = Path(path).absolute()
        other = next((p for p in self._documents if p != old and _same_file(p, new)), None)
        if other is not None:
            self.problem.emit(
                f"Not saved: {new.name} is where the annotations of other open images are saved; "
                "choose another file name so neither set of annotations is lost."
            )
            return False
        if _same_file(old, new):
            new = old
        document = self._documents.pop(old)
        self._documents[new] = document
        self._read_only.discard(new)
        for key, where in self._document_of_stack.items():
            if where == old:
                self._document_of_stack[key] = new
        try:
            save_document(document, new)
        except OSError as error:
            self.problem.emit(f"Could not save annotations to {new}: {error.strerror or error}.")
            return False
        self.saved.emit(str(new))
        return True

    def rename_label(self, old: str, new: str) -> None:
        if self.doc is not None and new.strip() and new.strip() != old:
            self.doc.rename_label(old, new)
            if self.current_label == old:
                self.current_label = new.strip()
            self.changed.emit(DocumentEvent(Change.LABELS, self.image_id))

    def set_label_color(self, name: str, color: str) -> None:
        if self.doc is not None:
            self.doc.set_label_color(name, color)
            self.changed.emit(DocumentEvent(Change.LABELS, self.image_id))

    def is_reviewed(self, stack: ImageStack) -> bool:
        path = self._document_of_stack.get(stack.key)
        return path is not None and self._documents[path].image_state(self._image_id_of_stack[stack.key]).reviewed

    def document_path(self) -> Path | None:
        return self._document_of_stack.get(self.stack.key) if self.stack else None

    def location_note(self) -> tuple[str, str]:
        """Where the current image's annotations are saved: a short text and a tooltip for the window."""
        path = self.document_path()
        if path is None:
            return "", ""
        if path.is_relative_to(data_dir()):
            return (
                "Saved in your ClinLens data folder (the images' folder is not written to)",
                (
                    f"Annotations of these images are saved to\n{path}\n"
                    "because their folder is read-only or bundled with ClinLens."
                ),
            )
        return f"Saved to {Path(path.parent.name, path.name)}", f"Annotations are saved to\n{path}"

    def remember_frame(self, frame: int) -> None:
        if self.doc is not None and self.image_id is not None:
            self.doc.set_last_frame(self.image_id, frame)

    def _on_document_event(self, document: AnnotationDocument, event: DocumentEvent) -> None:
        self._save_timer.start()
        if document is self.doc:
            lost = self.selected & set(event.removed)
            if lost:
                self.selected -= lost
            self.changed.emit(event)
            if lost:  # an undo or a delete took selected boxes away: whatever follows the selection updates
                self.selection_changed.emit()

    def save_all(self) -> None:
        self._save_timer.stop()
        for path, document in self._documents.items():
            if document.dirty and path not in self._read_only and (path.exists() or _has_user_content(document)):
                try:
                    save_document(document, path)
                except OSError as error:
                    self.problem.emit(
                        f"Could not save annotations to {path}: {error.strerror or error}. "
                        "Your edits are kept in memory; free space or choose another place."
                    )
                else:
                    self.saved.emit(str(path))

    # ----- reading
    def boxes(self, frame: int | None = None) -> list[Box]:
        if self.doc is None or self.image_id is None:
            return []
        return self.doc.boxes(self.image_id, frame)

    def visible_boxes(self, frame: int) -> list[Box]:
        return [box for box in self.boxes(frame) if box.source in self.visible_sources]

    def box(self, box_id: str) -> Box | None:
        found = self.doc.find(self.image_id, box_id) if self.doc and self.image_id else None
        return found if isinstance(found, Box) else None

    # ----- selection
    def select(self, ids: set[str] | list[str]) -> None:
        ids = set(ids)
        if ids != self.selected:
            self.selected = ids
            self.selection_changed.emit()

    def set_source_visible(self, source: Source, visible: bool) -> None:
        (self.visible_sources.add if visible else self.visible_sources.discard)(source)
        hidden = {b.id for b in self.boxes() if b.source not in self.visible_sources}
        self.select(self.selected - hidden)
        self.changed.emit(DocumentEvent(Change.ANNOTATIONS, self.image_id))

    # ----- edits (each one undoable)
    def _execute(self, command) -> bool:
        return self.doc is not None and self.doc.execute(command)

    def add_box(self, frame: int, x1: float, y1: float, x2: float, y2: float) -> Box | None:
        if self.doc is None or self.image_id is None:
            return None
        self.doc.ensure_label(self.current_label)
        box = self.doc.new_box(self.image_id, frame, x1, y1, x2, y2, self.current_label)
        self._execute(AddAnnotations(self.image_id, [box]))
        self.select({box.id})
        return box

    def accept_model_box(self, frame: int, rect: tuple[float, float, float, float], phrase: str) -> Box | None:
        """An answer box the user accepted: a model annotation, already reviewed as accepted."""
        if self.doc is None or self.image_id is None:
            return None
        label = self.doc.ensure_label(phrase.strip() or self.current_label).name
        box = self.doc.new_box(self.image_id, frame, *rect, label, source=Source.MODEL, review=Review.ACCEPTED)
        self._execute(AddAnnotations(self.image_id, [box], text="Accept model box"))
        self.select({box.id})
        return box

    def accept_image_label(self, label: str, score: float, note: str):
        """A classifier result the user accepted, as an image-level annotation (undoable)."""
        if self.doc is None or self.image_id is None:
            return None
        self.doc.ensure_label(label)
        image_label = self.doc.new_image_label(
            self.image_id, label, source=Source.CLASSIFIER, score=score, note=note, review=Review.ACCEPTED
        )
        self._execute(AddAnnotations(self.image_id, [image_label], text="Accept classifier label"))
        return image_label

    def new_drag(self) -> int:
        return next(self._drag_tokens)

    def set_geometry(self, box_id: str, rect: tuple[float, float, float, float], drag: int | None = None) -> None:
        if self.image_id is not None:
            self._execute(SetGeometry(self.image_id, box_id, *rect, drag=drag))

    def delete_selected(self) -> None:
        if self.selected and self.image_id is not None:
            self._execute(RemoveAnnotations(self.image_id, sorted(self.selected)))

    def relabel_selected(self, label: str) -> None:
        if self.selected and self.image_id is not None:
            self._execute(SetLabel(self.image_id, sorted(self.selected), label))

    def set_note(self, box_id: str, note: str) -> None:
        if self.image_id is not None:
            self._execute(SetNote(self.image_id, box_id, note))

    def review_selected(self, review: Review) -> None:
        if self.selected and self.image_id is not None:
            self._execute(SetReview(self.image_id, sorted(self.selected), review))

    def set_image_reviewed(self, reviewed: bool) -> None:
        if self.image_id is not None:
            self._execute(SetImageReviewed(self.image_id, reviewed))

    def set_current_label(self, name: str) -> None:
        if self.doc is not None and name.strip():
            # first: a new label's event refreshes the panel, which shows current_label (else the old one)
            self.current_label = normalize_label_name(name)
            self.current_label = self.doc.ensure_label(name).name

    def undo(self) -> bool:
        return self.doc is not None and self.image_id is not None and self.doc.undo(self.image_id)

    def redo(self) -> bool:
        return self.doc is not None and self.image_id is not None and self.doc.redo(self.image_id)

    def undo_text(self) -> str:
        """What Undo would take back on this image ("Add box"), or "" when nothing; the Edit menu shows it."""
        return self.doc.history(self.image_id).undo_text if self.doc is not None and self.image_id is not None else ""

    def redo_text(self) -> str:
        """What Redo would bring back on this image, or ""."""
        return self.doc.history(self.image_id).redo_text if self.doc is not None and self.image_id is not None else ""


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (symlinks and ``..`` resolved; the file need not exist)."""
    return a == b or a.resolve() == b.resolve()


def _has_user_content(document: AnnotationDocument) -> bool:
    """Only viewing an image (its last frame) is no reason to write a file next to it."""
    return any(
        document.annotations(ref.image_id) or document.image_state(ref.image_id).reviewed for ref in document.images
    )
