"""The plain data of an annotation document: boxes, masks, image-level labels, labels and review states.

Everything here is a frozen dataclass so that a GUI can hold, compare and hand these values to
other threads without fear of them changing underneath; edits produce new values (commands do
that), which is what makes snapshot-based undo simple and exact.

Coordinates follow the project contract (design.md): pixel coordinates of the original image,
top-left origin, x to the right, y down, floats allowed. ``(0, 0)`` is the top-left corner of the
top-left pixel and ``(width, height)`` the bottom-right corner of the bottom-right pixel, so a box
covering the whole image is ``(0, 0, width, height)``; this is also the DICOM SCOORD convention.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np

from engine.annotations.rle import Rle

_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class Source(StrEnum):
    """Who produced an annotation; drives the automatic 'corrected' review state."""

    USER = "user"
    MODEL = "model"  # grounding model boxes (ClinKD / Qwen2-VL)
    CLASSIFIER = "classifier"  # zero-shot classifier (KPL) image labels


class Review(StrEnum):
    """The reviewer's decision about one annotation."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CORRECTED = "corrected"


def default_review(source: Source | str) -> Review:
    """A box the user draws is their own decision (accepted); machine output waits for review."""
    return Review.ACCEPTED if Source(source) is Source.USER else Review.PENDING


@dataclass(frozen=True)
class Provenance:
    """Where a machine annotation came from, so a reviewer (and an audit) can see why it is there.

    ``run`` names the pre-annotation run (one undo step, and what a resumed run recognises by
    ``key``: the hash of the model and settings); ``question`` and ``answer`` are the prompt the
    model read and its raw answer text (box markup included); ``settings`` is the JSON of the
    task and decoding settings; ``window`` the display window the model saw.
    """

    run: str
    key: str
    model: str
    task: str
    question: str = ""
    answer: str = ""
    settings: str = ""
    window: str = ""


def utc_now() -> str:
    """UTC timestamp in ISO 8601 with milliseconds, the format every annotation time uses."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_id() -> str:
    """A fresh stable annotation id (uuid4 hex): unique across documents, safe to merge."""
    return uuid.uuid4().hex


def normalize_color(color: str) -> str:
    """Validate a ``#rrggbb`` colour and return it lower-case (one spelling per colour)."""
    if not isinstance(color, str) or not _HEX_COLOR.match(color):
        raise ValueError(f"colour must look like #rrggbb, got {color!r}")
    return color.lower()


def normalize_label_name(name: str) -> str:
    """Label names are trimmed, non-empty text; two spellings differing in spaces are one label."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a label name must be non-empty text")
    return name.strip()


def _finite(value: float, what: str) -> float:
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return number


def _check_frame(frame: int) -> None:
    """A frame index of a Box or Measurement: an int (not a bool, which is one) counted from 0."""
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise ValueError(f"frame must be a non-negative integer, got {frame!r}")


def _normalize_review_fields(annotation: Box | ImageLabel | Measurement | Mask) -> None:
    """Label, source, review and score, which every kind of annotation carries, checked in one way.

    Called from ``__post_init__`` of a frozen dataclass, hence ``object.__setattr__``; a label
    spelled with spaces, a source or review given as a string and a score all come out the same
    whichever kind of annotation holds them.
    """
    object.__setattr__(annotation, "label", normalize_label_name(annotation.label))
    object.__setattr__(annotation, "source", Source(annotation.source))
    object.__setattr__(annotation, "review", Review(annotation.review))
    if annotation.score is not None:
        object.__setattr__(annotation, "score", _finite(annotation.score, "score"))


@dataclass(frozen=True)
class Label:
    """One entry of the project's label set."""

    name: str
    color: str  # "#rrggbb"

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalize_label_name(self.name))
        object.__setattr__(self, "color", normalize_color(self.color))


@dataclass(frozen=True)
class PlanePlacement:
    """Where an annotation drawn on a reformatted plane of a volume lies.

    The annotation's own coordinates are that plane's display coordinates (square pixels of
    ``pixel_mm``); ``points_mm`` are its defining points in patient coordinates (DICOM LPS, mm),
    which is what lets other planes show where it crosses them and a DICOM SR reference it as
    SCOORD3D without the reformat.
    """

    plane: str  # "axial" | "coronal" | "sagittal"
    index: int  # 0-based slice along that plane's axis
    points_mm: tuple[tuple[float, float, float], ...]
    pixel_mm: float

    def __post_init__(self) -> None:
        if self.plane not in ("axial", "coronal", "sagittal"):
            raise ValueError(f"plane must be axial, coronal or sagittal, got {self.plane!r}")
        points = tuple(tuple(_finite(v, "point coordinate") for v in p) for p in self.points_mm)
        if not points or any(len(p) != 3 for p in points):
            raise ValueError("points_mm must be (x, y, z) patient coordinates")
        object.__setattr__(self, "points_mm", points)
        object.__setattr__(self, "pixel_mm", _finite(self.pixel_mm, "pixel_mm"))


