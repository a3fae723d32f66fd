"""DICOM SR back into annotations: any SR, from any tool, read without ever raising.

The SRs of a study are read after every PACS retrieve, and many of them were written by other
tools (OHIF, 3D Slicer, modality dose reports, text reports, key-object selections). A report
that ClinLens cannot use must never stop a series from opening, so ``read_sr`` returns what it
could map plus one warning sentence per thing it skipped (``SrReading``), and never raises:

- a document that is not a TID 1500 Imaging Measurement Report (dose report, Basic Text SR,
  Key Object Selection…) gives no annotations and one sentence naming its type;
- inside a TID 1500, each measurement group (TID 1410/1411/1501) is mapped or skipped with one
  warning naming it (tracking identifier, finding) and saying why. Every spatial region of a
  group on this image becomes one annotation: a POLYLINE of two points is a length, three
  points with an angle value an angle, an axis-aligned rectangle (closed POLYLINE or POLYGON) a
  box (or a rectangle ROI when it carries ROI values), an axis-aligned ELLIPSE or a CIRCLE an
  ellipse ROI. Points, other polygons and rotated ellipses have no ClinLens shape and are
  skipped with a warning. SCOORD3D regions are placed when the Frame of Reference is this
  series' and every point lies on one of its slices (classic single-frame geometry). A group
  with no region but an image reference to this image is an image-level label;
- a group about other images (another series of the study) is ignored without a warning.

Group and region mapping run through one guard (``_guarded``): ``_Skip`` carries a reason we
chose, anything else is a bug or a damaged value, and both become a warning for that part only.
``load_sr`` reads an SR file completely (pydicom converts values lazily) so a damaged file fails
there, with one sentence naming it (``SrFileError``), rather than later in the middle of a group.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from engine.annotations.image_ref import ImageRef
from engine.annotations.model import (
    Annotation,
    Box,
    ImageLabel,
    MeasuredValue,
    MeasureKind,
    Measurement,
    Review,
    Source,
)

CODING_SCHEME = "99CLINLENS"  # the private scheme of dicom_sr (not imported: that module loads highdicom)

_REPORT = ("DCM", "126000")  # Imaging Measurement Report
_TRACKING_UID = ("DCM", "112040")
_TRACKING_ID = ("DCM", "112039")
_FINDING = ("DCM", "121071")
_ALGORITHM_NAME = ("DCM", "111001")
_ALGORITHM_PARAMETERS = ("DCM", "111002")
_REFERENCED_SEGMENT = ("DCM", "121214")
_SEGMENTATION_SOURCE = ("DCM", "121233")  # Source image for segmentation
_SEGMENTATION_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}
# TID 300 concepts we show, by (scheme, code); OHIF's long/short axis and diameters are lengths
_VALUE_NAMES = {
    ("SCT", "410668003"): "length",
    ("SCT", "103339001"): "length",  # Long Axis
    ("SCT", "103340004"): "length",  # Short Axis
    ("SCT", "81827009"): "length",  # Diameter
    ("SCT", "1483009"): "angle",
    ("SCT", "42798000"): "area",
    ("SCT", "373098007"): "mean",
    ("SCT", "386136009"): "std",
    ("SCT", "255605001"): "min",
    ("SCT", "56851009"): "max",
}
_VALUE_ORDER = ("length", "angle", "area", "mean", "std", "min", "max")
_ROI_VALUES = {"area", "mean", "std", "min", "max"}
_TOLERANCE = 1e-3  # pixels: SCOORD values are float32, projections are rounded


class SrFileError(ValueError):
    """An SR file that cannot be read at all; the message is one sentence naming the file."""


class _Skip(Exception):
    """A group or region ClinLens cannot map; the message says why (it ends a warning sentence)."""


@dataclass(frozen=True)
class SrReading:
    """What one or more SRs gave for one image: the annotations, and a sentence per skipped part.

    ``measurement_report`` is False for a document that is not a TID 1500 (a dose report, a
    text report…): its warning says so, and a caller may log it rather than alarm the user,
    since most CT studies carry a dose report.
    """

    annotations: tuple[Annotation, ...] = ()
    warnings: tuple[str, ...] = ()
    measurement_report: bool = True

    def summary(self, limit: int = 3) -> str | None:
        """One banner text for the warnings (the first few in full), or None when there are none."""
        if not self.warnings:
            return None
        shown = " ".join(_sentence(w) for w in self.warnings[:limit])
        more = len(self.warnings) - limit
        return shown + (f" ({more} more not shown.)" if more > 0 else "")


def _sentence(text: str) -> str:
    return text if text.endswith(".") else text + "."


# --- reading a file -------------------------------------------------------------------------


def load_sr(path: str | os.PathLike[str]) -> pydicom.Dataset:
    """An SR file, every value parsed now; ``SrFileError`` (one sentence) for a damaged file."""
    name = Path(path).name
    try:
        dataset = pydicom.dcmread(path)
        _parse_everything(dataset)
    except Exception as err:  # noqa: BLE001 - pydicom raises many types on damaged bytes; one sentence for all
        raise SrFileError(f"The SR file {name} could not be read: {_reason(err)}.") from None
    return dataset


def _parse_everything(dataset: pydicom.Dataset) -> None:
    """Convert every raw element (pydicom defers it), so damage shows here and not mid-report."""
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                _parse_everything(item)


def _reason(err: BaseException) -> str:
    text = str(err).strip().rstrip(".") or "no details"
    return f"{type(err).__name__}: {text[:200]}"


# --- the guard --------------------------------------------------------------------------------


def _guarded(what: Callable[[], str], read: Callable[[], list[Annotation]], warnings: list[str]) -> list[Annotation]:
    """Run one part of a report; a failure becomes one warning naming the part, never an exception.

    ``what`` is called only on failure (naming a part reads the dataset too, so it is guarded).
    """
    try:
        return read()
    except _Skip as skip:
        reason = str(skip)
    except Exception as err:  # noqa: BLE001 - a damaged or unexpected SR must never stop a series from opening
        reason = f"it could not be read ({_reason(err)})"
    try:
        name = what()
    except Exception:  # noqa: BLE001 - the name is read from the same damaged data
        name = "a part of an SR"
    warnings.append(f"{name} was skipped: {reason}.")
    return []


def _safe(read: Callable[[], object], default: str = "") -> str:
    try:
        value = read()
    except Exception:  # noqa: BLE001 - only used for names and labels, which have a fallback
        return default
    return str(value).strip() if value is not None else default


# --- the document -----------------------------------------------------------------------------


def read_sr(dataset: pydicom.Dataset, ref: ImageRef) -> SrReading:
    """The annotations of ``ref`` held by any SR, and a warning per part skipped (see module doc)."""
    name = _document_name(dataset)
    foreign = _foreign_kind(dataset)
    if foreign is not None:
        warning = f"{name} is {foreign}, not a TID 1500 measurement report; nothing was imported from it."
        return SrReading((), (warning,), measurement_report=False)
    warnings: list[str] = []
    found = _guarded(lambda: name, lambda: _read_report(dataset, ref, name, warnings), warnings)
    return SrReading(tuple(found), tuple(warnings))


def _read_report(dataset: pydicom.Dataset, ref: ImageRef, name: str, warnings: list[str]) -> list[Annotation]:
    """Every measurement group, each under its own guard: one bad group costs only itself."""
    context = _Context(dataset, ref)
    found: list[Annotation] = []
    for index, group in enumerate(list(_groups(dataset))):
        found += _guarded(
            lambda g=group, i=index: f"{name}: {_group_name(g, i)}",
            lambda g=group, i=index: _read_group(context, g, i, name, warnings),
            warnings,
        )
    return found


def _document_name(dataset: pydicom.Dataset) -> str:
    description = _safe(lambda: dataset.get("SeriesDescription"))
    maker = _safe(lambda: dataset.get("Manufacturer"))
    name = f"The SR {description!r}" if description else "The SR " + _safe(lambda: dataset.SOPInstanceUID, "?")
    return name + (f" from {maker}" if maker else "")


def _foreign_kind(dataset: pydicom.Dataset) -> str | None:
    """None for a TID 1500 Imaging Measurement Report, else what the document is, for a warning."""
    template = _safe(lambda: dataset.ContentTemplateSequence[0].TemplateIdentifier)
    try:
        root = _concept(dataset)
    except Exception:  # noqa: BLE001 - a root we cannot read is not a measurement report
        root = ("", "")
    if root == _REPORT or template == "1500":
        return None
    sop_class = pydicom.uid.UID(_safe(lambda: dataset.SOPClassUID, "?"))
    what = sop_class.name.removesuffix(" Storage") if sop_class.is_valid and sop_class.name != sop_class else ""
    title = _safe(lambda: dataset.ConceptNameCodeSequence[0].CodeMeaning)
    what = what or f"document of SOP class {sop_class}"
    text = ("an " if what[0] in "AEIOUX" else "a ") + what
    if title:
        text += f" titled {title!r}"
    return text + (f" (TID {template})" if template else "")


def _concept(item: pydicom.Dataset) -> tuple[str, str]:
    name = item.get("ConceptNameCodeSequence")
    if not name or not isinstance(name[0], pydicom.Dataset):
        return ("", "")
    return (str(name[0].get("CodingSchemeDesignator", "")), str(name[0].get("CodeValue", "")))


def _children(item: pydicom.Dataset) -> list[pydicom.Dataset]:
    content = item.get("ContentSequence")
    return list(content) if isinstance(content, Sequence) else []


def _groups(dataset: pydicom.Dataset) -> Iterator[pydicom.Dataset]:
    """Containers holding a Tracking Unique Identifier: the measurement groups of any TID 1500."""
    for item in _children(dataset):
        if item.get("ValueType") == "CONTAINER":
            if any(_concept(c) == _TRACKING_UID for c in _children(item)):
                yield item
            else:
                yield from _groups(item)


def _descendants(item: pydicom.Dataset) -> Iterator[pydicom.Dataset]:
    for child in _children(item):
        yield child
        if child.get("ValueType") != "CONTAINER":
            yield from _descendants(child)


def _group_name(group: pydicom.Dataset, index: int) -> str:
    """'measurement group 2 ('Lesion 1', finding 'Mass')': what a warning calls a group."""
    items = list(_descendants(group))
    tracking = next((_safe(lambda i=i: i.TextValue) for i in items if _concept(i) == _TRACKING_ID), "")
    finding = next((_label_of(i) for i in items if _concept(i) == _FINDING), "")
    details = ", ".join(
        part for part in (repr(tracking) if tracking else "", f"finding {finding!r}" if finding else "") if part
    )
    return f"measurement group {index + 1}" + (f" ({details})" if details else "")


def _label_of(finding: pydicom.Dataset) -> str:
    """The Finding as text, whether another tool wrote it as a CODE or as TEXT."""
    if finding.get("ValueType") == "TEXT":
        return _safe(lambda: finding.TextValue)
    return _safe(lambda: finding.ConceptCodeSequence[0].CodeMeaning)


# --- one group --------------------------------------------------------------------------------


class _Context:
    """The image being opened, and its slice geometry read once, only if a SCOORD3D needs it."""

    def __init__(self, dataset: pydicom.Dataset, ref: ImageRef) -> None:
        self.ref = ref
        self.instances = {f.sop_instance_uid for f in ref.frames if f.sop_instance_uid}
        self.report_uid = _safe(lambda: dataset.SOPInstanceUID)
        self._planes: list[_Plane | None] | None = None

    def planes(self) -> list[_Plane | None]:
        if self._planes is None:
            self._planes = _read_planes(self.ref)
        return self._planes


@dataclass(frozen=True)
class _Region:
    """One spatial coordinate item of a group and the values measured on it."""

    scoord: pydicom.Dataset
    values: list[MeasuredValue] = field(default_factory=list)


def _read_group(
    context: _Context, group: pydicom.Dataset, index: int, name: str, warnings: list[str]
) -> list[Annotation]:
    by_concept: dict[tuple[str, str], list[pydicom.Dataset]] = {}
    for item in _descendants(group):
        by_concept.setdefault(_concept(item), []).append(item)
    common = _common(context, group, index, by_concept)
    regions = _regions(group)
    if not regions:
        if (CODING_SCHEME, "KIND") in by_concept:  # a mask's values: its pixels travel in a DICOM SEG
            return []
        label = _image_label(context, group, common)
        return [label] if label is not None else []
    found: list[Annotation] = []
    for number, region in enumerate(regions):
        ids = {"id": common["id"] if number == 0 else _stable_id(common["id"], str(number))}
        found += _guarded(
            lambda r=region: f"{name}: {_group_name(group, index)}, its {_safe(lambda: r.scoord.GraphicType)} region",
            lambda r=region, i=ids: _read_region(context, r, {**common, **i}),
            warnings,
        )
    return found


def _common(
    context: _Context, group: pydicom.Dataset, index: int, by_concept: dict[tuple[str, str], list[pydicom.Dataset]]
) -> dict:
    """Id, label, source, review, score and note: what every annotation of the group shares."""
    uid = _safe(lambda: by_concept[_TRACKING_UID][0].UID)
    label = next((t for t in map(_label_of, by_concept.get(_FINDING, [])) if t), "finding")
    source, review, score, note = Source.USER, Review.ACCEPTED, None, ""
    for item in by_concept.get((CODING_SCHEME, "SRC"), []):
        with contextlib.suppress(ValueError):
            source = Source(_safe(lambda i=item: i.ConceptCodeSequence[0].CodeMeaning))
    for item in by_concept.get((CODING_SCHEME, "REV"), []):
        with contextlib.suppress(ValueError):
            review = Review(_safe(lambda i=item: i.ConceptCodeSequence[0].CodeMeaning))
    for item in by_concept.get((CODING_SCHEME, "SCORE"), []):
        score = _number(item)
    if by_concept.get(_ALGORITHM_NAME) and not by_concept.get((CODING_SCHEME, "SRC")):  # another tool's algorithm
        source, review = Source.MODEL, Review.PENDING
    if by_concept.get(_ALGORITHM_PARAMETERS):
        note = _safe(lambda: by_concept[_ALGORITHM_PARAMETERS][0].TextValue)
    return {
        "id": _annotation_id(uid) if uid else _stable_id(context.report_uid, str(index)),
        "label": label,
        "source": source,
        "score": score,
        "note": note,
        "review": review,
    }


def _annotation_id(uid: str) -> str:
    """Our own tracking UIDs are 2.25.<the id as an integer>; any other UID gets a stable hash."""
    if uid.startswith("2.25."):
        with contextlib.suppress(ValueError):
            number = int(uid[5:])
            if number < 1 << 128:
                return f"{number:032x}"
    return _stable_id(uid)


def _stable_id(*parts: str) -> str:
    """The same id on every reopen, so an annotation read before is recognised, not added again."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _regions(group: pydicom.Dataset) -> list[_Region]:
    """Every SCOORD/SCOORD3D of a group with its values: a NUM's own regions (INFERRED FROM, as
    OHIF writes them) take that NUM's value; values at group level (TID 1410) go to the first."""
    regions: list[_Region] = []
    loose: list[MeasuredValue] = []

    def visit(item: pydicom.Dataset) -> None:
        kind = item.get("ValueType")
        if kind in ("SCOORD", "SCOORD3D"):
            regions.append(_Region(item))
            return
        if kind == "NUM":
            value = _measured(item)
            spatial = [c for c in _children(item) if c.get("ValueType") in ("SCOORD", "SCOORD3D")]
            regions.extend(_Region(child, [value] if value else []) for child in spatial)
            if value and not spatial:
                loose.append(value)
            return
        if kind != "CONTAINER":
            for child in _children(item):
                visit(child)

    for child in _children(group):
        visit(child)
    if regions:
        regions[0].values.extend(loose)
    return regions


