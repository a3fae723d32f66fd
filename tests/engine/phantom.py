"""A synthetic CT series with known geometry: a sphere of known HU at a known patient position.

Written as real DICOM files (CT Image Storage, or one Enhanced CT multi-frame file) so the
whole path is exercised: header indexing, series sorting, decoding, volume geometry, planes.
Voxel values are computed from each voxel centre's patient position, so the sphere sits where
the geometry says, whatever the orientation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
INTERCEPT = -1024.0
AIR_HU = -1000
SPHERE_HU = 60


def rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    axis_v = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    x, y, z = axis_v
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array(
        [
            [c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
            [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
            [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)],
        ]
    )


@dataclass
class Phantom:
    rows: int = 64
    columns: int = 60
    slices: int = 40
    pixel_mm: float = 0.75
    slice_mm: float = 2.0
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0)
    origin: tuple[float, float, float] = (-20.0, -30.0, 100.0)
    centre_voxel: tuple[int, int, int] = (22, 30, 37)  # (slice, row, column) of the sphere centre
    radius_mm: float = 10.0
    missing: tuple[int, ...] = ()  # slice numbers (0-based) left out
    tilt_mm_per_slice: float = 0.0  # in-plane shift of each slice (gantry tilt)
    series_uid: str = field(default_factory=generate_uid)

    @property
    def row_cosine(self) -> np.ndarray:
        return np.asarray(self.orientation[:3], dtype=float)

    @property
    def column_cosine(self) -> np.ndarray:
        return np.asarray(self.orientation[3:], dtype=float)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cosine, self.column_cosine)

    def position(self, k: int) -> np.ndarray:
        return (
            np.asarray(self.origin) + self.normal * k * self.slice_mm + self.column_cosine * k * self.tilt_mm_per_slice
        )

    @property
    def centre(self) -> np.ndarray:
        k, r, c = self.centre_voxel
        return self.position(k) + self.column_cosine * r * self.pixel_mm + self.row_cosine * c * self.pixel_mm

    def slice_hu(self, k: int) -> np.ndarray:
        r, c = np.mgrid[0 : self.rows, 0 : self.columns]
        points = (
            self.position(k)
            + r[..., None] * self.pixel_mm * self.column_cosine
            + c[..., None] * self.pixel_mm * self.row_cosine
        )
        inside = np.linalg.norm(points - self.centre, axis=-1) <= self.radius_mm
        return np.where(inside, SPHERE_HU, AIR_HU).astype(np.int16)

    def kept(self) -> list[int]:
        return [k for k in range(self.slices) if k not in self.missing]

    def _common(self, ds: Dataset, sop_class: str) -> None:
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = self.study_uid
        ds.SeriesInstanceUID = self.series_uid
        ds.FrameOfReferenceUID = self.frame_of_reference_uid
        ds.PatientName, ds.PatientID = "Phantom^Sphere", "PHANTOM1"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "20260101", "120000", "", ""
        ds.StudyID, ds.SeriesNumber, ds.Modality, ds.Manufacturer = "1", 1, "CT", "ClinLens tests"
        ds.Rows, ds.Columns = self.rows, self.columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1

    def __post_init__(self) -> None:
        self.study_uid = generate_uid()
        self.frame_of_reference_uid = generate_uid()

    def _save(self, ds: Dataset, path: Path) -> None:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(path, enforce_file_format=True)

    def write_series(self, folder: Path) -> Path:
        """One CT file per slice, named in a shuffled order so sorting must use the geometry."""
        folder.mkdir(parents=True, exist_ok=True)
        kept = self.kept()
        names = np.random.default_rng(0).permutation(len(kept))
        for name, k in zip(names, kept, strict=True):
            ds = Dataset()
            self._common(ds, CT_IMAGE)
            ds.InstanceNumber = int(name) + 1  # deliberately not the slice order
            ds.ImagePositionPatient = [round(float(v), 6) for v in self.position(k)]
            ds.ImageOrientationPatient = [float(v) for v in self.orientation]
            ds.PixelSpacing = [self.pixel_mm, self.pixel_mm]
            ds.SliceThickness = 5.0  # deliberately not the spacing
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = INTERCEPT, 1.0, "HU"
            ds.WindowCenter, ds.WindowWidth = 40, 400
            ds.PixelData = (self.slice_hu(k) - int(INTERCEPT)).astype("<i2").tobytes()
            self._save(ds, folder / f"img{int(name):03d}.dcm")
        return folder

    def write_enhanced(self, path: Path) -> Path:
        """One Enhanced CT file, frames in reverse order, positions in the per-frame groups."""
        path.parent.mkdir(parents=True, exist_ok=True)
        ds = Dataset()
        self._common(ds, ENHANCED_CT)
        kept = self.kept()[::-1]
        ds.NumberOfFrames = len(kept)
        shared = Dataset()
        orientation = Dataset()
        orientation.ImageOrientationPatient = [float(v) for v in self.orientation]
        measures = Dataset()
        measures.PixelSpacing = [self.pixel_mm, self.pixel_mm]
        measures.SliceThickness = 5.0
        transform = Dataset()
        transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = INTERCEPT, 1.0, "HU"
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = 40, 400
        shared.PlaneOrientationSequence = [orientation]
        shared.PixelMeasuresSequence = [measures]
        shared.PixelValueTransformationSequence = [transform]
        shared.FrameVOILUTSequence = [voi]
        ds.SharedFunctionalGroupsSequence = [shared]
        per_frame = []
        for k in kept:
            item, plane = Dataset(), Dataset()
            plane.ImagePositionPatient = [round(float(v), 6) for v in self.position(k)]
            item.PlanePositionSequence = [plane]
            per_frame.append(item)
        ds.PerFrameFunctionalGroupsSequence = per_frame
        ds.PixelData = np.stack([self.slice_hu(k) - int(INTERCEPT) for k in kept]).astype("<i2").tobytes()
        self._save(ds, path)
        return path