@dataclass(frozen=True)
class Box:
    """A rectangle on one frame of one image.

    ``frame`` is the 0-based index into the image's frames (the ImageStack index);
    ``sop_instance_uid``/``frame_number`` (1-based, DICOM) bind the box to its source file so it
    survives re-sorting of a series and can be referenced from a DICOM SR. Corners are stored
    ordered (x1 <= x2, y1 <= y2) whatever order they are given in.
    """

    id: str
    frame: int
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    source: Source = Source.USER
    score: float | None = None
    note: str = ""
    review: Review = Review.ACCEPTED
    created: str = ""
    modified: str = ""
    sop_instance_uid: str | None = None
    frame_number: int | None = None
    placement: PlanePlacement | None = None  # set when drawn on a reformatted plane
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        x1, x2 = sorted((_finite(self.x1, "x1"), _finite(self.x2, "x2")))
        y1, y2 = sorted((_finite(self.y1, "y1"), _finite(self.y2, "y2")))
        for name, value in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2)):
            object.__setattr__(self, name, value)
        _check_frame(self.frame)
        _normalize_review_fields(self)

    @property
    def rect(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


@dataclass(frozen=True)
class ImageLabel:
    """A label for a whole image (a classifier result, or the user's image-level finding)."""

    id: str
    label: str
    source: Source = Source.CLASSIFIER
    score: float | None = None
    note: str = ""
    review: Review = Review.PENDING
    created: str = ""
    modified: str = ""
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        _normalize_review_fields(self)


class MeasureKind(StrEnum):
    """The measurement tools: how many points define each, and what it reports."""

    LENGTH = "length"  # 2 points: distance in mm
    ANGLE = "angle"  # 3 points (the vertex in the middle): degrees
    ELLIPSE = "ellipse"  # 2 corners of the bounding rectangle: ROI statistics and area
    RECTANGLE = "rectangle"  # 2 corners: ROI statistics and area

    @property
    def n_points(self) -> int:
        return 3 if self is MeasureKind.ANGLE else 2

    @property
    def is_roi(self) -> bool:
        return self in (MeasureKind.ELLIPSE, MeasureKind.RECTANGLE)


@dataclass(frozen=True)
class MeasuredValue:
    """One reported number; ``unit`` is a UCUM code ("mm", "deg", "mm2", "[hnsf'U]" for HU, "1")."""

    name: str  # "length" | "angle" | "area" | "mean" | "std" | "min" | "max" | "pixels"
    value: float
    unit: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _finite(self.value, self.name))


UNIT_TEXT = {"mm": " mm", "deg": "°", "mm2": " mm²", "[hnsf'U]": " HU", "1": "", "px": " px", "px2": " px²"}
"""How a UCUM unit is written after a number for people ("12.0 mm", "37.5°", "40 HU")."""


def value_text(value: MeasuredValue, digits: int = 1) -> str:
    """'23.4 mm', '37.5°', '12.0 mL': a measured value with its unit, as lists and reports show it."""
    return f"{value.value:.{digits}f}{UNIT_TEXT.get(value.unit, ' ' + value.unit)}"