def _number(item: pydicom.Dataset) -> float | None:
    """A NUM's value, or None: an empty MeasuredValueSequence is allowed (TID 300), NaN is not a value."""
    measured = item.get("MeasuredValueSequence")
    if not measured:
        return None
    with contextlib.suppress(AttributeError, TypeError, ValueError, OverflowError):
        number = float(measured[0].NumericValue)
        return number if math.isfinite(number) else None
    return None


def _measured(item: pydicom.Dataset) -> MeasuredValue | None:
    name = _VALUE_NAMES.get(_concept(item))
    number = _number(item) if name else None
    if number is None:
        return None
    unit = _safe(lambda: item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue, "1") or "1"
    return MeasuredValue(name, number, unit)


def _image_label(context: _Context, group: pydicom.Dataset, common: dict) -> ImageLabel | None:
    """A group without a region: an image-level label if it names this image, else not ours."""
    images = [i for i in _descendants(group) if i.get("ValueType") == "IMAGE" and i.get("ReferencedSOPSequence")]
    ours = [i for i in images if _referenced(i, "ReferencedSOPInstanceUID") in context.instances]
    segmented = any(_referenced(i, "ReferencedSOPClassUID") in _SEGMENTATION_CLASSES for i in images) or any(
        _concept(i) == _REFERENCED_SEGMENT for i in _descendants(group)
    )
    if segmented:
        if ours:
            raise _Skip("it is a volumetric region given by a segmentation, which ClinLens does not read")
        return None
    if not images:
        raise _Skip("it has no region and references no image, so it cannot be placed")
    return ImageLabel(**common) if ours else None


