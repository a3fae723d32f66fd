"""Per-frame display parameters from a DICOM header, functional groups included.

Enhanced multi-frame objects keep rescale, windows, spacing and position in the Shared or
Per-Frame Functional Groups, which pydicom's apply_modality_lut ignores (pydicom#2353). This
module resolves them once per frame (per-frame item first, then shared, then the top level)
into plain `PixelParams` / `Window` values, so display never reads a header.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .frame import VOI_FUNCTIONS, LutData, PixelParams, Window


@dataclass(frozen=True)
class PixelSpacing:
    """Physical pixel size and the attribute it came from (the user must know which)."""

    row_mm: float  # spacing between rows (vertical), mm
    col_mm: float  # spacing between columns (horizontal), mm
    source: str  # "PixelSpacing" | "ImagerPixelSpacing" | "PixelMeasuresSequence"


def functional_item(header: Dataset, frame_index: int, sequence: str) -> Dataset | None:
    """First item of a functional-group macro for a frame: per-frame first, then shared."""
    for groups, idx in (
        (header.get("PerFrameFunctionalGroupsSequence"), frame_index),
        (header.get("SharedFunctionalGroupsSequence"), 0),
    ):
        if _is_items(groups) and idx < len(groups):
            macro = groups[idx].get(sequence)
            if _is_items(macro):
                return macro[0]
    return None


def _is_items(value: Any) -> bool:
    """A non-empty sequence of datasets; a damaged functional group (another VR) is not one, and is
    ignored here (the 2-D view shows what it can; volume_headers refuses it by name)."""
    return isinstance(value, Sequence) and len(value) > 0 and all(isinstance(item, Dataset) for item in value)


def number_of_frames(header: Dataset) -> int:
    try:
        value = int(header.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return 1
    return max(1, value)


def _floats(value: Any) -> list[float]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, (MultiValue, list, tuple)) else [value]
    out = []
    for item in items:
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            continue
    return out


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (MultiValue, list, tuple)) else [value]
    return [str(item) for item in items]


def _lut(item: Dataset, header: Dataset) -> LutData | None:
    descriptor = item.get("LUTDescriptor")
    if "LUTData" not in item or not descriptor or len(descriptor) < 3:
        return None
    n_entries = int(descriptor[0]) or 65536
    data = item.LUTData
    if isinstance(data, bytes):  # OW: raw bytes in the file's byte order
        little = header.original_encoding[1] is not False
        values = np.frombuffer(data, dtype="<u2" if little else ">u2")[:n_entries]
    else:
        values = np.asarray(data if isinstance(data, (list, MultiValue)) else [data])[:n_entries]
    return LutData.from_values(int(descriptor[1]), int(descriptor[2]), values, str(item.get("LUTExplanation", "")))


def _windows(source: Dataset) -> tuple[Window, ...]:
    centers = _floats(source.get("WindowCenter"))
    widths = _floats(source.get("WindowWidth"))
    explanations = _strings(source.get("WindowCenterWidthExplanation"))
    function = str(source.get("VOILUTFunction") or "LINEAR").upper()
    if function not in VOI_FUNCTIONS:
        function = "LINEAR"
    return tuple(
        Window(c, w, function, explanations[i] if i < len(explanations) else "")
        for i, (c, w) in enumerate(zip(centers, widths, strict=False))  # extra values: ignored
        if w > 0
    )


def frame_params(header: Dataset, frame_index: int) -> tuple[PixelParams, tuple[Window, ...]]:
    """Modality transform, VOI LUTs and header windows that apply to one frame."""
    bits = int(header.get("BitsStored") or header.get("BitsAllocated") or 16)
    signed = int(header.get("PixelRepresentation") or 0) == 1
    rescale_source = functional_item(header, frame_index, "PixelValueTransformationSequence") or header
    modality_lut = None
    if header.get("ModalityLUTSequence"):
        modality_lut = _lut(header.ModalityLUTSequence[0], header)
    rescale = None
    slope = _floats(rescale_source.get("RescaleSlope"))
    intercept = _floats(rescale_source.get("RescaleIntercept"))
    if modality_lut is None and slope and intercept:
        rescale = (slope[0], intercept[0])
    voi_source = functional_item(header, frame_index, "FrameVOILUTSequence") or header
    voi_luts = tuple(lut for lut in (_lut(item, header) for item in voi_source.get("VOILUTSequence") or []) if lut)
    params = PixelParams(bits, signed, rescale, modality_lut, voi_luts)
    return params, _windows(voi_source)


def frame_spacing(header: Dataset, frame_index: int = 0) -> PixelSpacing | None:
    """PixelSpacing, else the Pixel Measures functional group, else ImagerPixelSpacing."""
    measures = functional_item(header, frame_index, "PixelMeasuresSequence")
    for source, name in (
        (header, "PixelSpacing"),
        (measures, "PixelMeasuresSequence"),
        (header, "ImagerPixelSpacing"),
    ):
        if source is None:
            continue
        key = "PixelSpacing" if name == "PixelMeasuresSequence" else name
        values = _floats(source.get(key))
        if len(values) >= 2 and values[0] > 0 and values[1] > 0:
            return PixelSpacing(values[0], values[1], name)
    return None


def frame_geometry(header: Dataset, frame_index: int = 0) -> tuple[Sequence[float], Sequence[float]] | None:
    """(ImagePositionPatient, ImageOrientationPatient) of a frame, when both are known."""
    position_item = functional_item(header, frame_index, "PlanePositionSequence") or header
    orientation_item = functional_item(header, frame_index, "PlaneOrientationSequence") or header
    position = _floats(position_item.get("ImagePositionPatient"))
    orientation = _floats(orientation_item.get("ImageOrientationPatient"))
    if len(position) == 3 and len(orientation) == 6:
        return position, orientation
    return None


def slice_location(header: Dataset, frame_index: int = 0) -> float | None:
    """Position along the slice normal (cross product of the orientation cosines)."""
    geometry = frame_geometry(header, frame_index)
    if geometry is None:
        return None
    position, orientation = geometry
    with np.errstate(all="ignore"):  # a damaged header (NaN, 1e308) sorts by InstanceNumber instead
        location = float(np.dot(np.cross(orientation[:3], orientation[3:]), position))
    return location if math.isfinite(location) else None
