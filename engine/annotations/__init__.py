"""Box and image-level annotations as an undoable document, with sidecar persistence and exports.

Plain data (``model``, ``image_ref``), one document with listeners and per-image undo
(``document``, ``commands``, ``undo``), files (``persistence``) and exchange formats
(``formats``). No Qt: the app builds its canvas tools and panels on top of this.
"""

from engine.annotations.commands import (
    AddAnnotations,
    ApplyProposals,
    RemoveAnnotations,
    SetGeometry,
    SetImageReviewed,
    SetLabel,
    SetMeasurement,
    SetNote,
    SetReview,
)
from engine.annotations.document import (
    AnnotationDocument,
    Change,
    DocumentEvent,
    ImageState,
    Listener,
    ReviewProgress,
)
from engine.annotations.image_ref import ImageRef, image_ref_from_stack
from engine.annotations.model import (
    Annotation,
    Box,
    ImageLabel,
    Label,
    MeasuredValue,
    MeasureKind,
    Measurement,
    PlanePlacement,
    Provenance,
    Review,
    Source,
    default_review,
)
from engine.annotations.persistence import (
    DamagedDocumentError,
    DocumentError,
    OpenedDocument,
    UnsupportedVersionError,
    annotation_path,
    load_document,
    open_sidecar,
    save_document,
    sidecar_path,
    user_data_path,
)
from engine.annotations.undo import DEFAULT_UNDO_LIMIT, Command, UndoStack

__all__ = [
    "DEFAULT_UNDO_LIMIT",
    "AddAnnotations",
    "Annotation",
    "AnnotationDocument",
    "ApplyProposals",
    "Box",
    "Change",
    "Command",
    "DamagedDocumentError",
    "DocumentError",
    "DocumentEvent",
    "ImageLabel",
    "ImageRef",
    "ImageState",
    "Label",
    "Listener",
    "MeasureKind",
    "MeasuredValue",
    "Measurement",
    "OpenedDocument",
    "PlanePlacement",
    "Provenance",
    "RemoveAnnotations",
    "Review",
    "ReviewProgress",
    "SetGeometry",
    "SetImageReviewed",
    "SetLabel",
    "SetMeasurement",
    "SetNote",
    "SetReview",
    "Source",
    "UndoStack",
    "UnsupportedVersionError",
    "annotation_path",
    "default_review",
    "image_ref_from_stack",
    "load_document",
    "open_sidecar",
    "save_document",
    "sidecar_path",
    "user_data_path",
]
