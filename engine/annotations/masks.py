"""Turning segmentation results into mask annotations bound to an image, and checking they fit.

The segmentation engine hands over ``{frame_index: bool array (rows, columns)}``; here those
arrays become ``MaskFrame``s bound to their frame's DICOM source (SOP Instance UID and frame
number, so the mask follows a re-sorted series like a box does) and are checked against the
image's frame count and size, so a mask in the document always fits its image.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engine.annotations.image_ref import ImageRef
from engine.annotations.model import Mask, MaskFrame
from engine.annotations.rle import encode

FrameArrays = Mapping[int, np.ndarray]


def mask_frames(ref: ImageRef, arrays: FrameArrays) -> tuple[MaskFrame, ...]:
    """Encode per-frame arrays for ``ref``; frames with nothing inside are left out.

    Raises ValueError for a frame the image does not have or an array of another size.
    """
    frames = []
    for index, array in sorted(arrays.items()):
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"a mask frame index must be an integer, got {index!r}")
        index = int(index)
        array = np.asarray(array)
        _check_frame(ref, index, tuple(array.shape))
        if not array.any():
            continue
        source = ref.frames[index]
        frames.append(
            MaskFrame(
                frame=index,
                rle=encode(array),
                sop_instance_uid=source.sop_instance_uid,
                frame_number=source.frame_number if source.sop_instance_uid else None,
            )
        )
    return tuple(frames)


def _check_frame(ref: ImageRef, index: int, shape: tuple[int, ...]) -> None:
    if not 0 <= index < ref.n_frames:
        raise ValueError(f"mask frame {index} out of range for {ref.image_id} ({ref.n_frames} frames)")
    if shape != (ref.height, ref.width):
        raise ValueError(
            f"the mask of frame {index} is {'x'.join(map(str, shape))} but the image is {ref.height}x{ref.width} "
            "(rows x columns)"
        )


def check_mask_fits(ref: ImageRef, mask: Mask) -> None:
    """ValueError when a mask lies on a frame the image lacks or has another frame size."""
    for item in mask.frames:
        _check_frame(ref, item.frame, (item.rle.rows, item.rle.columns))
