"""A brush stroke as pixels: the discs of a radius swept along a polyline, in image coordinates.

Why pixel centres: a pixel ``(column i, row j)`` covers ``[i, i+1) x [j, j+1)`` in the box
convention, so it is painted when its centre ``(i + 0.5, j + 0.5)`` lies within ``radius`` of the
stroke. That rule is exact, needs no anti-aliasing decision, and gives the same pixels whether a
stroke is painted whole or segment by segment while the mouse moves (the union is the same).
Pure numpy and in place on a bounding window per segment, so a mouse move costs microseconds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]  # (x, y) in image pixels


def paint_stroke(target: np.ndarray, points: Sequence[Point], radius: float, value: bool = True) -> None:
    """Set ``target`` (rows, columns) to ``value`` wherever a pixel centre lies within ``radius`` of
    the polyline through ``points`` (one point: a disc). Parts outside the image are clipped."""
    if not radius > 0 or not math.isfinite(radius):
        raise ValueError(f"the brush radius must be a positive number of pixels, got {radius!r}")
    if not points:
        return
    rows, columns = target.shape
    path = [(float(x), float(y)) for x, y in points]
    segments = list(itertools.pairwise(path)) or [(path[0], path[0])]
    for (x0, y0), (x1, y1) in segments:
        left = max(0, math.floor(min(x0, x1) - radius))
        right = min(columns, math.ceil(max(x0, x1) + radius) + 1)
        top = max(0, math.floor(min(y0, y1) - radius))
        bottom = min(rows, math.ceil(max(y0, y1) + radius) + 1)
        if left >= right or top >= bottom:
            continue
        cx = np.arange(left, right, dtype=np.float64)[None, :] + 0.5
        cy = np.arange(top, bottom, dtype=np.float64)[:, None] + 0.5
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else np.clip(((cx - x0) * dx + (cy - y0) * dy) / length2, 0.0, 1.0)
        inside = (cx - (x0 + t * dx)) ** 2 + (cy - (y0 + t * dy)) ** 2 <= radius * radius
        target[top:bottom, left:right][inside] = value


def stroke_mask(shape: tuple[int, int], points: Sequence[Point], radius: float) -> np.ndarray:
    """The pixels of one whole stroke as a new bool array of ``shape`` (rows, columns)."""
    mask = np.zeros(shape, dtype=bool)
    paint_stroke(mask, points, radius)
    return mask
