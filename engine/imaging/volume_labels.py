"""Masks in a volume's planes, both ways: a stack-frame mask cut along any plane, and a mask
drawn on a plane put back on the stack's frames.

Why a separate module: masks are labels, so they are sampled by nearest neighbour at the same
display pixel centres ``Volume.plane_pixels`` samples (a linear blend of 0 and 1 is no label),
and a plane mask goes back voxel by voxel through ``Volume.display_to_voxel``, the mapping the
crosshair and the measurements use. Label volumes are cropped to the mask's bounding box, so a
small lesion in a 512 x 512 x 400 CT costs kilobytes, not a 100 MB boolean volume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .volume import AxisMap, Plane, Volume


@dataclass(frozen=True)
class LabelVolume:
    """A mask as a boolean (slice, row, column) block of the volume, starting at ``offset``."""

    offset: tuple[int, int, int]
    data: np.ndarray  # bool, the mask's bounding box in the volume's slice order

    @property
    def empty(self) -> bool:
        return not self.data.size


def label_volume(volume: Volume, arrays: Mapping[int, np.ndarray]) -> LabelVolume:
    """``{stack frame: bool (rows, columns)}`` as a LabelVolume; frames outside the volume are
    left out (a mask on a localizer frame does not belong to the volume's grid)."""
    slice_of = {frame: k for k, frame in enumerate(volume.geometry.frame_indices)}
    placed = {slice_of[f]: np.asarray(a, dtype=bool) for f, a in arrays.items() if f in slice_of and np.any(a)}
    if not placed:
        return LabelVolume((0, 0, 0), np.zeros((0, 0, 0), dtype=bool))
    rows = np.flatnonzero(np.any([a.any(axis=1) for a in placed.values()], axis=0))
    cols = np.flatnonzero(np.any([a.any(axis=0) for a in placed.values()], axis=0))
    k0, k1 = min(placed), max(placed)
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    data = np.zeros((k1 - k0 + 1, r1 - r0, c1 - c0), dtype=bool)
    for k, array in placed.items():
        data[k - k0] = array[r0:r1, c0:c1]
    return LabelVolume((k0, r0, c0), data)


def nearest_sampling(axis: AxisMap) -> np.ndarray:
    """The voxel nearest each display pixel centre along one screen axis (the centres
    ``AxisMap.sampling`` interpolates between)."""
    n = len(axis.centres_mm)
    return np.clip(np.rint(axis.to_index(np.arange(axis.n_pixels) + 0.5)), 0, n - 1).astype(np.intp)


def plane_labels(volume: Volume, labels: LabelVolume, plane: Plane | str, index: int) -> np.ndarray | None:
    """The mask on one plane slice at display size (height, width), or None where it has no pixels."""
    axes = volume.axes(plane)
    fixed = axes.fixed_axis
    local = index - labels.offset[fixed]
    if labels.empty or not 0 <= local < labels.data.shape[fixed]:
        return None
    cut = np.take(labels.data, local, axis=fixed)
    if axes.u.volume_axis < axes.v.volume_axis:
        cut = cut.T  # rows along v, columns along u, as in plane_pixels
    u = nearest_sampling(axes.u) - labels.offset[axes.u.volume_axis]
    v = nearest_sampling(axes.v) - labels.offset[axes.v.volume_axis]
    u_in = (u >= 0) & (u < cut.shape[1])
    v_in = (v >= 0) & (v < cut.shape[0])
    out = np.zeros((axes.height, axes.width), dtype=bool)
    out[np.ix_(v_in, u_in)] = cut[np.ix_(v[v_in], u[u_in])]
    return out if out.any() else None


def plane_mask_to_frames(volume: Volume, plane: Plane | str, index: int, mask: np.ndarray) -> dict[int, np.ndarray]:
    """A mask drawn on a plane slice (display pixels) -> ``{stack frame: bool (rows, columns)}``.

    Each display pixel inside sets the voxel its centre falls in, so the result spreads over the
    frames the plane crosses (a coronal mask is one row of voxels on many frames).
    """
    ys, xs = np.nonzero(np.asarray(mask, dtype=bool))
    if not len(xs):
        return {}
    voxel = volume.display_to_voxel(plane, float(index), xs + 0.5, ys + 0.5)
    shape = np.asarray(volume.geometry.shape) - 1
    k, r, c = np.clip(np.rint(voxel), 0, shape).astype(np.intp).T
    _, rows, columns = volume.geometry.shape
    frames: dict[int, np.ndarray] = {}
    for slice_index in np.unique(k):
        here = k == slice_index
        array = np.zeros((rows, columns), dtype=bool)
        array[r[here], c[here]] = True
        frames[volume.geometry.frame_indices[int(slice_index)]] = array
    return frames
