"""What one row of the Annotations list says, for a box, a measurement or a mask.

Kept apart from the panel so that every column means one thing for both kinds of annotation: the
Frame column is a 1-based frame (or slice) number, the plane it was drawn on is its own column,
and the Value column carries the number with its unit (a box's size in mm, a length, an angle,
an ROI's mean ± SD and min/max). The full set of values is in the row's tooltip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.annotations import Box, Mask
from engine.annotations.model import UNIT_TEXT, MeasuredValue, Measurement, PlanePlacement, value_text

COLUMNS = ["Label", "Frame", "Plane", "Value", "Review", "Source", "Size (px)", "Score", "Note"]
NOTE_COLUMN = COLUMNS.index("Note")
PLANE_COLUMN = COLUMNS.index("Plane")


@dataclass(frozen=True)
class Row:
    """The column texts of one list row and the tooltip that spells them out."""

    texts: list[str]
    tooltip: str


def with_unit(value: MeasuredValue, digits: int = 1) -> str:
    return value_text(value, digits)


def frame_and_plane(frame: int, placement: PlanePlacement | None) -> tuple[str, str]:
    """1-based frame (or slice along the plane's axis) and the plane's name; "" for a plain frame."""
    if placement is not None:
        return str(placement.index + 1), placement.plane
    return str(frame + 1), ""


def box_size_mm(box: Box, spacing) -> str:
    if spacing is None:
        return "—"
    return f"{box.width * spacing.col_mm:.1f} × {box.height * spacing.row_mm:.1f} mm"


def box_row(box: Box, spacing) -> Row:
    frame, plane = frame_and_plane(box.frame, box.placement)
    placed = box.placement
    size_mm = (
        f"{box.width * placed.pixel_mm:.1f} × {box.height * placed.pixel_mm:.1f} mm"
        if placed
        else box_size_mm(box, spacing)
    )
    texts = [
        box.label,
        frame,
        plane,
        size_mm,
        box.review.value,
        box.source.value,
        f"{box.width:g} × {box.height:g}",
        "" if box.score is None else f"{box.score:.2f}",
        box.note,
    ]
    where = f"{plane} slice {frame}" if plane else f"frame {frame}"
    tip = f"Box “{box.label}” on {where}\nSize: {box.width:g} × {box.height:g} px ({size_mm})"
    return Row(texts, tip)


def measurement_value(measurement: Measurement) -> str:
    """'24.0 mm', '37.5°', or for an ROI 'mean 54 ± 7 HU' over 'min/max 30/80' (its area is in the
    tooltip): two short lines read in the narrow docked list without widening it."""
    if not measurement.kind.is_roi:
        return measurement.summary()
    mean, std, low, high, area = (measurement.value(n) for n in ("mean", "std", "min", "max", "area"))
    if mean is None:
        return with_unit(area, 0) if area is not None else ""
    spread = f" ± {std.value:.0f}" if std is not None else ""
    text = f"mean {mean.value:.0f}{spread}{UNIT_TEXT.get(mean.unit, ' ' + mean.unit)}"
    if low is not None and high is not None:
        text += f"\nmin/max {low.value:.0f}/{high.value:.0f}"
    return text


def measurement_size_px(measurement: Measurement) -> str:
    """The drawn extent in pixels (a length's length, an ROI's width × height); "" for an angle."""
    (x1, y1), (x2, y2) = measurement.points[0], measurement.points[-1]
    if measurement.kind.is_roi:
        return f"{abs(x2 - x1):.0f} × {abs(y2 - y1):.0f}"
    if measurement.kind.n_points == 2:
        return f"{math.hypot(x2 - x1, y2 - y1):.0f}"
    return ""


def measurement_label(measurement: Measurement) -> str:
    """Its own label, with its kind when the label does not already say it ("nodule (length)")."""
    kind = measurement.kind.value
    return kind if measurement.label in (kind, "measurement") else f"{measurement.label} ({kind})"


def measurement_row(measurement: Measurement) -> Row:
    frame, plane = frame_and_plane(measurement.frame, measurement.placement)
    texts = [
        measurement_label(measurement),
        frame,
        plane,
        measurement_value(measurement),
        measurement.review.value,
        measurement.source.value,
        measurement_size_px(measurement),
        "" if measurement.score is None else f"{measurement.score:.2f}",
        measurement.note,
    ]
    where = f"{plane} slice {frame}" if plane else f"frame {frame}"
    lines = [f"{measurement.kind.value.capitalize()} “{measurement.label}” on {where}"]
    lines += [f"{value.name}: {with_unit(value, 0 if value.name == 'pixels' else 1)}" for value in measurement.values]
    return Row(texts, "\n".join(lines))


def frames_text(frames: tuple[int, ...]) -> str:
    """1-based frame numbers: "12" for one, "10–14" for a run, "3, 7" otherwise."""
    numbers = [f + 1 for f in frames]
    if len(numbers) == 1:
        return str(numbers[0])
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}–{numbers[-1]}"
    return ", ".join(str(n) for n in numbers)


def mask_value(mask: Mask) -> str:
    """Its volume (several slices) or area (one), else the pixels inside: what a mask is measured by."""
    by_name = {value.name: value for value in mask.values}
    for name in ("volume", "area"):
        if name in by_name:
            return with_unit(by_name[name], 2 if name == "volume" else 1)
    return f"{mask.area_pixels} px"


def mask_row(mask: Mask) -> Row:
    frames = frames_text(mask.frame_indices)
    texts = [
        f"{mask.label} (mask)",
        frames,
        "",
        mask_value(mask),
        mask.review.value,
        mask.source.value,
        "",
        "" if mask.score is None else f"{mask.score:.2f}",
        mask.note,
    ]
    where = f"frame {frames}" if len(mask.frames) == 1 else f"frames {frames}"
    lines = [f"Mask “{mask.label}” on {where}"]
    lines += [f"{value.name}: {with_unit(value)}" for value in mask.values]
    if mask.provenance is not None and mask.provenance.model:
        lines.append(f"Model: {mask.provenance.model}")
    return Row(texts, "\n".join(lines))
