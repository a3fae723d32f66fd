"""The segmentation job the inference worker runs: a box (and points) on the pixels as displayed
to a mask, optionally carried through a range of slices.

Kept apart from worker.py so that the worker stays a dispatcher; everything here runs on the
inference thread, and engine.segmentation (torch, transformers) is imported only there, on the
first job, so the window opens without it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.imaging import Window


@dataclass(frozen=True, eq=False)
class SegmentJob:
    """One prompt on the shown frame (``image``: its rendered RGB pixels, as displayed).

    ``key`` names the pixels (stack key + frame + window + plane): the worker caches the image
    embedding under it, so a second prompt on the same slice costs only the decoder. With
    ``frames`` (first, last) the mask is propagated through that range; ``slices`` gives each
    frame's rendered pixels on demand (called on the worker thread). ``neighbours`` names the
    frames whose embeddings the worker computes afterwards when it is idle, (frame, key) each, their
    pixels from ``slices``: the next prompt there costs only the decoder.
    """

    image: np.ndarray  # (H, W, 3) uint8
    key: str
    frame: int
    box: tuple[float, float, float, float] | None
    model_dir: str
    device: str = "auto"
    dtype: str = "auto"
    points: tuple[tuple[float, float, int], ...] = ()
    window: Window | None = None
    frames: tuple[int, int] | None = None
    slices: Callable[[int], np.ndarray] | None = None
    key_of: Callable[[int], str] | None = None
    neighbours: tuple[tuple[int, str], ...] = ()
    measure: Callable[[dict[int, np.ndarray]], tuple] | None = None  # the masks' values, on the worker


@dataclass(frozen=True)
class SegmentOutcome:
    """What comes back to the GUI: plain data only (bool arrays by frame index, scores)."""

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    model_id: str = ""
    cancelled: bool = False
    values: tuple | None = None  # the masks' measurements when the job computed them (a volume)


class SegmenterHolder:
    """The loaded segmenter, kept between jobs and replaced when the chosen folder changes."""

    def __init__(self) -> None:
        self.segmenter = None
        self._key: tuple[str, str, str] | None = None

    def get(self, job: SegmentJob, on_state: Callable[[str, str], None]):
        return self.load(job.model_dir, job.device, job.dtype, on_state)

    def load(self, model_dir: str, device: str, dtype: str, on_state: Callable[[str, str], None]):
        """The segmenter of ``model_dir``, loaded on first use (a prompt's job and a ``seg``
        pre-annotation run share it, so the weights are in memory once)."""
        from engine.segmentation import SegmenterError, load_segmenter

        if not model_dir:
            raise SegmenterError(
                "No segmentation model is chosen (Assistant > Choose segmentation model…): a SAM or MedSAM folder."
            )
        key = (model_dir, device, dtype)
        if self.segmenter is None or self._key != key:
            self.segmenter = None
            on_state("loading", f"segmentation model from {model_dir}")
            self.segmenter = load_segmenter(model_dir, device=device, dtype=dtype)
            self._key = key
            import_measurement_modules()
        return self.segmenter

    def unload(self) -> None:
        self.segmenter = self._key = None


def import_measurement_modules() -> None:
    """Import what the GUI thread's measurements of an answer use (scipy.ndimage, scipy.spatial),
    here on the worker: imported on the GUI thread at the first answer they froze the window for
    110–460 ms (bench/bench_gui_responsiveness.py --segmentation-only)."""
    import scipy.ndimage
    import scipy.spatial  # noqa: F401


@dataclass(frozen=True)
class Prefetch:
    """One neighbour's embedding to compute when the worker is idle (never before a queued job)."""

    key: str
    pixels: Callable[[], np.ndarray]


def prefetches(job: SegmentJob) -> list[Prefetch]:
    """The idle work a finished single-frame job leaves: its neighbours' embeddings."""
    if job.frames is not None or job.slices is None:
        return []
    slices = job.slices
    return [Prefetch(key, lambda index=index: slices(index)) for index, key in job.neighbours]


def prefetch_one(holder: SegmenterHolder, item: Prefetch) -> bool:
    """Embed one neighbour into the loaded segmenter's cache; False when there is nothing to do it
    with (no model loaded, or already cached). Best effort: a frame that cannot be rendered is
    skipped, the prompt there will say why."""
    segmenter = holder.segmenter
    if segmenter is None or segmenter.cached(item.key):
        return False
    try:
        segmenter.embed(item.pixels(), key=item.key)
    except Exception:  # noqa: BLE001 - a prefetch never fails anything: the user's prompt will
        return False
    return True


def run_segment_job(
    holder: SegmenterHolder,
    job: SegmentJob,
    cancel: threading.Event,
    on_state: Callable[[str, str], None],
    on_progress: Callable[[int, int], None],
) -> SegmentOutcome:
    """Segment (or propagate); raises SegmenterError with one sentence for bad input."""
    from engine.segmentation import propagate

    segmenter = holder.get(job, on_state)
    model_id = segmenter.info.model_id
    if cancel.is_set():
        return SegmentOutcome(model_id=model_id, cancelled=True)
    on_state("busy", f"segmenting with {model_id}")
    try:
        if job.frames is None or job.slices is None:
            segmenter.embed(job.image, key=job.key)
            result = segmenter.segment(job.key, job.box, job.points)
            masks = {} if result.empty else {job.frame: result.mask}
            return SegmentOutcome(masks, {job.frame: result.score}, model_id)

        def pixels(index: int) -> np.ndarray:
            return job.image if index == job.frame else job.slices(index)

        run = propagate(
            segmenter,
            pixels,
            job.frame,
            job.frames,
            box=job.box,
            points=job.points,
            key_of=job.key_of,
            progress=on_progress,
            cancel=cancel,
        )
        masks = dict(run.masks)
        # A volume is built from every slice: seconds on a long series, so here and not on the GUI thread.
        values = job.measure(masks) if job.measure is not None and masks else None
        return SegmentOutcome(masks, dict(run.scores), model_id, run.cancelled, values)
    finally:
        on_state("ready", f"segmentation: {model_id}")
