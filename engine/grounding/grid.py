"""Pixel boxes <-> the 0-1000 grid that Qwen-VL-family models read and write.

Why a module of its own: every coordinate that crosses the model boundary goes through these two
functions, so the convention (grid relative to the ORIGINAL width and height, never to the
processor's resized image; round half up; clamp to [0, 1000]; corners ordered) lives in one place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

GRID = 1000
"""Size of the normalised grid: Qwen2-VL writes (x, y) as integers in [0, 1000]."""

PixelBox = tuple[float, float, float, float]
"""(x1, y1, x2, y2) in pixels of the original image, top-left origin, x to the right."""

GridBox = tuple[int, int, int, int]
"""(x1, y1, x2, y2) as integers on the 0-1000 grid, x1 <= x2 and y1 <= y2."""

Frame = tuple[float, float]
"""(width, height) of the space a model writes its numbers in: the 0-1000 grid (GRID_FRAME) for
Qwen2-VL, Qwen3-VL and MedGemma, the processor's resized input in pixels for Qwen2.5-VL."""

GRID_FRAME: Frame = (GRID, GRID)


def _check_size(width: float, height: float) -> None:
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")


def ordered(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
    """Return the corners as top-left then bottom-right, whatever order they came in."""
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def pixels_to_frame(box: Sequence[float], width: float, height: float, frame: Frame = GRID_FRAME) -> GridBox:
    """Map a pixel box of the original image to integers in ``frame``: round half up, clamp to
    the frame, order corners."""
    _check_size(width, height)
    _check_size(*frame)
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box coordinates must be finite, got {tuple(box)}")
    fw, fh = frame

    def to_frame(value: float, size: float, limit: float) -> int:
        return int(min(limit, max(0, math.floor(value / size * limit + 0.5))))

    gx1, gy1, gx2, gy2 = ordered(
        to_frame(x1, width, fw), to_frame(y1, height, fh), to_frame(x2, width, fw), to_frame(y2, height, fh)
    )
    return int(gx1), int(gy1), int(gx2), int(gy2)


def pixels_to_grid(box: Sequence[float], width: float, height: float) -> GridBox:
    """Map a pixel box to grid integers: round half up, clamp to [0, 1000], order corners."""
    return pixels_to_frame(box, width, height, GRID_FRAME)


def frame_to_pixels(values: Sequence[float], width: float, height: float, frame: Frame = GRID_FRAME) -> PixelBox:
    """Map values in ``frame`` (already clamped and ordered) to pixels of the original image."""
    _check_size(width, height)
    _check_size(*frame)
    x1, y1, x2, y2 = (float(v) for v in values)
    fw, fh = frame
    return x1 / fw * width, y1 / fh * height, x2 / fw * width, y2 / fh * height


def grid_to_pixels(grid: Sequence[float], width: float, height: float) -> PixelBox:
    """Map grid values (already clamped and ordered) to pixels of the original image."""
    return frame_to_pixels(grid, width, height, GRID_FRAME)


def iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """IoU of two (x1, y1, x2, y2) boxes on their raw numbers, 0 unless both have four finite numbers.

    The papers' numpy formula: the intersection is clipped at 0, so a reversed box overlaps nothing;
    a zero union gives 0 (numpy gives nan there, which fails the threshold all the same).
    """
    if a is None or b is None or len(a) != 4 or len(b) != 4 or not all(map(math.isfinite, (*a, *b))):
        return 0.0
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    inter = max(min(ax2, bx2) - max(ax1, bx1), 0.0) * max(min(ay2, by2) - max(ay1, by1), 0.0)
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union != 0 else 0.0
