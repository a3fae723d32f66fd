"""Checked reads of the header values a volume is built from: finite, the right count, in range.

A volume turns positions, orientations, spacings and frame offsets into array shapes and
indices, so a NaN, an infinity, a 1e308 or a short list in one header would otherwise surface
far from its cause: an IndexError on the MPR worker, "cannot convert float NaN to integer" when
a plane is cut. Every geometry value volume.py uses is read here, strictly, and a bad one is a
VolumeError in one sentence that names the file (and frame) and the attribute.

dicom_params reads the same attributes leniently (values that are not numbers are skipped, a
bad PixelSpacing falls back to the next source) because the 2-D viewer must show whatever it
can; a volume must not be built from a guess, so here the first source present is the one used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from .dicom_index import MAX_SIDE
from .errors import VolumeError
from .guard import is_recoverable, reason

MAX_POSITION_MM = 1e6  # 1 km from the origin: no patient is placed further out
MIN_SPACING_MM = 1e-4  # 0.1 µm
MAX_SPACING_MM = 1e3  # 1 m between neighbouring pixels
UNIT_TOLERANCE = 0.01  # a direction cosine vector may be this far from length 1 (rounded headers)
PERPENDICULAR_TOLERANCE = 0.01  # |cos| of the angle between the row and column directions
_PER_FRAME = "PerFrameFunctionalGroupsSequence"
_SHARED = "SharedFunctionalGroupsSequence"


@dataclass(frozen=True)
class SliceGeometry:
    """One frame's checked geometry: finite, in range, unit perpendicular cosines."""

    position: np.ndarray  # ImagePositionPatient (after the frame's GridFrameOffsetVector shift)
    orientation: np.ndarray  # row cosine, then column cosine
    spacing: tuple[float, float]  # (between rows, between columns) in mm
    spacing_source: str  # the attribute the spacing came from, for messages


@dataclass(frozen=True)
class FileGeometry:
    """The per-file facts every frame of a file shares, read and checked once."""

    path: str
    header: Dataset
    n_frames: int
    per_frame: list[Dataset] | None  # PerFrameFunctionalGroupsSequence items, one per frame
    shared: Dataset | None  # the SharedFunctionalGroupsSequence item
    offsets: tuple[float, ...] | None  # GridFrameOffsetVector, one per frame (RT Dose)

    def label(self, frame_in_file: int) -> str:
        """How messages name a frame: the file, and the frame when the file has several."""
        name = os.path.basename(self.path)
        return f"{name} frame {frame_in_file + 1}" if self.n_frames > 1 else name


def read_file_geometry(path: str, header: Dataset, frames_in_stack: int) -> FileGeometry:
    """Check a file's frame count, functional groups and frame offsets against its frames."""
    name = os.path.basename(path)
    n_frames = _frame_count(header, name, frames_in_stack)
    per_frame = _items(header, _PER_FRAME, name)
    if per_frame is not None and len(per_frame) != n_frames:
        raise VolumeError(
            f"{name}: {_PER_FRAME} has {len(per_frame)} item(s) for {n_frames} frame(s) (NumberOfFrames)."
        )
    shared_items = _items(header, _SHARED, name)
    offsets = None
    if per_frame is None and _present(_get(header, "GridFrameOffsetVector", name)):
        offsets = header_floats(header, "GridFrameOffsetVector", n_frames, name)
        _check_bounded(offsets, "GridFrameOffsetVector", name, MAX_POSITION_MM, " mm")
    if n_frames > 1 and per_frame is None and offsets is None:
        raise VolumeError(
            f"{name}: {n_frames} frames but neither {_PER_FRAME} nor GridFrameOffsetVector "
            "gives each frame its own position."
        )
    return FileGeometry(path, header, n_frames, per_frame, shared_items[0] if shared_items else None, offsets)


def read_slice(file: FileGeometry, frame_in_file: int) -> SliceGeometry:
    """Position, orientation and pixel spacing of one frame, each checked."""
    where = file.label(frame_in_file)
    position = np.asarray(_position(_macro(file, frame_in_file, "PlanePositionSequence", where), where))
    orientation = np.asarray(_orientation(_macro(file, frame_in_file, "PlaneOrientationSequence", where), where))
    if file.offsets is not None:
        normal = np.cross(orientation[:3], orientation[3:])
        position = position + normal * (file.offsets[frame_in_file] - file.offsets[0])
    row_mm, col_mm, source = _spacing(file, frame_in_file, where)
    return SliceGeometry(position, orientation, (row_mm, col_mm), source)


def check_image_size(name: str, rows: int, columns: int) -> None:
    """Rows and Columns of the slices: positive and no more than an image may have."""
    for keyword, value in (("Rows", rows), ("Columns", columns)):
        if not 1 <= value <= MAX_SIDE:
            raise VolumeError(f"{name}: {keyword} is {value}, not between 1 and {MAX_SIDE}.")


# ----- values
def header_floats(source: Dataset, keyword: str, count: int, where: str) -> tuple[float, ...]:
    """Exactly `count` finite numbers from one attribute, or VolumeError naming it."""
    value = _get(source, keyword, where)
    if not _present(value):
        raise VolumeError(f"{where}: {keyword} is missing.")
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]
    if len(items) != count:
        raise VolumeError(f"{where}: {keyword} has {len(items)} value(s), not {count}.")
    return tuple(_finite(item, keyword, where) for item in items)


