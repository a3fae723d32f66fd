"""Prompt checks and the plain result type: numpy only, so callers can validate without torch.

Why here: a box drawn past the image edge or dragged to nothing must be reported as one
sentence before any model work, and the GUI validates prompts on its own thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.segmentation.errors import SegmenterError

Box = tuple[float, float, float, float]
Point = tuple[float, float, int]


@dataclass(frozen=True)
class SegmentResult:
    """One mask on the pixels the caller passed: ``mask`` is bool (H, W) of that image."""

    mask: np.ndarray
    score: float  # the model's predicted IoU for this mask (0..1 for trained weights)

    @property
    def empty(self) -> bool:
        return not bool(self.mask.any())


# Here rather than in propagate.py, which both propagation engines (box chaining and the SAM 2
# video model) share: importing the submodule ``propagate`` would shadow the package's lazy
# ``propagate`` function of the same name.
SliceSource = Callable[[int], np.ndarray]
"""frame index -> the rendered RGB pixels of that slice, as displayed (same window and plane)."""


@dataclass
class Propagation:
    """Masks by frame index; ``cancelled`` when the user stopped it (the masks so far are kept)."""

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    cancelled: bool = False


def check_box(box: Sequence[float], height: int, width: int) -> Box:
    """A box (x1, y1, x2, y2) in image pixel coordinates (0..width, 0..height), clipped to the image.

    Partly outside is clipped (a detector's box may overhang the edge by a pixel); wholly outside,
    empty or not numbers is an error.
    """
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise SegmenterError(f"A box needs four numbers x1, y1, x2, y2, not {box!r:.60}.") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise SegmenterError(f"The box {box!r:.60} has a coordinate that is not a finite number.")
    if x2 <= x1 or y2 <= y1:
        raise SegmenterError(
            f"The box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is empty: x2 must be right of x1 and y2 below y1."
        )
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise SegmenterError(
            f"The box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {width}×{height} image; draw it on the image."
        )
    return (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))


def check_points(points: Sequence[Sequence[float]], height: int, width: int) -> list[Point]:
    """Points (x, y, label) inside the image; label 1 = part of the object, 0 = not part of it."""
    checked: list[Point] = []
    for point in points:
        try:
            x, y, label = float(point[0]), float(point[1]), int(point[2])
        except (TypeError, ValueError, IndexError):
            raise SegmenterError(f"A point needs x, y and a label 1 or 0, not {point!r:.60}.") from None
        if label not in (0, 1):
            raise SegmenterError(f"A point's label must be 1 (object) or 0 (background), not {label}.")
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < width and 0 <= y < height):
            raise SegmenterError(f"The point ({x:g}, {y:g}) lies outside the {width}×{height} image.")
        checked.append((x, y, label))
    return checked


def check_image(image_rgb: np.ndarray) -> np.ndarray:
    """The rendered RGB pixels as (H, W, 3) uint8; a grey (H, W) image is repeated to RGB."""
    image = np.asarray(image_rgb)
    if image.ndim == 2:
        image = np.repeat(image[:, :, np.newaxis], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise SegmenterError(f"The segmenter needs an (H, W, 3) RGB image, not an array shaped {image.shape}.")
    if image.dtype != np.uint8:
        raise SegmenterError(f"The segmenter needs the rendered uint8 pixels, not {image.dtype} values.")
    return image


def mask_box(mask: np.ndarray, margin: float = 0.0) -> Box | None:
    """The bounding box (x1, y1, x2, y2, pixel edges) of a mask, grown by ``margin`` pixels; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    height, width = mask.shape
    return (
        max(cols[0] - margin, 0.0),
        max(rows[0] - margin, 0.0),
        min(cols[-1] + 1 + margin, float(width)),
        min(rows[-1] + 1 + margin, float(height)),
    )
