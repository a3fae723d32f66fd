"""Volumes: a DICOM series or multi-frame file as a 3-D grid in patient space, and its planes.

Geometry comes from the headers only (ImagePositionPatient / ImageOrientationPatient, per frame
for enhanced multi-frame and RT Dose grids): slices are sorted along the slice normal, the
slice spacing is measured from the positions (SliceThickness says how thick a slice is, not how
far apart slices are), and every slice keeps its own position, so a missing slice is a visible
gap with a warning rather than a silently squeezed volume. Sheared stacks (gantry tilt) are
refused in one sentence; they still open as single slices.

Voxels are the stored values, in their stored dtype, read once through ``ImageStack.frame``
(the frame API every viewer uses), so a 512x512x400 CT costs 200 MB, not 800 MB of float.
Planes are cut orthogonal to the volume axes closest to the patient axes, resampled to square
pixels (the in-plane pixel spacing) with linear interpolation along each screen axis, and
returned as a ``Frame`` that carries the series' pixel transforms, so the one display function
(``display.render``) shows a reformat exactly as it shows a slice.

Coordinates: a plane's display coordinates follow the annotation convention (0,0 is the top-left
corner of the top-left pixel, a pixel centre is at +0.5). Patient coordinates are DICOM LPS mm.
Voxel indices are (slice, row, column), fractional, a voxel centre at an integer.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import permutations
from typing import Any

import numpy as np

from .dicom_index import MAX_SIDE
from .errors import VolumeError
from .frame import Frame, PixelParams, Window, frame_from_array, modality_of
from .guard import guarded_volume
from .stack import ImageStack
from .volume_headers import FileGeometry, SliceGeometry, check_image_size, read_file_geometry, read_slice

ORIENTATION_TOLERANCE = 1e-3  # direction cosines that differ less are the same orientation
TILT_TOLERANCE_DEGREES = 0.05  # a stack sheared more than this is a gantry tilt
SPACING_TOLERANCE = 0.01  # relative: gaps within 1% of the median are regular
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # LPS: -x/+x, -y/+y, -z/+z


class Plane(StrEnum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


# Radiological display convention (OHIF, Slicer): (patient axis held fixed, screen x and y as
# (patient axis, sign)). Axial: patient left on screen right, posterior down; coronal: left
# right, inferior down; sagittal: posterior right, inferior down.
_PLANE_AXES: dict[Plane, tuple[int, tuple[int, int], tuple[int, int]]] = {
    Plane.AXIAL: (2, (0, 1), (1, 1)),
    Plane.CORONAL: (1, (0, 1), (2, -1)),
    Plane.SAGITTAL: (0, (1, 1), (2, -1)),
}


def direction_letters(direction: np.ndarray) -> str:
    """Patient direction of a vector as letters, strongest first ('L', 'LP', 'SAR'...): DICOM style."""
    order = np.argsort(-np.abs(direction))
    return "".join(_LETTERS[a][int(direction[a] > 0)] for a in order if abs(direction[a]) > 0.2) or "?"


def _extrapolating_interp(x: np.ndarray | float, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp that continues the end segments linearly (clicks outside the volume still map)."""
    x = np.asarray(x, dtype=np.float64)
    if len(xp) == 1:
        return np.full_like(x, fp[0])
    out = np.atleast_1d(np.interp(x, xp, fp))
    x1 = np.atleast_1d(x)
    low, high = x1 < xp[0], x1 > xp[-1]
    out[low] = fp[0] + (x1[low] - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    out[high] = fp[-1] + (x1[high] - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return out.reshape(x.shape)


@dataclass(frozen=True)
class VolumeGeometry:
    """Where every voxel is, from the headers alone (no pixel data)."""

    shape: tuple[int, int, int]  # (slices, rows, columns)
    row_cosine: tuple[float, float, float]  # patient direction of increasing column index
    column_cosine: tuple[float, float, float]  # patient direction of increasing row index
    row_spacing_mm: float  # between rows (PixelSpacing[0])
    column_spacing_mm: float  # between columns (PixelSpacing[1])
    slice_positions: tuple[tuple[float, float, float], ...]  # ImagePositionPatient per slice
    frame_indices: tuple[int, ...]  # ImageStack frame of each slice, in slice order
    warnings: tuple[str, ...] = ()

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cosine, self.column_cosine)

    @property
    def slice_offsets_mm(self) -> np.ndarray:
        """Each slice's distance from slice 0 along the normal (increasing)."""
        positions = np.asarray(self.slice_positions)
        return (positions - positions[0]) @ self.normal

    @property
    def slice_spacing_mm(self) -> float:
        """The median gap between neighbouring slices (the regular spacing when there is one)."""
        gaps = np.diff(self.slice_offsets_mm)
        return float(np.median(gaps)) if gaps.size else max(self.row_spacing_mm, self.column_spacing_mm)

    @property
    def regular(self) -> bool:
        gaps = np.diff(self.slice_offsets_mm)
        return bool(np.all(np.abs(gaps - self.slice_spacing_mm) <= SPACING_TOLERANCE * self.slice_spacing_mm))

    def axis_direction(self, axis: int) -> np.ndarray:
        """Patient direction of volume axis 0 (slices), 1 (rows) or 2 (columns)."""
        return np.asarray((self.normal, self.column_cosine, self.row_cosine)[axis], dtype=np.float64)

    def voxel_to_patient(self, voxel: np.ndarray) -> np.ndarray:
        """(slice, row, column), fractional, -> patient LPS mm; works on (..., 3) arrays."""
        voxel = np.asarray(voxel, dtype=np.float64)
        offsets = self.slice_offsets_mm
        along = _extrapolating_interp(voxel[..., 0], np.arange(len(offsets), dtype=np.float64), offsets)
        origin = np.asarray(self.slice_positions[0], dtype=np.float64)
        return (
            origin
            + along[..., None] * self.normal
            + (voxel[..., 1] * self.row_spacing_mm)[..., None] * np.asarray(self.column_cosine)
            + (voxel[..., 2] * self.column_spacing_mm)[..., None] * np.asarray(self.row_cosine)
        )

    def patient_to_voxel(self, point: np.ndarray) -> np.ndarray:
        """Patient LPS mm -> (slice, row, column), fractional (the inverse of voxel_to_patient)."""
        delta = np.asarray(point, dtype=np.float64) - np.asarray(self.slice_positions[0])
        offsets = self.slice_offsets_mm
        k = _extrapolating_interp(delta @ self.normal, offsets, np.arange(len(offsets), dtype=np.float64))
        r = (delta @ np.asarray(self.column_cosine)) / self.row_spacing_mm
        c = (delta @ np.asarray(self.row_cosine)) / self.column_spacing_mm
        return np.stack([k, r, c], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts (``main.py info --json``)."""
        n, rows, columns = self.shape
        return {
            "dimensions": {"columns": columns, "rows": rows, "slices": n},
            "spacing_mm": {
                "column": self.column_spacing_mm,
                "row": self.row_spacing_mm,
                "slice": self.slice_spacing_mm,
            },
            "slice_spacing_from": "ImagePositionPatient",
            "regular_spacing": self.regular,
            "orientation": [*self.row_cosine, *self.column_cosine],
            "normal": [float(v) for v in self.normal],
            "first_position": list(self.slice_positions[0]),
            "last_position": list(self.slice_positions[-1]),
            "slice_offsets_mm": [round(float(v), 4) for v in self.slice_offsets_mm],
            "planes": {
                plane.value: {
                    "slices": axes.n_positions,
                    "width": axes.width,
                    "height": axes.height,
                    "pixel_mm": axes.pixel_mm,
                }
                for plane, axes in ((p, plane_axes(self, p)) for p in Plane)
            },
            "warnings": list(self.warnings),
        }


def volume_geometry(stack: ImageStack) -> VolumeGeometry:
    """The geometry of a stack read as a volume; VolumeError says why it is not one.

    Every header value is read through volume_headers (checked: finite, the right count, in
    range) and the rest runs under `guarded_volume`, so the MPR view, which calls this on the GUI
    thread, and the CLI only ever see a VolumeError naming the file and the attribute.
    """
    if stack.kind != "dicom":
        raise VolumeError(f"{stack.title} is not DICOM, so it has no patient geometry.")
    if stack.is_color:
        raise VolumeError(f"{stack.title} is a colour image; volumes are built from grey-scale slices.")
    with guarded_volume(_stack_label(stack)):
        files = _read_files(stack)
        if stack.n_frames < 2:
            raise VolumeError(f"{stack.title} has one slice; a volume needs at least two.")
        check_image_size(os.path.basename(stack.paths[0]), stack.rows, stack.columns)
        slices, labels = _read_slices(stack, files)
        geometry = _geometry_of(stack, slices, labels)
        _check_plane_sizes(stack, geometry, labels)
        return geometry


def _stack_label(stack: ImageStack) -> str:
    """How stack-wide messages name the files: the file, or the series and its first file."""
    first = os.path.basename(stack.paths[0]) if stack.paths else stack.title
    return first if len(stack.paths) <= 1 else f"{stack.title} ({first} and {len(stack.paths) - 1} other files)"


def _read_files(stack: ImageStack) -> dict[str, FileGeometry]:
    """Each file's checked frame count, functional groups and frame offsets, read once."""
    sources = [stack.frame_source(index) for index in range(stack.n_frames)]
    frames_per_file = Counter(source.path for source in sources)
    files: dict[str, FileGeometry] = {}
    for index, source in enumerate(sources):
        if source.path not in files:
            files[source.path] = read_file_geometry(source.path, stack.header(index), frames_per_file[source.path])
    return files


def _read_slices(stack: ImageStack, files: dict[str, FileGeometry]) -> tuple[list[SliceGeometry], list[str]]:
    """Every frame's checked geometry, in stack order, and how messages name each frame."""
    slices, labels = [], []
    for index in range(stack.n_frames):
        source = stack.frame_source(index)
        file = files[source.path]
        slices.append(read_slice(file, source.frame_number - 1))
        labels.append(file.label(source.frame_number - 1))
    return slices, labels


def _geometry_of(stack: ImageStack, slices: list[SliceGeometry], labels: list[str]) -> VolumeGeometry:
    """Sort checked slices along the normal; refuse mixed stacks, shared positions and tilt."""
    orientation = slices[0].orientation
    for k, piece in enumerate(slices):
        if np.max(np.abs(piece.orientation - orientation)) > ORIENTATION_TOLERANCE:
            raise VolumeError(
                f"{labels[k]}: ImageOrientationPatient differs from that of {labels[0]} (a localizer or "
                "several stacks in one series), so the slices do not form one volume."
            )
    spacing = slices[0].spacing
    for k, piece in enumerate(slices):
        if max(abs(piece.spacing[0] - spacing[0]), abs(piece.spacing[1] - spacing[1])) > 1e-4:
            raise VolumeError(
                f"{labels[k]}: {piece.spacing_source} {piece.spacing[0]:g} x {piece.spacing[1]:g} mm differs from "
                f"{slices[0].spacing_source} {spacing[0]:g} x {spacing[1]:g} mm in {labels[0]}, so the slices do not "
                "form one volume."
            )
    positions = [piece.position for piece in slices]
    row_cosine, column_cosine = orientation[:3], orientation[3:]
    normal = np.cross(row_cosine, column_cosine)
    along = np.array([p @ normal for p in positions])
    order = np.argsort(along, kind="stable")
    along = along[order]
    gaps = np.diff(along)
    duplicates = int(np.sum(gaps < 1e-3))
    if duplicates:
        first = int(np.flatnonzero(gaps < 1e-3)[0])
        raise VolumeError(
            f"{stack.title}: {duplicates + 1} or more slices share a position ({labels[order[first]]} and "
            f"{labels[order[first + 1]]} by ImagePositionPatient: several time points, echoes or stacks in one "
            "series), so they do not form one volume."
        )
    shift = positions[order[-1]] - positions[order[0]]
    in_plane = shift - normal * (shift @ normal)
    tilt = math.degrees(math.atan2(float(np.linalg.norm(in_plane)), float(shift @ normal)))
    if tilt > TILT_TOLERANCE_DEGREES:
        raise VolumeError(
            f"{stack.title} is sheared by {tilt:.1f}° (gantry tilt) between the ImagePositionPatient of "
            f"{labels[order[0]]} and {labels[order[-1]]}; ClinLens does not build volumes "
            "from tilted stacks yet, so the slices are shown one by one."
        )
    return VolumeGeometry(
        shape=(stack.n_frames, stack.rows, stack.columns),
        row_cosine=tuple(float(v) for v in row_cosine),
        column_cosine=tuple(float(v) for v in column_cosine),
        row_spacing_mm=spacing[0],
        column_spacing_mm=spacing[1],
        slice_positions=tuple(tuple(float(v) for v in positions[i]) for i in order),
        frame_indices=tuple(int(i) for i in order),
        warnings=_spacing_warnings(gaps),
    )


def _spacing_warnings(gaps: np.ndarray) -> tuple[str, ...]:
    """The irregular-spacing warning (a missing slice?), or none for a regular stack."""
    median = float(np.median(gaps))
    irregular = np.flatnonzero(np.abs(gaps - median) > SPACING_TOLERANCE * median)
    if not irregular.size:
        return ()
    first = int(irregular[0])
    missing = " (a missing slice?)" if gaps[first] > 1.5 * median else ""
    more = f" and {irregular.size - 1} other gap(s)" if irregular.size > 1 else ""
    warning = (
        f"Irregular slice spacing: {gaps[first]:.2f} mm between slices {first + 1} and {first + 2}"
        f"{missing}{more}, against {median:.2f} mm elsewhere; planes are resampled from each "
        "slice's own position."
    )
    return (warning,)


def _check_plane_sizes(stack: ImageStack, geometry: VolumeGeometry, labels: list[str]) -> None:
    """Refuse planes larger than an image may be: positions far apart with small pixels (a
    damaged ImagePositionPatient or PixelSpacing) would otherwise ask for gigabytes per plane."""
    for plane in Plane:
        axes = plane_axes(geometry, plane)
        if max(axes.width, axes.height) > MAX_SIDE:
            span = float(geometry.slice_offsets_mm[-1])
            first, last = labels[geometry.frame_indices[0]], labels[geometry.frame_indices[-1]]
            raise VolumeError(
                f"{stack.title}: the {plane.value} plane would be {axes.width} x {axes.height} pixels, more than "
                f"{MAX_SIDE} a side (ImagePositionPatient spans {span:g} mm from {first} to {last}, PixelSpacing "
                f"is {geometry.row_spacing_mm:g} x {geometry.column_spacing_mm:g} mm)."
            )


@dataclass(frozen=True)
class AxisMap:
    """One screen axis of a plane: which volume axis it runs along, resampled to square pixels.

    Display coordinate ``t`` (pixel edges, 0..n_pixels) <-> physical mm ``m`` from the first voxel
    centre along the axis <-> fractional voxel index (through the per-slice positions).
    """

    volume_axis: int
    centres_mm: tuple[float, ...]  # each voxel centre, mm from voxel 0
    voxel_mm: float  # (median) voxel size along the axis
    pixel_mm: float  # display pixel size
    flip: bool

    @property
    def extent_mm(self) -> float:
        return self.centres_mm[-1] - self.centres_mm[0] + self.voxel_mm

    @property
    def n_pixels(self) -> int:
        return max(1, round(self.extent_mm / self.pixel_mm))

    def to_index(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        half = self.voxel_mm / 2
        mm = (self.extent_mm - half) - t * self.pixel_mm if self.flip else t * self.pixel_mm - half
        centres = np.asarray(self.centres_mm)
        return _extrapolating_interp(mm, centres, np.arange(len(centres), dtype=np.float64))

    def to_display(self, index: np.ndarray | float) -> np.ndarray:
        centres = np.asarray(self.centres_mm)
        mm = _extrapolating_interp(
            np.asarray(index, dtype=np.float64), np.arange(len(centres), dtype=np.float64), centres
        )
        half = self.voxel_mm / 2
        return ((self.extent_mm - half) - mm) / self.pixel_mm if self.flip else (mm + half) / self.pixel_mm

    def sampling(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | np.ndarray:
        """Source voxels of every display pixel centre: an index array when no voxel is split,
        else (lower index, upper index, weight of the upper)."""
        n = len(self.centres_mm)
        index = np.clip(self.to_index(np.arange(self.n_pixels) + 0.5), 0, n - 1)
        nearest = np.rint(index)
        if np.all(np.abs(index - nearest) < 1e-6):
            return nearest.astype(np.intp)
        lower = np.floor(index).astype(np.intp)
        upper = np.minimum(lower + 1, n - 1)
        return lower, upper, (index - lower).astype(np.float32)


@dataclass(frozen=True)
class PlaneAxes:
    """How one plane (axial, coronal, sagittal) is cut from a volume and laid out on screen."""

    plane: Plane
    fixed_axis: int  # the volume axis held fixed: its index is the plane's slice number
    n_positions: int  # how many planes there are along it
    u: AxisMap  # screen x
    v: AxisMap  # screen y
    letters: dict[str, str]  # "left", "right", "top", "bottom" -> patient direction letters

    @property
    def width(self) -> int:
        return self.u.n_pixels

    @property
    def height(self) -> int:
        return self.v.n_pixels

    @property
    def pixel_mm(self) -> float:
        return self.u.pixel_mm


def _axis_assignment(geometry: VolumeGeometry) -> dict[int, int]:
    """Patient axis -> the volume axis closest to it (one each, best total alignment)."""
    alignment = np.abs(np.array([geometry.axis_direction(a) for a in range(3)]))  # [volume axis, patient axis]
    best = max(permutations(range(3)), key=lambda p: sum(alignment[p[i], i] for i in range(3)))
    return dict(enumerate(best))


def plane_axes(geometry: VolumeGeometry, plane: Plane | str) -> PlaneAxes:
    plane = Plane(plane)
    fixed_patient, (u_patient, u_sign), (v_patient, v_sign) = _PLANE_AXES[plane]
    volume_axis = _axis_assignment(geometry)
    pixel_mm = min(geometry.row_spacing_mm, geometry.column_spacing_mm)

    def axis_map(patient_axis: int, sign: int) -> AxisMap:
        axis = volume_axis[patient_axis]
        if axis == 0:
            centres = tuple(float(v) for v in geometry.slice_offsets_mm)
            voxel = geometry.slice_spacing_mm
        else:
            voxel = geometry.row_spacing_mm if axis == 1 else geometry.column_spacing_mm
            centres = tuple(i * voxel for i in range(geometry.shape[axis]))
        flip = geometry.axis_direction(axis)[patient_axis] * sign < 0
        return AxisMap(axis, centres, voxel, pixel_mm, bool(flip))

    u, v = axis_map(u_patient, u_sign), axis_map(v_patient, v_sign)
    u_dir = geometry.axis_direction(u.volume_axis) * (-1 if u.flip else 1)
    v_dir = geometry.axis_direction(v.volume_axis) * (-1 if v.flip else 1)
    letters = {
        "right": direction_letters(u_dir),
        "left": direction_letters(-u_dir),
        "bottom": direction_letters(v_dir),
        "top": direction_letters(-v_dir),
    }
    fixed = volume_axis[fixed_patient]
    return PlaneAxes(plane, fixed, geometry.shape[fixed], u, v, letters)


@dataclass(eq=False)
class Volume:
    """Stored voxel values (slices, rows, columns) with their geometry and pixel transforms."""

    geometry: VolumeGeometry
    data: np.ndarray
    params: PixelParams
    windows: tuple[Window, ...]
    monochrome1: bool
    title: str = ""
    _axes: dict[Plane, PlaneAxes] = field(default_factory=dict, repr=False)
    _sampling: dict[Plane, tuple[Any, Any]] = field(default_factory=dict, repr=False)
    _stored_range: tuple[int, int] | None = field(default=None, repr=False)

    def axes(self, plane: Plane | str) -> PlaneAxes:
        plane = Plane(plane)
        if plane not in self._axes:
            self._axes[plane] = plane_axes(self.geometry, plane)
        return self._axes[plane]

    def plane_pixels(self, plane: Plane | str, index: int) -> np.ndarray:
        """The stored values of one plane at display aspect, (height, width), in the stored dtype."""
        axes = self.axes(plane)
        if not 0 <= index < axes.n_positions:
            raise IndexError(f"{axes.plane.value} slice {index} out of range 0..{axes.n_positions - 1}")
        if axes.plane not in self._sampling:
            self._sampling[axes.plane] = (axes.u.sampling(), axes.v.sampling())
        u_sampling, v_sampling = self._sampling[axes.plane]
        cut = self.data[(slice(None),) * axes.fixed_axis + (index,)]
        if axes.u.volume_axis < axes.v.volume_axis:
            cut = cut.T  # rows of `cut` along v, columns along u
        out = _resample(_resample(cut, v_sampling, axis=0), u_sampling, axis=1)
        if out.dtype != self.data.dtype:
            if self.data.dtype.kind in "iu":
                out = np.rint(out, out=out)
            out = out.astype(self.data.dtype)
        return np.ascontiguousarray(out)

    def plane_frame(self, plane: Plane | str, index: int) -> Frame:
        """One plane as a Frame for ``display.render``: same transforms and windows as the slices."""
        frame = frame_from_array(
            self.plane_pixels(plane, index),
            index=index,
            windows=self.windows,
            params=self.params,
            monochrome1=self.monochrome1,
        )
        if self.data.dtype.kind in "iu":  # one display LUT domain for every plane of the volume
            frame._memo["stored_range"] = self.stored_range
        return frame

    @property
    def stored_range(self) -> tuple[int, int]:
        if self._stored_range is None:
            self._stored_range = (int(self.data.min()), int(self.data.max()))
        return self._stored_range

    def modality_values(self, stored: np.ndarray) -> np.ndarray:
        """Float64 modality values (HU for CT) of some stored voxels: computed per request, never kept."""
        return modality_of(stored, self.params)

    # --- coordinates -------------------------------------------------------------------
    def display_to_voxel(
        self, plane: Plane | str, index: float, x: np.ndarray | float, y: np.ndarray | float
    ) -> np.ndarray:
        """Display point(s) of a plane -> fractional (slice, row, column)."""
        axes = self.axes(plane)
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        voxel = np.empty((*x.shape, 3))
        voxel[..., axes.fixed_axis] = index
        voxel[..., axes.u.volume_axis] = axes.u.to_index(x)
        voxel[..., axes.v.volume_axis] = axes.v.to_index(y)
        return voxel

    def voxel_to_display(self, plane: Plane | str, voxel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fractional voxel(s) -> (plane slice index, x, y) in that plane's display coordinates."""
        axes = self.axes(plane)
        voxel = np.asarray(voxel, dtype=np.float64)
        return (
            voxel[..., axes.fixed_axis],
            axes.u.to_display(voxel[..., axes.u.volume_axis]),
            axes.v.to_display(voxel[..., axes.v.volume_axis]),
        )

    def display_to_patient(
        self, plane: Plane | str, index: float, x: np.ndarray | float, y: np.ndarray | float
    ) -> np.ndarray:
        return self.geometry.voxel_to_patient(self.display_to_voxel(plane, index, x, y))

    def patient_to_display(self, plane: Plane | str, point: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.voxel_to_display(plane, self.geometry.patient_to_voxel(point))

    def crossings(self, plane: Plane | str, index: int, points_mm: np.ndarray, closed: bool) -> tuple[np.ndarray, bool]:
        """Where a patient-space outline meets one plane slice: (display points, lies in it).

        When every point is within half a slice of the plane the outline lies in it and all its
        points come back in display coordinates; otherwise the points where its segments cross
        the plane (two for a closed shape cut through, one per crossing of an open line).
        """
        s, x, y = self.patient_to_display(plane, np.asarray(points_mm, dtype=np.float64))
        depth = s - index
        if np.all(np.abs(depth) <= 0.5):
            return np.stack([x, y], axis=-1), True
        n = len(depth)
        pairs = [(i, (i + 1) % n) for i in range(n if closed and n > 2 else n - 1)]
        hits = []
        for i, j in pairs:
            if depth[i] == depth[j] or depth[i] * depth[j] > 0:
                continue
            t = depth[i] / (depth[i] - depth[j])
            hits.append((x[i] + t * (x[j] - x[i]), y[i] + t * (y[j] - y[i])))
        return np.asarray(hits, dtype=np.float64).reshape(-1, 2), False

    def nearest_frame(self, voxel: np.ndarray) -> int:
        """The ImageStack frame of the slice nearest a voxel (annotations bind to a real file)."""
        k = int(np.clip(np.rint(np.asarray(voxel)[0]), 0, len(self.geometry.frame_indices) - 1))
        return self.geometry.frame_indices[k]


def _resample(values: np.ndarray, sampling: Any, axis: int) -> np.ndarray:
    """Linear resampling along one axis with precomputed (lower, upper, weight) or a plain gather."""
    if isinstance(sampling, np.ndarray):
        if len(sampling) == values.shape[axis] and np.array_equal(sampling, np.arange(len(sampling))):
            return values  # already at display spacing along this axis
        return np.take(values, sampling, axis=axis)
    lower, upper, weight = sampling
    a = np.take(values, lower, axis=axis).astype(np.float32, copy=False)
    b = np.take(values, upper, axis=axis).astype(np.float32, copy=False)
    w = weight[:, None] if axis == 0 else weight[None, :]
    b -= a
    b *= w
    a += b
    return a


def iter_load_volume(stack: ImageStack) -> Generator[tuple[int, int], None, Volume]:
    """Decode every slice once into one array of stored values, yielding (done, total) per slice.

    A generator so that a GUI worker can report progress and stop between slices; its return
    value is the Volume. VolumeError when the stack is not a volume. Slices whose pixel
    transforms differ (PET rescale per slice) are refused: one stored array cannot carry them
    without a float copy.
    """
    geometry = volume_geometry(stack)
    data: np.ndarray | None = None
    first: Frame | None = None
    total = len(geometry.frame_indices)
    for k, frame_index in enumerate(geometry.frame_indices):
        frame = stack.frame(frame_index)
        if first is None:
            first = frame
            data = np.empty(geometry.shape, dtype=frame.stored.dtype)
        elif frame.pixel_params != first.pixel_params or frame.stored.dtype != data.dtype:
            raise VolumeError(
                f"{stack.title}: slice {k + 1} has other pixel transforms (rescale or dtype) than "
                "slice 1, so the slices cannot share one volume of stored values."
            )
        if frame.stored.shape != geometry.shape[1:]:
            name = os.path.basename(stack.frame_source(frame_index).path)
            raise VolumeError(
                f"{name}: slice {k + 1} decoded as {frame.stored.shape[1]} x {frame.stored.shape[0]} pixels, but Rows "
                f"and Columns of the series say {geometry.shape[2]} x {geometry.shape[1]}."
            )
        data[k] = frame.stored
        yield k + 1, total
    assert first is not None and data is not None
    return Volume(geometry, data, first.pixel_params, first.windows, first.monochrome1, stack.title)


def load_volume(stack: ImageStack, *, progress: Callable[[int, int], None] | None = None) -> Volume:
    """``iter_load_volume`` run to the end (scripts, the CLI, tests)."""
    steps = iter_load_volume(stack)
    while True:
        try:
            done, total = next(steps)
        except StopIteration as finished:
            return finished.value
        if progress is not None:
            progress(done, total)
