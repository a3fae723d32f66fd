"""Plain data for one decoded frame: stored values plus everything needed to display them.

A `Frame` holds the stored values exactly as decoded and the per-frame pixel transforms
(`PixelParams`) resolved from the header (including enhanced multi-frame functional groups),
so that display code never has to look at a DICOM header again. `PixelParams` is hashable on
purpose: the display lookup tables are cached by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class Window:
    """A VOI window; `function` follows PS3.3 C.11.2.1.2 (VOI LUT Function)."""

    center: float
    width: float
    function: str = "LINEAR"
    explanation: str = ""


@dataclass(frozen=True)
class LutData:
    """A Modality or VOI LUT from a header (PS3.3 C.11.1 / C.11.2), in hashable form.

    `data` holds the entries as little-endian uint16 bytes: bytes cache their hash, so a
    65536-entry LUT does not slow down the display cache lookups that key on it.
    """

    first_mapped: int
    bits: int
    data: bytes = field(repr=False)
    explanation: str = ""

    @classmethod
    def from_values(cls, first_mapped: int, bits: int, values: Any, explanation: str = "") -> LutData:
        arr = np.asarray(values, dtype="<u2")
        return cls(int(first_mapped), int(bits), arr.tobytes(), explanation)

    def entries(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype="<u2")

    def to_item(self) -> Dataset:
        """The LUT as a sequence item that pydicom's LUT functions accept."""
        item = Dataset()
        n = len(self.data) // 2
        item.LUTDescriptor = [n if n < 65536 else 0, self.first_mapped, self.bits]
        item.add_new(0x00283006, "US", self.entries().tolist())  # LUT Data
        if self.explanation:
            item.LUTExplanation = self.explanation
        return item


@dataclass(frozen=True)
class PixelParams:
    """How stored values become modality values, and which VOI LUTs the header supplies."""

    bits_stored: int
    signed: bool
    rescale: tuple[float, float] | None = None  # (slope, intercept)
    modality_lut: LutData | None = None
    voi_luts: tuple[LutData, ...] = ()

    def dataset(self) -> Dataset:
        """A minimal dataset carrying these parameters, for pydicom's LUT functions."""
        return _params_dataset(self)


@lru_cache(maxsize=32)
def _params_dataset(params: PixelParams) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored = params.bits_stored
    ds.PixelRepresentation = 1 if params.signed else 0
    if params.modality_lut is not None:
        ds.ModalityLUTSequence = [params.modality_lut.to_item()]
    elif params.rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = params.rescale
    if params.voi_luts:
        ds.VOILUTSequence = [lut.to_item() for lut in params.voi_luts]
    return ds


def params_for_dtype(dtype: np.dtype) -> PixelParams:
    """Identity pixel parameters for an array that carries no header (PNG, TIFF, arrays)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return PixelParams(bits_stored=dtype.itemsize * 8, signed=dtype.kind == "i")
    return PixelParams(bits_stored=32, signed=True)


@dataclass(frozen=True, eq=False)
class Frame:
    """One displayable frame. `stored` is (H, W) stored values, or (H, W, 3) uint8 RGB."""

    index: int
    stored: np.ndarray
    is_color: bool
    monochrome1: bool
    windows: tuple[Window, ...]
    has_voi_lut: bool
    params: PixelParams | None = field(default=None, repr=False)  # None: identity for stored.dtype
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def pixel_params(self) -> PixelParams:
        return self.params if self.params is not None else params_for_dtype(self.stored.dtype)

    def modality_values(self) -> np.ndarray:
        """Float64 modality values (HU for CT); colour frames return their RGB values."""
        if self.is_color:
            return self.stored.astype(np.float64)
        return modality_of(self.stored, self.pixel_params)

    def modality_value_at(self, x: int, y: int) -> float | tuple[float, ...]:
        if self.is_color:
            return tuple(float(v) for v in self.stored[y, x])
        return float(modality_of(self.stored[y : y + 1, x : x + 1], self.pixel_params)[0, 0])

    def stored_value_at(self, x: int, y: int) -> int | float | tuple[int, ...]:
        value = self.stored[y, x]
        if self.is_color:
            return tuple(int(v) for v in value)
        return value.item()


def modality_of(stored: np.ndarray, params: PixelParams) -> np.ndarray:
    """Stored values -> modality values via pydicom's apply_modality_lut, as float64."""
    return np.asarray(apply_modality_lut(stored, params.dataset()), dtype=np.float64)


def frame_from_array(
    array: np.ndarray,
    *,
    index: int = 0,
    windows: tuple[Window, ...] = (),
    params: PixelParams | None = None,
    monochrome1: bool = False,
) -> Frame:
    """Wrap a plain array as a Frame: (H, W) grayscale of any numeric dtype, or (H, W, 3) RGB.

    Colour arrays are reduced to uint8 (16-bit colour is scaled by its dtype range).
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return Frame(index, to_uint8_rgb(arr), True, False, (), False)
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) array, got shape {arr.shape}")
    has_lut = bool(params.voi_luts) if params is not None else False
    return Frame(index, arr, False, monochrome1, windows, has_lut, params)


def to_uint8_rgb(arr: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Colour samples of any unsigned depth -> uint8 RGB (rounded, full range preserved)."""
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if bits is None:
        bits = arr.dtype.itemsize * 8
    scale = 255.0 / (2**bits - 1)
    return np.clip(np.rint(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)
