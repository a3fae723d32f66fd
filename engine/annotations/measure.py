"""The numbers a measurement reports: length (mm), angle (degrees), ROI statistics and area.

Computed from the pixels the user measured on (a frame, or a reformatted plane as a Frame) and
its pixel spacing, so a measurement on a coronal reformat uses the reformat's square pixels.
ROI statistics are over the pixels whose centres lie inside the shape, in modality units (HU
for CT: the stored values through the frame's rescale or Modality LUT, never display values).
Without a pixel spacing lengths and areas are reported in pixels ("px", "px2").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from engine.annotations.model import MeasuredValue, MeasureKind
from engine.imaging import Frame
from engine.imaging.frame import modality_of

HOUNSFIELD = "[hnsf'U]"  # UCUM code of the Hounsfield unit (DICOM CID 7181)
NO_UNIT = "1"


def modality_unit(modality: str) -> str:
    """UCUM unit of a modality's values: HU for CT, unitless otherwise."""
    return HOUNSFIELD if modality.upper() == "CT" else NO_UNIT


def measure(
    kind: MeasureKind | str,
    points: Sequence[tuple[float, float]],
    *,
    spacing: tuple[float, float] | None,
    frame: Frame | None = None,
    unit: str = NO_UNIT,
) -> tuple[MeasuredValue, ...]:
    """Values of a measurement. ``spacing`` is (row mm, column mm); ``frame`` gives ROI pixels."""
    kind = MeasureKind(kind)
    row_mm, col_mm = spacing if spacing is not None else (1.0, 1.0)
    length_unit = "mm" if spacing is not None else "px"
    mm = np.array([[x * col_mm, y * row_mm] for x, y in points], dtype=np.float64)
    if kind is MeasureKind.LENGTH:
        return (MeasuredValue("length", float(np.linalg.norm(mm[1] - mm[0])), length_unit),)
    if kind is MeasureKind.ANGLE:
        a, b = mm[0] - mm[1], mm[2] - mm[1]
        norms = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosine = float(a @ b) / norms if norms > 0 else 1.0
        return (MeasuredValue("angle", math.degrees(math.acos(min(1.0, max(-1.0, cosine)))), "deg"),)
    (x1, x2), (y1, y2) = sorted((points[0][0], points[1][0])), sorted((points[0][1], points[1][1]))
    width_mm, height_mm = (x2 - x1) * col_mm, (y2 - y1) * row_mm
    area = width_mm * height_mm * (math.pi / 4 if kind is MeasureKind.ELLIPSE else 1.0)
    values = [MeasuredValue("area", area, "mm2" if spacing is not None else "px2")]
    if frame is not None and not frame.is_color:
        inside = roi_values(frame, kind, (x1, y1, x2, y2))
        if inside.size:
            values += [
                MeasuredValue("mean", float(inside.mean()), unit),
                MeasuredValue("std", float(inside.std()), unit),
                MeasuredValue("min", float(inside.min()), unit),
                MeasuredValue("max", float(inside.max()), unit),
                MeasuredValue("pixels", float(inside.size), NO_UNIT),
            ]
    return tuple(values)


def roi_values(frame: Frame, kind: MeasureKind, rect: tuple[float, float, float, float]) -> np.ndarray:
    """Modality values of the pixels whose centres lie inside the rectangle or its ellipse."""
    x1, y1, x2, y2 = rect
    height, width = frame.stored.shape[:2]
    c0, c1 = max(0, math.floor(x1)), min(width, math.ceil(x2))
    r0, r1 = max(0, math.floor(y1)), min(height, math.ceil(y2))
    if c1 <= c0 or r1 <= r0:
        return np.empty(0)
    cy, cx = np.mgrid[r0:r1, c0:c1] + 0.5
    if kind is MeasureKind.ELLIPSE:
        a, b = (x2 - x1) / 2, (y2 - y1) / 2
        if a <= 0 or b <= 0:
            return np.empty(0)
        mask = ((cx - (x1 + a)) / a) ** 2 + ((cy - (y1 + b)) / b) ** 2 <= 1.0
    else:
        mask = (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)
    # modality values of the bounding region only: no float copy of the whole frame
    return modality_of(frame.stored[r0:r1, c0:c1], frame.pixel_params)[mask]


def graphic_points(kind: MeasureKind | str | None, points: Sequence[tuple[float, float]]) -> np.ndarray:
    """The DICOM SCOORD graphic data of a shape (``kind`` None: a box from its two corners).

    Length: the 2 end points (POLYLINE); angle: 3 points, vertex in the middle (POLYLINE);
    rectangle and box: the 4 corners clockwise from the top-left and the first again (closed
    POLYLINE / POLYGON); ellipse: the end points of its first then its second axis (ELLIPSE).
    """
    kind = None if kind is None else MeasureKind(kind)
    pts = np.asarray(points, dtype=np.float64)
    if kind in (MeasureKind.LENGTH, MeasureKind.ANGLE):
        return pts
    (x1, x2), (y1, y2) = sorted(pts[:, 0]), sorted(pts[:, 1])
    if kind is MeasureKind.ELLIPSE:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        horizontal = [[x1, cy], [x2, cy]]
        vertical = [[cx, y1], [cx, y2]]
        major, minor = (horizontal, vertical) if x2 - x1 >= y2 - y1 else (vertical, horizontal)
        return np.array(major + minor)
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]])


def outline(kind: MeasureKind | str | None, graphic: np.ndarray, segments: int = 48) -> tuple[np.ndarray, bool]:
    """The drawable outline of SCOORD graphic data (2-D or patient 3-D): (points, closed).

    An ELLIPSE (two axes' end points) becomes a polygon of ``segments`` points; rectangles
    and boxes are closed polylines already; lengths and angles are open.
    """
    kind = None if kind is None else MeasureKind(kind)
    graphic = np.asarray(graphic, dtype=np.float64)
    if kind is MeasureKind.ELLIPSE:
        centre = graphic.mean(axis=0)
        a, b = (graphic[1] - graphic[0]) / 2, (graphic[3] - graphic[2]) / 2
        t = np.linspace(0, 2 * np.pi, segments, endpoint=False)[:, None]
        return centre + np.cos(t) * a + np.sin(t) * b, True
    if kind in (MeasureKind.LENGTH, MeasureKind.ANGLE):
        return graphic, False
    return graphic[:-1] if len(graphic) > 1 and np.allclose(graphic[0], graphic[-1]) else graphic, True
