"""The voxel grid of an annotated series, for the volume mask formats (NIfTI export and import).

An ``ImageRef`` only names files; the geometry (slice positions, orientation, spacing) comes
from their headers through ``engine.imaging.volume.volume_geometry``, the same code the MPR view
uses, so a NIfTI mask lands where ClinLens draws it. ``ras_affine`` is the NIfTI affine of our
voxel order (i = column, j = row, k = slice): patient LPS flipped to RAS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.annotations.image_ref import ImageRef
from engine.imaging import open_paths
from engine.imaging.volume import VolumeError, VolumeGeometry, volume_geometry

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


class GridError(ValueError):
    """The image has no regular voxel grid; ``str(err)`` is a sentence for the user."""


@dataclass(frozen=True)
class Grid:
    geometry: VolumeGeometry
    slice_frames: tuple[int, ...]  # the image's frame index of each slice, in slice order

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        slices, rows, columns = self.geometry.shape
        return columns, rows, slices

    def ras_affine(self) -> np.ndarray:
        g = self.geometry
        lps = np.eye(4)
        lps[:3, 0] = np.asarray(g.row_cosine) * g.column_spacing_mm  # i: along a row, column by column
        lps[:3, 1] = np.asarray(g.column_cosine) * g.row_spacing_mm  # j: down the rows
        lps[:3, 2] = g.normal * g.slice_spacing_mm  # k: slice by slice
        lps[:3, 3] = g.slice_positions[0]
        return RAS_FROM_LPS @ lps


def image_grid(ref: ImageRef) -> Grid:
    """Open the image's files (headers only) and return its regular voxel grid; GridError says why not."""
    if ref.kind != "dicom":
        raise GridError(f"{ref.title or ref.image_id} is not DICOM, so it has no patient geometry for NIfTI.")
    result = open_paths(list(ref.paths))
    wanted = {(f.sop_instance_uid, f.frame_number) for f in ref.frames}
    stack = next(
        (
            s
            for s in result.stacks
            if {(s.frame_source(i).sop_instance_uid, s.frame_source(i).frame_number) for i in range(s.n_frames)}
            == wanted
        ),
        None,
    )
    if stack is None:
        reason = f" ({result.errors[0].message})" if result.errors else ""
        raise GridError(f"the files of {ref.title or ref.image_id} cannot be opened as that series{reason}.")
    try:
        geometry = volume_geometry(stack)
    except VolumeError as err:
        raise GridError(str(err)) from None
    if not geometry.regular:
        raise GridError(
            f"{ref.title or ref.image_id} has irregular slice spacing, which a NIfTI affine cannot describe."
        )
    frames = []
    for stack_index in geometry.frame_indices:
        source = stack.frame_source(stack_index)
        index = ref.frame_index(source.sop_instance_uid, source.frame_number) if source.sop_instance_uid else None
        frames.append(stack_index if index is None else index)
    return Grid(geometry, tuple(frames))
