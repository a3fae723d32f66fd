"""PNG, JPEG and TIFF through Pillow, into the same Frame/render path as DICOM.

Grayscale keeps its stored values (8 or 16 bit), so a 16-bit PNG is windowed like a DICOM.
An 8-bit grayscale file gets a "full range" window that displays it exactly as stored: a
figure from a paper should look like the figure. The size is checked from the header before
any pixel is decoded.

Pillow's ``Image.open`` is lazy: it reads the header (size, mode, frame count) and decodes no
pixel; that happens in ``load()``, in libpng/zlib, libjpeg or libtiff, native code fed with the
file's bytes. So headers are read here, and pixels are decoded in a decoder process
(`decode_raster_frame`), where a crash or a decode past the time limit ends one decode.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from .decoder_pool import decoder_pool
from .dicom_index import MAX_PIXELS, MAX_SIDE, size_error
from .errors import ImageLoadError
from .frame import Window, to_uint8_rgb
from .guard import guarded

FULL_RANGE_8BIT = Window(127.5, 255.0, "LINEAR_EXACT", "full range")
_GRAY_16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_COLOR_MODES_TO_RGB = {"P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"}


@dataclass(frozen=True)
class RasterInfo:
    path: str
    format: str  # Pillow's format name: "PNG", "JPEG", "TIFF", ...
    mode: str  # Pillow mode of the file
    rows: int
    columns: int
    n_frames: int
    is_color: bool


def probe_raster(path: str) -> RasterInfo | None:
    """Header facts of an image Pillow recognises, None if it does not recognise the file."""
    try:
        with Image.open(path) as im:
            columns, rows = im.size
            info = RasterInfo(
                path, im.format or "", im.mode, rows, columns, getattr(im, "n_frames", 1), _is_color_mode(im.mode)
            )
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, _bomb_message(path, exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(path, f"{os.path.basename(path)} could not be read: {exc}.") from exc
    too_big = size_error(path, rows, columns)
    if too_big is not None:
        raise too_big
    return info


def decode_raster_frame(path: str, index: int, file_format: str) -> tuple[np.ndarray, bool]:
    """Page `index` of a raster file, decoded in a decoder process (see `read_raster_frame`)."""
    decoder = f"{file_format or 'image'} (Pillow)"
    return decoder_pool().run(path, decoder, read_raster_frame, path, index)


def read_raster_frame(path: str, index: int) -> tuple[np.ndarray, bool]:
    """(stored values, is_color) of page `index`: uint8/uint16/int32/float32 gray or uint8 RGB.

    Runs in a decoder process (a module-level function on purpose). The size limit is checked
    again from the header here: the file may have changed since it was opened.
    """
    with guarded(path, "decoded"):
        try:
            with Image.open(path) as im:
                im.seek(index)
                columns, rows = im.size
                too_big = size_error(path, rows, columns)
                if too_big is not None:
                    raise too_big
                im.load()
                return _to_array(im)
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(path, _bomb_message(path, exc)) from exc


def raster_windows(stored: np.ndarray, is_color: bool) -> tuple[Window, ...]:
    return (FULL_RANGE_8BIT,) if not is_color and stored.dtype == np.uint8 else ()


def _is_color_mode(mode: str) -> bool:
    return mode not in ("1", "L", "LA", "I", "F") and mode not in _GRAY_16_MODES


def _to_array(im: Image.Image) -> tuple[np.ndarray, bool]:
    mode = im.mode
    if mode in ("1", "LA"):
        return np.asarray(im.convert("L")), False
    if mode == "L":
        return np.asarray(im), False
    if mode in _GRAY_16_MODES:
        return np.asarray(im).astype(np.uint16), False  # native byte order
    if mode == "I":
        arr = np.asarray(im)
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:
            return arr.astype(np.uint16), False
        return arr.astype(np.int32), False
    if mode == "F":
        return np.asarray(im, dtype=np.float32), False
    if mode in ("RGB", "RGBA"):
        return to_uint8_rgb(np.asarray(im)[..., :3]), True
    return np.asarray(im.convert("RGB")), True


def _bomb_message(path: str, exc: Exception) -> str:
    match = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(match.group(1)):,} pixels" if match else "too many pixels"
    return (
        f"{os.path.basename(path)} has {size}, more than the {MAX_SIDE} x {MAX_SIDE} "
        f"({MAX_PIXELS:,} pixel) limit, so it was not decoded."
    )
