"""THE display function: stored values -> 8-bit pixels, for the canvas, the CLI and the models.

Pipeline (PS3.3 C.11, design.md "Display"): modality LUT (rescale or Modality LUT Sequence)
-> VOI (window with LINEAR / LINEAR_EXACT / SIGMOID, or the header's VOI LUT Sequence)
-> MONOCHROME1 inversion -> 8 bit, in one function, `display_values`. Modality and VOI LUT
Sequences go through pydicom (apply_modality_lut, apply_voi). The window functions are the three
formulas of PS3.3 C.11.2.1.2/C.11.2.1.3 written out with pydicom's exact arithmetic (tests compare
them with pydicom's apply_windowing): pydicom's version costs ~75 us of set-up per call, which
is most of a new window's cost on a 512 x 512 frame during a drag.

Speed: a window drag must not redo float math on millions of pixels. For 8/16-bit integer
stored data we run `display_values` once over every stored value in the frame's range (the
domain) and gather the frame through that table, so the fast path equals the direct path by
construction. Tables are cached per (pixel params, window, flip, stored range).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pydicom.pixels import apply_voi

from .frame import Frame, PixelParams, Window, modality_of

AUTO_LOW_PERCENTILE = 0.5
AUTO_HIGH_PERCENTILE = 99.5
_AUTO_SAMPLE_PIXELS = 1_000_000  # larger frames are sampled on a regular grid for auto window
_LUT_DTYPES = {
    np.dtype(np.uint8): np.dtype(np.uint8),
    np.dtype(np.int8): np.dtype(np.uint8),
    np.dtype(np.uint16): np.dtype(np.uint16),
    np.dtype(np.int16): np.dtype(np.uint16),
}
_GATHER_CHUNK_PIXELS = 1 << 16  # cache-sized blocks, mode='clip': ~3x faster than one np.take


def auto_window(frame: Frame) -> Window:
    """Robust window over the 0.5-99.5 percentiles of the modality values (LINEAR_EXACT).

    LINEAR_EXACT maps the low percentile to 0 and the high one to 255 exactly, which also
    works for float images whose whole range is below 1.
    """
    cached = frame._memo.get("auto_window")
    if cached is None:
        stored = frame.stored
        if stored.size > _AUTO_SAMPLE_PIXELS:
            step = int(np.ceil(np.sqrt(stored.size / _AUTO_SAMPLE_PIXELS)))
            stored = stored[::step, ::step]
        values = modality_of(stored, frame.pixel_params)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            lo = hi = 0.0
        else:
            lo, hi = (float(v) for v in np.percentile(finite, [AUTO_LOW_PERCENTILE, AUTO_HIGH_PERCENTILE]))
        width = hi - lo if hi > lo else 1.0
        cached = Window(center=(lo + hi) / 2, width=width, function="LINEAR_EXACT", explanation="auto")
        frame._memo["auto_window"] = cached
    return cached


def initial_window(frame: Frame) -> Window | None:
    """None when a VOI LUT Sequence applies (it replaces WC/WW, as pydicom's prefer_lut does);
    else the header's first window; else the auto window."""
    if frame.has_voi_lut:
        return None
    if frame.windows:
        return frame.windows[0]
    return auto_window(frame)


def render(frame: Frame, window: Window | None = None, *, invert: bool = False, step: int = 1) -> np.ndarray:
    """Display pixels, uint8 (H, W) for grayscale or (H, W, 3) for colour.

    `window=None` means the header's VOI (VOI LUT, else first window, else auto).
    `invert` flips the final image (user "invert"); MONOCHROME1 is already inverted.
    `step>1` keeps every step-th row and column first (viewport rendering when zoomed out).
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    stored = frame.stored[::step, ::step] if step > 1 else frame.stored
    if frame.is_color:
        return np.subtract(255, stored, dtype=np.uint8) if invert else np.ascontiguousarray(stored)
    if window is None:
        window = initial_window(frame)
    flip = frame.monochrome1 != invert
    params = frame.pixel_params
    index_dtype = _LUT_DTYPES.get(stored.dtype) if stored.dtype.isnative else None
    if index_dtype is None:
        return display_values(stored, params, window, flip=flip)
    lo, hi = _stored_range(frame)
    lut = display_lut(params, window, flip, stored.dtype.str, lo, hi)
    return _gather(lut, stored.view(index_dtype))


def render_rgb(frame: Frame, window: Window | None = None, *, invert: bool = False) -> np.ndarray:
    """The same pixels as `render`, as (H, W, 3) uint8 RGB: what a model is shown."""
    pixels = render(frame, window, invert=invert)
    if pixels.ndim == 3:
        return pixels
    return np.repeat(pixels[:, :, np.newaxis], 3, axis=2)


def display_values(stored: np.ndarray, params: PixelParams, window: Window | None, *, flip: bool) -> np.ndarray:
    """The pixel math, elementwise: stored -> modality -> VOI -> (flip) -> uint8.

    Used directly for float and wide integer data, and over the whole stored-value domain to
    build the lookup tables of the fast path.
    """
    return _voi_to_8bit(modality_of(stored, params), params, window, flip=flip)


def _voi_to_8bit(values: np.ndarray, params: PixelParams, window: Window | None, *, flip: bool) -> np.ndarray:
    if window is not None:
        scaled = window_values(values, window)
    elif params.voi_luts:
        scaled = _apply_voi_lut(values, params)
    else:
        raise ValueError("no window given and no VOI LUT in the header")
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if flip:
        np.subtract(255, out, out=out)
    return out


@lru_cache(maxsize=16)
def _domain(params: PixelParams, dtype: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Every stored value lo..hi as table indices, and its modality value: fixed during a drag."""
    stored_dtype = np.dtype(dtype)
    domain = np.arange(lo, hi + 1, dtype=np.int64).astype(stored_dtype)
    values = modality_of(domain, params)
    values.setflags(write=False)
    return domain.view(_LUT_DTYPES[stored_dtype]), values


@lru_cache(maxsize=64)
def display_lut(params: PixelParams, window: Window | None, flip: bool, dtype: str, lo: int, hi: int) -> np.ndarray:
    """Display value of every stored value lo..hi of `dtype`, indexed by its unsigned view.

    Only the frame's own stored range is computed (a CT frame uses ~2-4k of 65536 values),
    which keeps a new window at a few hundred microseconds; other entries are never read.
    """
    index, values = _domain(params, dtype, lo, hi)
    lut = np.zeros(2 ** (8 * index.dtype.itemsize), dtype=np.uint8)
    lut[index] = _voi_to_8bit(values, params, window, flip=flip)
    lut.setflags(write=False)
    return lut


def _stored_range(frame: Frame) -> tuple[int, int]:
    cached = frame._memo.get("stored_range")
    if cached is None:
        cached = (int(frame.stored.min()), int(frame.stored.max())) if frame.stored.size else (0, 0)
        frame._memo["stored_range"] = cached
    return cached


def _gather(lut: np.ndarray, index: np.ndarray) -> np.ndarray:
    out = np.empty(index.shape, dtype=np.uint8)
    rows = max(1, _GATHER_CHUNK_PIXELS // max(1, index.shape[1]))
    for start in range(0, index.shape[0], rows):
        np.take(lut, index[start : start + rows], out=out[start : start + rows], mode="clip")
    return out


def window_values(values: np.ndarray, window: Window) -> np.ndarray:
    """VOI window to the 0..255 output range (PS3.3 C.11.2.1.2.1, C.11.2.1.3.1, C.11.2.1.3.2).

    The same operations, in the same order, as pydicom's apply_windowing with an 8-bit unsigned
    output range. Widths below the function's minimum (1 for LINEAR, >0 otherwise) are raised to
    it: a window drag can reach them, and a narrow window is then a threshold, not an error.
    """
    function = window.function.upper() if window.function else "LINEAR"
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    center = float(window.center)
    width = max(float(window.width), 1.0) if function == "LINEAR" else max(float(window.width), 1e-6)
    values = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        with np.errstate(over="ignore"):  # far from the centre: exp -> inf -> 0, as meant
            return 255.0 / (1 + np.exp(-4 * (values - center) / width)) + 0.0
    if function == "LINEAR":
        center -= 0.5
        width -= 1
    with np.errstate(divide="ignore", invalid="ignore"):  # LINEAR width 1: a pure threshold
        out = ((values - center) / width + 0.5) * 255.0 + 0.0
    out[values <= center - width / 2] = 0.0
    out[values > center + width / 2] = 255.0
    return out


def _apply_voi_lut(values: np.ndarray, params: PixelParams) -> np.ndarray:
    """The header's first VOI LUT (pydicom's apply_voi), scaled from its bit depth to 0..255."""
    lut = params.voi_luts[0]
    n_entries = len(lut.data) // 2
    # apply_voi indexes with integers; clip first so huge values cannot wrap around uint16.
    index = np.clip(np.rint(values), lut.first_mapped, lut.first_mapped + n_entries - 1)
    out = apply_voi(index.astype(np.int64), params.dataset(), index=0)
    return out.astype(np.float64) * (255.0 / (2**lut.bits - 1))
