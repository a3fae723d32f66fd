"""The plane of a volume that shows the series' own slices, and its link to the stack's frames.

One of the three planes holds the slice axis fixed (axial for an axial CT): each of its slices is
an original frame, only laid out in the radiological convention (possibly flipped, transposed or
resampled to square pixels). What is drawn there is a drawing on that frame, so it is stored in
the frame's own pixel coordinates (no ``PlanePlacement``) and the single view shows it on that
frame; and the slice number shown there is the frame's number, the one the slider shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.imaging import Frame, Plane, Volume, frame_from_array

Points = tuple[tuple[float, float], ...]


def native_plane(volume: Volume) -> Plane:
    """The plane whose slices are the series' frames (its fixed axis is the slice axis)."""
    return next(plane for plane in Plane if volume.axes(plane).fixed_axis == 0)


def frame_of_slice(volume: Volume, index: int) -> int:
    """The stack frame shown at ``index`` of the native plane."""
    return volume.geometry.frame_indices[index]


def slice_of_frame(volume: Volume, frame: int) -> int | None:
    """The native plane index that shows stack frame ``frame`` (None: not part of the volume)."""
    indices = volume.geometry.frame_indices
    return indices.index(frame) if frame in indices else None


def display_to_pixel(volume: Volume, index: int, points: Sequence[Sequence[float]]) -> Points:
    """Display points of the native plane -> the frame's pixel coordinates (pixel centres at +0.5)."""
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    voxel = volume.display_to_voxel(native_plane(volume), index, xy[:, 0], xy[:, 1])
    return tuple((float(v[2] + 0.5), float(v[1] + 0.5)) for v in voxel)


def pixel_to_display(volume: Volume, index: int, points: Sequence[Sequence[float]]) -> Points:
    """The frame's pixel coordinates -> display points of the native plane at ``index``."""
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    voxel = np.column_stack([np.full(len(xy), float(index)), xy[:, 1] - 0.5, xy[:, 0] - 0.5])
    _, x, y = volume.voxel_to_display(native_plane(volume), voxel)
    return tuple((float(a), float(b)) for a, b in zip(x, y, strict=True))


def original_frame(volume: Volume, index: int) -> Frame:
    """The stored slice as a Frame (ROI statistics over the original pixels, not a resampling)."""
    return frame_from_array(
        np.ascontiguousarray(volume.data[index]),
        index=frame_of_slice(volume, index),
        windows=volume.windows,
        params=volume.params,
        monochrome1=volume.monochrome1,
    )
