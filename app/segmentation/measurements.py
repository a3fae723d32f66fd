"""A mask's values for the document and the list: area (one frame) or volume (several), longest
diameter, and the statistics of the modality values (HU) inside.

The same measurements as ``main.py segment``; nothing in mm where the image has no pixel spacing.
A frame's statistics are milliseconds, computed on the GUI thread when the answer arrives; a
propagated mask's volume is built from every slice, so it is computed on the worker with the masks
(``SegmentJob.measure``) and comes back with them.
"""

from __future__ import annotations

import numpy as np

from engine.annotations.measure import modality_unit
from engine.annotations.model import MeasuredValue
from engine.imaging import ImageStack, VolumeError, load_volume, open_paths


def mask_measurements(stack: ImageStack, masks: dict[int, np.ndarray]) -> tuple[MeasuredValue, ...]:
    from engine.segmentation import mask_values, measure_mask, measure_slice  # scipy: on first use

    unit = modality_unit(stack.modality)
    if len(masks) > 1:
        try:
            volume = load_volume(stack)
        except VolumeError:
            return ()  # frames that make no volume: the mask is kept without measurements
        return mask_values(measure_mask(masks, volume.geometry, volume.modality_values(volume.data)), unit)
    if stack.spacing is None:
        return ()
    [(index, mask)] = masks.items()
    frame = stack.frame(index)
    values = None if frame.is_color else frame.modality_values()
    return tuple(mask_values(measure_slice(mask, stack.spacing.row_mm, stack.spacing.col_mm, values), unit))


class WorkerStack:
    """The image as a background thread's own opening of its files (the inference worker's, or the
    one measuring a brushed volume), made on first use: no stack is shared with the GUI thread,
    whose frame loader decodes concurrently."""

    def __init__(self, paths: tuple[str, ...], stack_key: str) -> None:
        self.paths, self.stack_key = paths, stack_key
        self._stack: ImageStack | None = None

    def __call__(self) -> ImageStack:
        if self._stack is None:
            stacks = {s.key: s for s in open_paths(list(self.paths)).stacks}
            self._stack = stacks.get(self.stack_key) or next(iter(stacks.values()))
        return self._stack