@dataclass(frozen=True)
class Measurement:
    """A length, angle or ROI on one frame (or one reformatted plane), with its computed values.

    ``points`` are (x, y) in the pixel coordinates of the frame (or plane) it was drawn on, in
    the box convention. ``values`` are computed when it is drawn or edited (from the pixels the
    user saw), so exports need no pixel data.
    """

    id: str
    kind: MeasureKind
    frame: int
    points: tuple[tuple[float, float], ...]
    values: tuple[MeasuredValue, ...]
    label: str = "measurement"
    source: Source = Source.USER
    score: float | None = None
    note: str = ""
    review: Review = Review.ACCEPTED
    created: str = ""
    modified: str = ""
    sop_instance_uid: str | None = None
    frame_number: int | None = None
    placement: PlanePlacement | None = None
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", MeasureKind(self.kind))
        points = tuple((_finite(x, "x"), _finite(y, "y")) for x, y in self.points)
        if len(points) != self.kind.n_points:
            raise ValueError(f"a {self.kind.value} needs {self.kind.n_points} points, got {len(points)}")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "values", tuple(self.values))
        _check_frame(self.frame)
        _normalize_review_fields(self)

    def value(self, name: str) -> MeasuredValue | None:
        return next((v for v in self.values if v.name == name), None)

    def summary(self) -> str:
        """'42.1 mm', '37.5°', 'mean 60.0 ± 0.0 HU, 314 mm²': what the list and the canvas show."""
        units = UNIT_TEXT
        if self.kind is MeasureKind.LENGTH and self.values:
            return f"{self.values[0].value:.1f}{units.get(self.values[0].unit, ' ' + self.values[0].unit)}"
        if self.kind is MeasureKind.ANGLE and self.values:
            return f"{self.values[0].value:.1f}°"
        mean, std, area = self.value("mean"), self.value("std"), self.value("area")
        parts = []
        if mean is not None and std is not None:
            parts.append(f"mean {mean.value:.1f} ± {std.value:.1f}{units.get(mean.unit, ' ' + mean.unit)}")
        if area is not None:
            parts.append(f"{area.value:.0f}{units.get(area.unit, ' ' + area.unit)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class MaskFrame:
    """One frame of a mask: its 0-based index, its DICOM binding (as a Box has) and its pixels."""

    frame: int
    rle: Rle
    sop_instance_uid: str | None = None
    frame_number: int | None = None

    def __post_init__(self) -> None:
        _check_frame(self.frame)
        if not isinstance(self.rle, Rle):
            raise TypeError("a mask frame holds its pixels as an Rle")


@dataclass(frozen=True)
class Mask:
    """A region on one or several frames of one image (a segmentation: drawn, or from a model).

    Why per frame and run-length encoded: a mask follows the stack's frames (the contract with
    the segmentation engine is ``{frame_index: bool array of (rows, columns)}``), a propagated
    mask covers tens of frames, and most of every frame is background; COCO RLE keeps that small
    and exact, and is what the COCO export writes. Frames are kept sorted, at most one per index;
    a frame with nothing inside is dropped, and a mask must keep at least one frame. ``values``
    are measurements computed from the mask (area, volume, HU statistics) by the segmentation
    engine; exports carry them like a Measurement's.
    """

    id: str
    frames: tuple[MaskFrame, ...]
    label: str
    source: Source = Source.USER
    score: float | None = None
    note: str = ""
    review: Review = Review.ACCEPTED
    created: str = ""
    modified: str = ""
    provenance: Provenance | None = None
    values: tuple[MeasuredValue, ...] = ()

    def __post_init__(self) -> None:
        frames = tuple(sorted(self.frames, key=lambda f: f.frame))
        if any(not isinstance(f, MaskFrame) for f in frames):
            raise ValueError("mask frames must be MaskFrame values")
        indices = [f.frame for f in frames]
        if len(set(indices)) != len(indices):
            raise ValueError("a mask has one entry per frame; a frame index appears twice")
        if not frames:
            raise ValueError("a mask needs at least one frame with pixels inside")
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "values", tuple(self.values))
        if any(not isinstance(v, MeasuredValue) for v in self.values):
            raise ValueError("mask values must be MeasuredValue values")
        _normalize_review_fields(self)

    @property
    def frame(self) -> int:
        """The first frame it covers (where the list jumps to, and the frame exports sort by)."""
        return self.frames[0].frame

    @property
    def frame_indices(self) -> tuple[int, ...]:
        return tuple(f.frame for f in self.frames)

    def on(self, frame: int) -> MaskFrame | None:
        return next((f for f in self.frames if f.frame == frame), None)

    def array(self, frame: int) -> np.ndarray | None:
        """The boolean mask of ``frame`` (rows, columns), or None where the mask has no pixels."""
        found = self.on(frame)
        return None if found is None else found.rle.decode()

    def arrays(self) -> dict[int, np.ndarray]:
        """The segmentation-engine form: ``{frame_index: bool array}``."""
        return {f.frame: f.rle.decode() for f in self.frames}

    @property
    def area_pixels(self) -> int:
        return sum(f.rle.area for f in self.frames)

    def value(self, name: str) -> MeasuredValue | None:
        return next((v for v in self.values if v.name == name), None)


Annotation = Box | ImageLabel | Measurement | Mask


def edited(annotation: Annotation, now: str, **changes: object) -> Annotation:
    """Apply a user edit: bump ``modified`` and mark machine output as corrected.

    Only changes of what the annotation *says* (geometry, label) count as a correction; a note
    or a review decision does not. User-drawn annotations keep their review state.
    """
    substantive = any(key in changes for key in ("x1", "y1", "x2", "y2", "label", "frame", "points", "frames"))
    if substantive and annotation.source is not Source.USER and "review" not in changes:
        changes["review"] = Review.CORRECTED
    return replace(annotation, modified=now, **changes)
