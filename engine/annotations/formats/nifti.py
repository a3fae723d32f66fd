"""NIfTI mask export and import (nibabel): a label map over the series' voxel grid.

Export writes ``<out>/masks-<SeriesInstanceUID>.nii.gz`` per DICOM series with masks: voxels (i = column, j = row,
k = slice) hold the label number (``mask_layout``: position in the label set plus one; 0 is
background), uint8 up to 255 labels, else uint16; the affine (sform and qform, scanner code) maps
them to RAS millimetres from the same geometry the MPR view uses, so the mask lies where
``dcm2niix`` puts the series itself (tested); ``labels.json`` in the folder names the values.

Import puts a NIfTI label map or binary mask onto an open series: the NIfTI affine is compared
with the series' grid, and it must be the same voxels in any axis order or direction (as
``dcm2niix`` and other converters write them); one mask per non-zero value, named from a
``labels.json`` beside the file when there is one, else "label <n>". Anything else is one sentence
(``DamagedDocumentError``), before the document changes.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import nibabel
import numpy as np

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.mask_layout import image_masks, legend
from engine.annotations.formats.mask_volume import Grid, GridError, image_grid
from engine.annotations.formats.targets import ExportError, ReviewScope
from engine.annotations.model import Mask, Source
from engine.annotations.persistence import DamagedDocumentError
from engine.files import write_bytes_atomic, write_json_atomic

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
ALIGN_TOLERANCE = 0.01  # voxels: float32 affines, and millimetres over a few hundred voxels


def label_volume(grid: Grid, frames: dict[int, np.ndarray]) -> np.ndarray:
    """Per-frame label maps (frame index -> rows x columns) as the (i, j, k) NIfTI array."""
    columns, rows, slices = grid.shape_ijk
    dtype = np.uint8 if max((int(a.max()) for a in frames.values()), default=0) < 256 else np.uint16
    data = np.zeros((slices, rows, columns), dtype=dtype)
    for k, frame in enumerate(grid.slice_frames):
        if frame in frames:
            data[k] = frames[frame]
    return np.ascontiguousarray(data.transpose(2, 1, 0))


def nifti_image(grid: Grid, data: np.ndarray) -> nibabel.Nifti1Image:
    affine = grid.ras_affine()
    image = nibabel.Nifti1Image(data, affine)
    image.set_sform(affine, code=1)  # scanner-based, as dcm2niix writes
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm")
    return image


def export_nifti(
    doc: AnnotationDocument,
    out: str | os.PathLike[str],
    *,
    image_ids: Sequence[str] | None = None,
    include_pending: bool = False,
    include_rejected: bool = False,
) -> list[Path]:
    """Write one ``.nii.gz`` label map per DICOM series with masks, and ``labels.json``."""
    scope = ReviewScope(include_pending, include_rejected)
    selected = [m for m in image_masks(doc, image_ids, scope) if m.ref.kind == "dicom"]
    if not selected:
        raise ExportError(f"no masks to export on DICOM series ({scope.describe()})")
    volumes = []
    for masks in selected:
        try:
            grid = image_grid(masks.ref)
        except GridError as err:
            raise ExportError(str(err)) from None
        frames = {index: masks.label_map(index, np.uint16) for index in masks.frames}
        volumes.append((masks.ref, nifti_image(grid, label_volume(grid, frames))))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, taken = [], set()
    for ref, image in volumes:
        stem = "masks-" + (_UNSAFE.sub("_", ref.series_instance_uid or ref.title).strip("_") or "series")
        name, counter = stem, 1
        while name.lower() in taken:
            counter += 1
            name = f"{stem}_{counter}"
        taken.add(name.lower())
        path = out / f"{name}.nii.gz"
        write_bytes_atomic(path, gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))
        written.append(path)
    labels = out / "labels.json"
    write_json_atomic(labels, {"background": 0, "labels": legend(selected)})
    return [*written, labels]


# --- import --------------------------------------------------------------------------------


def _axis_map(grid: Grid, affine: np.ndarray, shape: tuple[int, ...], path: Path) -> tuple[list[int], list[bool]]:
    """How the file's voxel axes map onto ours: for each of our axes (i, j, k) the file's axis, and
    whether it runs backwards. Refused unless the file's voxels are the series' voxels."""
    ours = grid.ras_affine()
    try:
        transform = np.linalg.inv(affine) @ ours  # our voxel -> the file's voxel
    except np.linalg.LinAlgError:
        raise DamagedDocumentError("has an affine that cannot be inverted", path) from None
    part = transform[:3, :3]
    if not np.allclose(part, np.round(part), atol=ALIGN_TOLERANCE) or not np.allclose(
        np.abs(np.round(part)).sum(axis=0), 1
    ):
        raise DamagedDocumentError(
            "does not lie on the open series' voxel grid (its affine is rotated, scaled or shifted against it)", path
        )
    perm = [int(np.argmax(np.abs(part[:, a]))) for a in range(3)]
    flips = [bool(part[perm[a], a] < 0) for a in range(3)]
    expected = grid.shape_ijk
    if sorted(perm) != [0, 1, 2] or tuple(shape[perm[a]] for a in range(3)) != expected:
        raise DamagedDocumentError(
            f"has {'x'.join(map(str, shape))} voxels but the open series has "
            f"{'x'.join(map(str, expected))} (columns x rows x slices)",
            path,
        )
    offset = transform[:3, 3]
    for a in range(3):
        start = (expected[a] - 1) if flips[a] else 0
        if abs(offset[perm[a]] - start) > ALIGN_TOLERANCE:
            raise DamagedDocumentError(
                "does not lie on the open series' voxel grid (its origin is off by "
                f"{abs(offset[perm[a]] - start):.2f} voxels)",
                path,
            )
    return perm, flips


def _names(path: Path) -> dict[int, str]:
    legend_path = path.parent / "labels.json"
    try:
        data = json.loads(legend_path.read_text(encoding="utf-8"))
        return {int(item["value"]): str(item["label"]) for item in data["labels"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def nifti_masks(doc: AnnotationDocument, image_id: str, path: str | os.PathLike[str]) -> list[Mask]:
    """The masks a NIfTI file holds for an open series (one per label value); nothing is added yet."""
    path = Path(path).absolute()
    try:
        image = nibabel.load(path)
        data = np.asanyarray(image.dataobj)
    except (OSError, ValueError, nibabel.filebasedimages.ImageFileError) as err:
        raise DamagedDocumentError(f"cannot be read as NIfTI ({err})", path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DamagedDocumentError(f"holds a {data.ndim}-D array; a mask is 3-D", path)
    try:
        grid = image_grid(doc.image(image_id))
    except GridError as err:
        raise DamagedDocumentError(f"cannot go on the open image: {err}", path) from None
    affine = image.get_sform() if int(image.header["sform_code"]) > 0 else image.get_qform()
    perm, flips = _axis_map(grid, np.asarray(affine, dtype=np.float64), data.shape, path)
    ours = np.transpose(data, perm)
    for a, flip in enumerate(flips):
        if flip:
            ours = np.flip(ours, axis=a)
    ours = np.rint(ours).astype(np.int64).transpose(2, 1, 0)  # (slice, row, column)
    names = _names(path)
    masks = []
    for value in [int(v) for v in np.unique(ours) if v != 0]:
        arrays = {grid.slice_frames[k]: ours[k] == value for k in range(ours.shape[0]) if (ours[k] == value).any()}
        label = names.get(value, f"label {value}")
        masks.append(doc.new_mask(image_id, arrays, label, source=Source.USER))
    if not masks:
        raise DamagedDocumentError("holds no voxel with a label (everything is 0)", path)
    return masks