def _referenced(image: pydicom.Dataset, attribute: str) -> str:
    return _safe(lambda: image.ReferencedSOPSequence[0].get(attribute))


# --- one region -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plane:
    """Where one frame lies in patient space (classic single-frame DICOM geometry)."""

    frame_of_reference: str
    origin: np.ndarray  # ImagePositionPatient: the centre of the first pixel
    row: np.ndarray  # direction of increasing column
    column: np.ndarray  # direction of increasing row
    spacing: tuple[float, float]  # (row mm, column mm)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.column)


def _read_planes(ref: ImageRef) -> list[_Plane | None]:
    """Each frame's plane, None where a header does not give one (multi-frame files included)."""
    headers: dict[str, pydicom.Dataset | None] = {}
    planes: list[_Plane | None] = []
    for frame in ref.frames:
        if frame.path not in headers:
            try:
                headers[frame.path] = pydicom.dcmread(frame.path, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - a frame we cannot place simply takes no SCOORD3D
                headers[frame.path] = None
        planes.append(_plane(headers[frame.path]))
    return planes


def _plane(header: pydicom.Dataset | None) -> _Plane | None:
    if header is None or int(header.get("NumberOfFrames", 1) or 1) > 1:
        return None
    try:
        orientation = np.asarray([float(v) for v in header.ImageOrientationPatient], dtype=float)
        origin = np.asarray([float(v) for v in header.ImagePositionPatient], dtype=float)
        spacing = tuple(float(v) for v in header.PixelSpacing)
        plane = _Plane(str(header.FrameOfReferenceUID), origin, orientation[:3], orientation[3:6], spacing[:2])
    except (AttributeError, TypeError, ValueError, IndexError):
        return None
    sane = np.all(np.isfinite([*orientation, *origin, *spacing])) and min(spacing) > 0
    return plane if sane and len(orientation) == 6 and len(origin) == 3 else None


def _read_region(context: _Context, region: _Region, common: dict) -> list[Annotation]:
    """One region as an annotation of this image ([] when it is about another image)."""
    if region.scoord.get("ValueType") == "SCOORD3D":
        placed = _placed_3d(context, region.scoord)
    else:
        placed = _placed_2d(context, region.scoord)
    if placed is None:
        return []
    index, points = placed
    graphic = _safe(lambda: region.scoord.GraphicType)
    kind, shape = _shape(graphic, points, region.values, context.ref)
    frame = context.ref.frames[index]
    binding = {"frame": index, "sop_instance_uid": frame.sop_instance_uid, "frame_number": frame.frame_number}
    if kind is None:
        (x1, y1), (x2, y2) = shape
        return [Box(x1=x1, y1=y1, x2=x2, y2=y2, **binding, **common)]
    values = sorted(region.values, key=lambda v: _VALUE_ORDER.index(v.name))
    return [Measurement(kind=kind, points=shape, values=tuple(values), **binding, **common)]


def _graphic_data(scoord: pydicom.Dataset, dimensions: int) -> np.ndarray:
    data = scoord.get("GraphicData")
    if data is None:
        raise _Skip("it has no Graphic Data")
    values = [float(v) for v in (data if isinstance(data, list | tuple | MultiValue) else [data])]
    if not values or len(values) % dimensions:
        raise _Skip(f"its Graphic Data holds {len(values)} numbers, not a whole number of {dimensions}-D points")
    points = np.asarray(values, dtype=float).reshape(-1, dimensions)
    if not np.all(np.isfinite(points)):
        raise _Skip("its coordinates are not all finite numbers")
    return points


def _placed_2d(context: _Context, scoord: pydicom.Dataset) -> tuple[int, np.ndarray] | None:
    """(frame index, points) of a SCOORD on this image, None when it selects another image."""
    image = next(
        (c for c in _children(scoord) if c.get("ValueType") == "IMAGE" and c.get("ReferencedSOPSequence")), None
    )
    if image is None:
        raise _Skip("it selects no image")
    reference = image.ReferencedSOPSequence[0]
    sop = str(reference.get("ReferencedSOPInstanceUID", ""))
    if sop not in context.instances:
        return None
    numbers = reference.get("ReferencedFrameNumber") or 1
    frame_number = int(numbers[0] if isinstance(numbers, MultiValue) else numbers)
    index = context.ref.frame_index(sop, frame_number)
    if index is None:
        raise _Skip(f"it selects frame {frame_number}, which this image does not have")
    return index, _graphic_data(scoord, 2)


def _placed_3d(context: _Context, scoord: pydicom.Dataset) -> tuple[int, np.ndarray] | None:
    """A SCOORD3D on one slice of this series, in that slice's pixel coordinates."""
    frame_of_reference = str(scoord.get("ReferencedFrameOfReferenceUID", ""))
    planes = context.planes()
    candidates = [(i, p) for i, p in enumerate(planes) if p is not None and p.frame_of_reference == frame_of_reference]
    if not candidates:
        if any(p is None for p in planes) and context.ref.kind == "dicom":
            raise _Skip("it is in patient coordinates (SCOORD3D) and this image's geometry cannot place it")
        return None
    points = _graphic_data(scoord, 3)
    half_gap = _half_slice_gap([p for _, p in candidates])
    distance, index, plane = min((float(np.max(np.abs((points - p.origin) @ p.normal))), i, p) for i, p in candidates)
    if distance > half_gap:
        raise _Skip("its 3-D points do not lie on one slice of this series (it was drawn on another plane)")
    delta = points - plane.origin
    x = delta @ plane.row / plane.spacing[1] + 0.5  # SCOORD: pixel centres at +0.5
    y = delta @ plane.column / plane.spacing[0] + 0.5
    return index, np.stack([x, y], axis=-1)


def _half_slice_gap(planes: list[_Plane]) -> float:
    """Half the median distance between neighbouring slices (0.5 mm for a single slice)."""
    offsets = np.unique(np.round([float(p.origin @ planes[0].normal) for p in planes], 4))
    gaps = np.diff(offsets)
    return float(np.median(gaps)) / 2 if gaps.size else 0.5


def _shape(
    graphic: str, points: np.ndarray, values: list[MeasuredValue], ref: ImageRef
) -> tuple[MeasureKind | None, tuple[tuple[float, float], ...]]:
    """The ClinLens kind (None: a box) and defining points of a planar region, or ``_Skip`` why not."""
    names = {v.name for v in values}
    if graphic == "POLYLINE" and len(points) == 2:
        kind, shape = MeasureKind.LENGTH, points
    elif graphic == "POLYLINE" and len(points) == 3 and "angle" in names:
        kind, shape = MeasureKind.ANGLE, points
    elif graphic in ("POLYLINE", "POLYGON"):
        corners = _rectangle(points, closed=graphic == "POLYGON")
        if corners is None:
            raise _Skip(
                f"its {graphic} of {len(points)} points is not an axis-aligned rectangle (ClinLens has no polygon)"
            )
        kind, shape = (MeasureKind.RECTANGLE if names & _ROI_VALUES else None), corners
    elif graphic == "ELLIPSE" and len(points) == 4:
        kind, shape = MeasureKind.ELLIPSE, _ellipse(points)
    elif graphic == "CIRCLE" and len(points) == 2:
        radius = float(np.hypot(*(points[1] - points[0])))
        kind, shape = MeasureKind.ELLIPSE, np.array([points[0] - radius, points[0] + radius])
    elif graphic in ("POINT", "MULTIPOINT"):
        raise _Skip(f"its region is a {graphic} and ClinLens has no point annotation")
    else:
        raise _Skip(f"graphic type {graphic or '(none)'!r} with {len(points)} points is not a shape ClinLens reads")
    return kind, _inside(np.asarray(shape, dtype=float), ref)


def _rectangle(points: np.ndarray, *, closed: bool) -> np.ndarray | None:
    """The corners of an axis-aligned rectangle given as 4 vertices in order (closed explicitly or not)."""
    if len(points) == 5 and np.allclose(points[0], points[-1], atol=_TOLERANCE):
        points, closed = points[:-1], True
    if not closed or len(points) != 4:
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    if np.any(high - low <= _TOLERANCE):
        return None
    at_low = np.isclose(points, low, atol=_TOLERANCE)
    at_high = np.isclose(points, high, atol=_TOLERANCE)
    corners = {(bool(x), bool(y)) for x, y in at_low}
    edges = np.isclose(points, np.roll(points, -1, axis=0), atol=_TOLERANCE)  # each edge keeps x or y
    if not np.all(at_low | at_high) or len(corners) != 4 or not np.all(edges.sum(axis=1) == 1):
        return None
    return np.array([low, high])


def _ellipse(points: np.ndarray) -> np.ndarray:
    """Bounding corners of an ELLIPSE (major axis end points, then minor) whose axes are the image's."""
    first, second = points[1] - points[0], points[3] - points[2]
    axis_aligned = all(min(abs(v[0]), abs(v[1])) <= _TOLERANCE * max(1.0, float(np.hypot(*v))) for v in (first, second))
    if not axis_aligned:
        raise _Skip("its ELLIPSE is rotated, and ClinLens ellipses follow the image axes")
    return np.array([points.min(axis=0), points.max(axis=0)])


def _inside(shape: np.ndarray, ref: ImageRef) -> tuple[tuple[float, float], ...]:
    """The points, clipped by at most the rounding tolerance; a region off the image is skipped."""
    size = np.array([ref.width, ref.height], dtype=float)
    if np.any(shape < -_TOLERANCE) or np.any(shape > size + _TOLERANCE):
        raise _Skip(f"it lies outside the {ref.width}×{ref.height} image")
    return tuple((float(x), float(y)) for x, y in np.clip(shape, 0, size))