def _finite(item: Any, keyword: str, where: str) -> float:
    if isinstance(item, (bytes, bytearray, bool, Dataset)):
        raise VolumeError(f"{where}: {keyword} has a value that is not a number ({type(item).__name__}).")
    try:
        number = float(item)
    except (TypeError, ValueError, OverflowError):
        raise VolumeError(f"{where}: {keyword} has a value that is not a number ({_short(item)}).") from None
    if math.isnan(number):
        raise VolumeError(f"{where}: {keyword} has NaN.")
    if math.isinf(number):
        raise VolumeError(f"{where}: {keyword} has an infinite value.")
    return number


def _check_bounded(values: Sequence[float], keyword: str, where: str, limit: float, unit: str = "") -> None:
    for value in values:
        if abs(value) > limit:
            raise VolumeError(f"{where}: {keyword} value {value:g}{unit} is out of range (beyond ±{limit:g}{unit}).")


def _position(item: Dataset, where: str) -> tuple[float, ...]:
    position = header_floats(item, "ImagePositionPatient", 3, where)
    _check_bounded(position, "ImagePositionPatient", where, MAX_POSITION_MM, " mm")
    return position


def _orientation(item: Dataset, where: str) -> tuple[float, ...]:
    """Two unit, perpendicular direction cosine vectors (parallel ones have no slice normal)."""
    keyword = "ImageOrientationPatient"
    cosines = header_floats(item, keyword, 6, where)
    _check_bounded(cosines, keyword, where, 1 + UNIT_TOLERANCE)
    row, column = np.asarray(cosines[:3]), np.asarray(cosines[3:])
    for which, vector in (("row", row), ("column", column)):
        length = float(np.linalg.norm(vector))
        if abs(length - 1) > UNIT_TOLERANCE:
            raise VolumeError(f"{where}: the {which} direction of {keyword} has length {length:.3g}, not 1.")
    cosine = float(row @ column)
    if abs(cosine) > PERPENDICULAR_TOLERANCE:
        angle = math.degrees(math.acos(max(-1.0, min(1.0, cosine))))
        raise VolumeError(
            f"{where}: the row and column directions of {keyword} are {angle:.1f}° apart, not perpendicular."
        )
    return cosines


def _spacing(file: FileGeometry, frame_in_file: int, where: str) -> tuple[float, float, str]:
    """PixelSpacing, else the Pixel Measures functional group, else ImagerPixelSpacing: the first
    present is used and must be valid (no fall-through past a damaged value)."""
    measures = _macro(file, frame_in_file, "PixelMeasuresSequence", where, top_level=False)
    for source, keyword, name in (
        (file.header, "PixelSpacing", "PixelSpacing"),
        (measures, "PixelSpacing", "PixelSpacing (PixelMeasuresSequence)"),
        (file.header, "ImagerPixelSpacing", "ImagerPixelSpacing"),
    ):
        if source is None or not _present(_get(source, keyword, where)):
            continue
        row_mm, col_mm = header_floats(source, keyword, 2, where)
        for value in (row_mm, col_mm):
            if not MIN_SPACING_MM <= value <= MAX_SPACING_MM:
                raise VolumeError(
                    f"{where}: {name} value {value:g} mm is out of range ({MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm)."
                )
        return row_mm, col_mm, name
    raise VolumeError(f"{where}: PixelSpacing is missing.")


# ----- structure
def _frame_count(header: Dataset, name: str, frames_in_stack: int) -> int:
    """NumberOfFrames (1 when absent) as a whole number that matches the frames opened."""
    if not _present(_get(header, "NumberOfFrames", name)):
        count = 1.0
    else:
        (count,) = header_floats(header, "NumberOfFrames", 1, name)
    if count != int(count) or count < 1:
        raise VolumeError(f"{name}: NumberOfFrames is {count:g}, not a positive whole number.")
    if int(count) != frames_in_stack:
        raise VolumeError(f"{name}: NumberOfFrames is {int(count)}, but {frames_in_stack} frame(s) were opened.")
    return frames_in_stack


def _items(source: Dataset, keyword: str, where: str) -> list[Dataset] | None:
    """A sequence's items (None when absent or empty); VolumeError when it is not a sequence."""
    value = _get(source, keyword, where)
    if value is None or (isinstance(value, Sequence) and len(value) == 0):
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise VolumeError(f"{where}: {keyword} is not a sequence of items.")
    items = list(value)
    if not all(isinstance(item, Dataset) for item in items):
        raise VolumeError(f"{where}: {keyword} is not a sequence of items.")
    return items


def _macro(
    file: FileGeometry, frame_in_file: int, keyword: str, where: str, *, top_level: bool = True
) -> Dataset | None:
    """A functional-group macro's item for a frame: per-frame first, then shared, then (with
    `top_level`) the header itself, where classic single-frame files keep the value."""
    groups = (file.per_frame[frame_in_file] if file.per_frame else None, file.shared)
    for group in groups:
        if group is None:
            continue
        macro = _items(group, keyword, where)
        if macro:
            return macro[0]
    return file.header if top_level else None


def _get(source: Dataset, keyword: str, where: str) -> Any:
    """``source.get(keyword)``; pydicom converts values lazily, so a damaged one says so here."""
    try:
        return source.get(keyword)
    except BaseException as exc:
        if not is_recoverable(exc):
            raise
        raise VolumeError(f"{where}: {keyword} could not be read ({reason(exc)}).") from exc


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, (str, bytes)):
        return bool(value.strip())
    return not (isinstance(value, Sequence) and len(value) == 0)


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 24 else text[:21] + "..."
