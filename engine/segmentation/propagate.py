"""Carry a mask from a prompted slice through a range of slices, forward then back.

A SAM 2 video model (``VideoSegmenter``) carries its own memory from slice to slice and is run
by ``engine.segmentation.video``; this function hands it over with the same arguments and result.

SAM v1 and a one-slice SAM 2 have no memory across slices, so each next slice is prompted with the previous slice's
mask box (grown by a small margin, since the organ may widen); a direction stops where the mask
vanishes. Cancel is checked between slices, and what was done so far is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from engine.segmentation.errors import SegmenterError
from engine.segmentation.predictor import Segmenter
from engine.segmentation.prompts import Propagation, SliceSource, mask_box

if TYPE_CHECKING:
    from engine.segmentation.video import VideoSegmenter


def propagate(
    segmenter: Segmenter | VideoSegmenter,
    slices: SliceSource,
    start: int,
    frames: tuple[int, int],
    *,
    box: Sequence[float] | None = None,
    points: Sequence[Sequence[float]] = (),
    key_of: Callable[[int], str] | None = None,
    margin: float = 2.0,
    stop_when_empty: bool = True,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Propagation:
    """Segment ``start`` with the prompt, then each slice up to ``frames[1]`` and down to ``frames[0]``.

    ``key_of`` names each slice's embedding for the cache (so a later prompt on a visited slice
    is instant; a video model's memory is its session instead); ``progress(done, total)`` is
    called after every slice. With ``stop_when_empty`` False the whole range is visited, an empty
    slice keeping the last box (a gap in the object).
    """
    if hasattr(segmenter, "video_model"):  # a VideoSegmenter: SAM 2's memory instead of box chaining
        return segmenter.propagate(
            slices,
            start,
            frames,
            box=box,
            points=points,
            stop_when_empty=stop_when_empty,
            progress=progress,
            cancel=cancel,
        )
    first, last = frames
    if not first <= start <= last:
        raise SegmenterError(f"The prompted slice {start} is outside the range {first}..{last} to propagate through.")
    total = last - first + 1
    result = Propagation()
    visited = [0]

    def key(index: int) -> str | None:
        return key_of(index) if key_of is not None else None

    def step(index: int, prompt_box: Sequence[float] | None, prompt_points: Sequence[Sequence[float]]) -> bool:
        """Segment one slice; False when the mask vanished (stop this direction)."""
        found = segmenter.segment(slices(index), prompt_box, prompt_points, key=key(index))
        visited[0] += 1
        if progress is not None:
            progress(visited[0], total)
        if found.empty:
            return not stop_when_empty
        result.masks[index] = found.mask
        result.scores[index] = found.score
        return True

    if not step(start, box, points):
        return result
    start_box = mask_box(result.masks[start], margin) if start in result.masks else box
    if start_box is None:
        return result  # an empty start prompted by points only: nothing to carry
    for direction, stop in ((1, last), (-1, first)):
        prompt = start_box
        index = start + direction
        while (index <= stop) if direction > 0 else (index >= stop):
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                return result
            if not step(index, prompt, ()):
                break
            if index in result.masks:
                prompt = mask_box(result.masks[index], margin)
            index += direction
    return result
