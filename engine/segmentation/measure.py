"""Measurements of a mask on its voxel geometry: area, volume, HU statistics, longest diameter.

Pure numpy/scipy so they run on the GUI thread for one slice and in tests without torch.
Why per-slice thickness: a series with a missing slice must not lose (or double) its volume,
so each slice counts half the gap to each neighbour, like the volume geometry's offsets say.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from engine.annotations.model import MeasuredValue
from engine.imaging.volume import VolumeGeometry


@dataclass(frozen=True)
class HuStats:
    """Modality values (HU for CT) over the mask."""

    mean: float
    sd: float
    minimum: float
    maximum: float
    voxels: int


@dataclass(frozen=True)
class MaskMeasurements:
    """Everything the panel shows and the measurement export writes for one 3-D mask."""

    area_mm2: dict[int, float]  # slice index -> in-plane area
    volume_ml: float
    hu: HuStats | None
    longest_diameter_mm: float
    longest_diameter_slice: int | None


def area_mm2(mask: np.ndarray, row_spacing_mm: float, column_spacing_mm: float) -> float:
    return float(np.count_nonzero(mask)) * row_spacing_mm * column_spacing_mm


def slice_thicknesses_mm(geometry: VolumeGeometry) -> np.ndarray:
    """Each slice's share of the stack's extent: half the gap to each neighbour (end slices: their one gap)."""
    offsets = geometry.slice_offsets_mm
    if offsets.size < 2:
        return np.full(offsets.size, geometry.slice_spacing_mm)
    gaps = np.diff(offsets)
    before = np.concatenate([[gaps[0]], gaps])
    after = np.concatenate([gaps, [gaps[-1]]])
    return (before + after) / 2


def volume_ml(masks: Mapping[int, np.ndarray] | np.ndarray, geometry: VolumeGeometry) -> float:
    """Volume of a mask given per slice (slice index -> (rows, columns)) or as (slices, rows, columns)."""
    thickness = slice_thicknesses_mm(geometry)
    pixel = geometry.row_spacing_mm * geometry.column_spacing_mm
    total = sum(float(np.count_nonzero(m)) * pixel * thickness[k] for k, m in _by_slice(masks).items())
    return total / 1000.0


def hu_stats(mask: np.ndarray, values: np.ndarray) -> HuStats | None:
    """Mean, SD (population), min and max of ``values`` where ``mask`` is set; None for an empty mask."""
    picked = np.asarray(values, dtype=np.float64)[np.asarray(mask, dtype=bool)]
    if picked.size == 0:
        return None
    return HuStats(float(picked.mean()), float(picked.std()), float(picked.min()), float(picked.max()), picked.size)


def longest_diameter_mm(mask: np.ndarray, row_spacing_mm: float, column_spacing_mm: float) -> float:
    """The largest distance between two pixel centres of the mask, in mm (0 for one pixel).

    The farthest pair lies on the convex hull of the boundary pixels, so only hull vertices are
    compared: exact and fast even for a large organ.
    """
    from scipy import ndimage
    from scipy.spatial import ConvexHull, QhullError

    mask = np.asarray(mask, dtype=bool)
    boundary = mask & ~ndimage.binary_erosion(mask)
    rows, cols = np.nonzero(boundary)
    if rows.size < 2:
        return 0.0
    points = np.column_stack([rows * row_spacing_mm, cols * column_spacing_mm])
    with contextlib.suppress(QhullError, ValueError):  # collinear or too few points: compare them all
        points = points[ConvexHull(points).vertices]
    if len(points) > 4000:  # degenerate hull of a huge line: its two ends are enough
        order = np.lexsort(points.T[::-1])
        points = points[[order[0], order[-1]]]
    diffs = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((diffs**2).sum(-1)).max())


def measure_mask(
    masks: Mapping[int, np.ndarray] | np.ndarray, geometry: VolumeGeometry, values: np.ndarray | None = None
) -> MaskMeasurements:
    """All measurements of a 3-D mask; ``values`` are the modality values (slices, rows, columns)."""
    by_slice = _by_slice(masks)
    row, col = geometry.row_spacing_mm, geometry.column_spacing_mm
    areas = {k: area_mm2(m, row, col) for k, m in by_slice.items() if np.any(m)}
    diameters = {k: longest_diameter_mm(m, row, col) for k, m in by_slice.items() if np.any(m)}
    widest = max(diameters, key=diameters.get) if diameters else None
    stats = None
    if values is not None and by_slice:
        picked = [np.asarray(values[k], dtype=np.float64)[np.asarray(m, bool)] for k, m in by_slice.items()]
        joined = np.concatenate(picked) if picked else np.empty(0)
        if joined.size:
            stats = HuStats(
                float(joined.mean()), float(joined.std()), float(joined.min()), float(joined.max()), joined.size
            )
    return MaskMeasurements(
        area_mm2=areas,
        volume_ml=volume_ml(by_slice, geometry),
        hu=stats,
        longest_diameter_mm=diameters[widest] if widest is not None else 0.0,
        longest_diameter_slice=widest,
    )


def _by_slice(masks: Mapping[int, np.ndarray] | np.ndarray) -> dict[int, np.ndarray]:
    if isinstance(masks, np.ndarray):
        if masks.ndim != 3:
            raise ValueError(f"a 3-D mask is (slices, rows, columns), not shaped {masks.shape}")
        return {k: masks[k] for k in range(masks.shape[0])}
    return {int(k): np.asarray(v, dtype=bool) for k, v in masks.items()}


def measure_slice(
    mask: np.ndarray, row_spacing_mm: float, column_spacing_mm: float, values: np.ndarray | None = None
) -> MaskMeasurements:
    """The measurements of a mask on one image that is not part of a volume (no slice spacing):
    its area instead of a volume (``volume_ml`` is 0, ``area_mm2`` has the one slice)."""
    mask = np.asarray(mask, dtype=bool)
    return MaskMeasurements(
        area_mm2={0: area_mm2(mask, row_spacing_mm, column_spacing_mm)},
        volume_ml=0.0,
        hu=hu_stats(mask, values) if values is not None else None,
        longest_diameter_mm=longest_diameter_mm(mask, row_spacing_mm, column_spacing_mm),
        longest_diameter_slice=0,
    )


def mask_values(measured: MaskMeasurements, unit: str) -> tuple[MeasuredValue, ...]:
    """The numbers a Mask annotation carries (CSV, SR): the area of a one-slice mask or the
    volume of a 3-D one, the longest in-plane diameter, and the statistics of the values inside.

    Names and units are the ones the exports read: area mm2, volume mL, diameter mm, and mean,
    std, min, max in ``unit`` (HU for CT)."""
    values = []
    if len(measured.area_mm2) == 1:
        values.append(MeasuredValue("area", sum(measured.area_mm2.values()), "mm2"))
    else:
        values.append(MeasuredValue("volume", measured.volume_ml, "mL"))
    values.append(MeasuredValue("diameter", measured.longest_diameter_mm, "mm"))
    if measured.hu is not None:
        stats = measured.hu
        values += [
            MeasuredValue("mean", stats.mean, unit),
            MeasuredValue("std", stats.sd, unit),
            MeasuredValue("min", stats.minimum, unit),
            MeasuredValue("max", stats.maximum, unit),
        ]
    return tuple(values)
