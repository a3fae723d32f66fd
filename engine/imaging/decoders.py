"""Decode one DICOM frame with pydicom's decoder plugins, and say clearly when we cannot.

The most common DICOM complaint is "pixel_array fails on JPEG 2000 / JPEG-LS / JPEG Lossless"
(anchors B2). So the transfer syntax is checked before decoding, and a failure names the
syntax (name and UID) and the pip package that would decode it.

Compressed and deflated pixel data is decoded in a decoder process (decoder_pool), so that a
native crash in gdcm, OpenJPEG, CharLS or zlib ends one decode, not the viewer; native pixel
data is read here.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import apply_color_lut, get_decoder, pixel_array

from .decoder_pool import decoder_pool
from .errors import ImageLoadError
from .frame import to_uint8_rgb
from .guard import guarded, is_recoverable

# pip packages that decode each compressed syntax (GPL pylibjpeg-libjpeg deliberately absent).
_PACKAGES_BY_SYNTAX: dict[str, str] = {
    uid.JPEGBaseline8Bit: "pillow or python-gdcm",
    uid.JPEGExtended12Bit: (
        "pillow or python-gdcm for 8-bit samples; 12-bit samples need pylibjpeg-libjpeg (GPL-licensed, so not bundled)"
    ),
    uid.JPEGLossless: "python-gdcm",
    uid.JPEGLosslessSV1: "python-gdcm",
    uid.JPEGLSLossless: "pyjpegls or python-gdcm",
    uid.JPEGLSNearLossless: "pyjpegls or python-gdcm",
    uid.JPEG2000Lossless: "pylibjpeg with pylibjpeg-openjpeg, or python-gdcm",
    uid.JPEG2000: "pylibjpeg with pylibjpeg-openjpeg, or python-gdcm",
    uid.HTJ2KLossless: "pylibjpeg with pylibjpeg-openjpeg",
    uid.HTJ2KLosslessRPCL: "pylibjpeg with pylibjpeg-openjpeg",
    uid.HTJ2K: "pylibjpeg with pylibjpeg-openjpeg",
    uid.RLELossless: "pylibjpeg with pylibjpeg-rle",
}
_DEFAULT_PACKAGE = "python-gdcm"


def syntax_label(syntax: uid.UID | str | None) -> str:
    """'JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)' style label for messages."""
    if not syntax:
        return "an unknown transfer syntax"
    syntax = uid.UID(str(syntax))
    name = syntax.name if syntax.name != str(syntax) else "unrecognised transfer syntax"
    return f"{name} ({syntax})"


def decoder_packages(syntax: uid.UID | str) -> str:
    """The pip package(s) that would decode `syntax`."""
    return _PACKAGES_BY_SYNTAX.get(str(syntax), _DEFAULT_PACKAGE)


def check_decodable(path: str, syntax: uid.UID | str | None) -> None:
    """Raise ImageLoadError naming syntax and package when no installed plugin decodes it."""
    if not syntax:
        return
    name = os.path.basename(path)
    decoder = get_decoder(uid.UID(str(syntax)))
    if decoder is None:
        raise ImageLoadError(
            path,
            f"{name} uses {syntax_label(syntax)}, which no pydicom decoder supports; "
            f"convert it to an uncompressed or JPEG/JPEG 2000 syntax first.",
        )
    if not decoder.is_available:
        raise ImageLoadError(
            path,
            f"{name} uses {syntax_label(syntax)} and no installed decoder can read it; "
            f"install {decoder_packages(syntax)}.",
        )


def decode_frame(path: str, header: Dataset, frame_index: int) -> tuple[np.ndarray, bool]:
    """Decode frame `frame_index` (0-based) of a file: (stored values, is_color).

    Colour comes back as uint8 RGB: YBR is converted by pydicom, palette colour goes through
    apply_color_lut, and 16-bit colour is scaled to 8 bit. Raises only ImageLoadError.
    """
    with guarded(path, "decoded"):
        syntax = header.file_meta.get("TransferSyntaxUID") if hasattr(header, "file_meta") else None
        check_decodable(path, syntax)
        index = frame_index if _is_multiframe(header) else None
        if decodes_in_pool(syntax):
            size = (int(header.Rows), int(header.Columns))
            arr = decoder_pool().run(path, decoder_label(syntax), decode_pixels, path, syntax, index, size)
        else:
            arr = decode_pixels(path, syntax, index)
        _check_shape(path, header, arr)
        if not arr.dtype.isnative:  # big endian files: the display LUTs index native integers
            arr = arr.astype(arr.dtype.newbyteorder("="))
        photometric = str(header.get("PhotometricInterpretation", "")).upper()
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(arr, header)  # uint8 or uint16 by the LUT descriptor
            return to_uint8_rgb(rgb[..., :3]), True
        if arr.ndim == 3:
            bits = int(header.get("BitsStored") or arr.dtype.itemsize * 8)
            return to_uint8_rgb(arr, bits), True
        return arr, False


def decodes_in_pool(syntax: uid.UID | str | None) -> bool:
    """True when a native library (a codec, zlib) reads the pixel data: it is decoded in a
    decoder process. Native (uncompressed) pixel data is only copied, so it is read here."""
    if not syntax:
        return False
    syntax = uid.UID(str(syntax))
    return syntax.is_compressed or syntax.is_deflated


def decoder_label(syntax: uid.UID | str) -> str:
    """'JPEG 2000 Image Compression (pylibjpeg, gdcm)': the syntax and the plugins that decode it."""
    syntax = uid.UID(str(syntax))
    if syntax.is_deflated:
        return f"{syntax.name} (zlib)"
    decoder = get_decoder(syntax)
    plugins = ", ".join(decoder.available_plugins) if decoder is not None else ""
    return f"{syntax.name} ({plugins})" if plugins else syntax.name


def decode_pixels(
    path: str, syntax: uid.UID | None, index: int | None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """pixel_array on the path reads only the wanted frame; it cannot read deflated files
    and trips on some valid encapsulations, so those are decoded from the whole dataset.

    Runs in a decoder process for compressed and deflated syntaxes (a module-level function
    on purpose).
    `size` (rows, columns) from the header lets a JPEG 2000 stream that declares another image
    size be refused before OpenJPEG allocates it (a flipped bit can declare 500 megapixels).
    """
    if size is not None and syntax in _J2K_SYNTAXES:
        try:
            _check_j2k_size(path, index, size)
        except ImageLoadError:
            raise
        except Exception:  # noqa: BLE001, S110 - unreadable fragments: the decoder below words the error
            pass
    if syntax is None or not syntax.is_deflated:
        try:
            return pixel_array(path, index=index)
        except BaseException as exc:
            if not is_recoverable(exc):
                raise
    try:
        return pixel_array(dcmread(path), index=index)
    except BaseException as exc:
        if not is_recoverable(exc):
            raise
        raise ImageLoadError(path, _decode_failure(path, syntax, exc)) from exc


_J2K_SYNTAXES = {uid.JPEG2000Lossless, uid.JPEG2000, uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K}
_J2K_SIZ = b"\xff\x4f\xff\x51"  # SOC marker, then the SIZ marker with the image size
SIZE_CHECK_BYTES = 64 * 1024 * 1024


def _check_j2k_size(path: str, index: int | None, size: tuple[int, int]) -> None:
    """Refuse a JPEG 2000 codestream whose SIZ image size differs from Rows x Columns.

    Files over SIZE_CHECK_BYTES are not checked: reading all of a large multi-frame file for
    every frame would slow scrolling more than the check protects (the time limit still does).
    """
    if os.path.getsize(path) > SIZE_CHECK_BYTES:
        return
    dataset = dcmread(path)
    frames = int(dataset.get("NumberOfFrames") or 1)
    codestream = get_frame(dataset.PixelData, index or 0, number_of_frames=frames)
    start = codestream.find(_J2K_SIZ, 0, 256)
    if start < 0 or len(codestream) < start + 24:
        return  # no bare codestream header here: the decoder reports what it finds
    x_size, y_size, x_offset, y_offset = struct.unpack(">IIII", codestream[start + 8 : start + 24])
    columns, rows = x_size - x_offset, y_size - y_offset
    if (rows, columns) != size:
        raise ImageLoadError(
            path,
            f"{os.path.basename(path)} has a damaged JPEG 2000 stream: it declares a {columns} x {rows} "
            f"image but the header says {size[1]} x {size[0]}.",
        )


def _check_shape(path: str, header: Dataset, arr: np.ndarray) -> None:
    """The decoded frame must be the (Rows, Columns[, 3]) image its header promises."""
    rows, columns = int(header.Rows), int(header.Columns)
    if arr.shape[:2] != (rows, columns) or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ImageLoadError(
            path,
            f"{os.path.basename(path)} decoded to an array of shape {arr.shape}, not the "
            f"{columns} x {rows} image its header describes.",
        )
    if arr.dtype.kind not in "uif":
        raise ImageLoadError(path, f"{os.path.basename(path)} decoded to {arr.dtype} values, which cannot be shown.")


def _is_multiframe(header: Dataset) -> bool:
    try:
        return int(header.get("NumberOfFrames") or 1) > 1
    except (TypeError, ValueError):
        return False


def _decode_failure(path: str, syntax: uid.UID | str | None, exc: BaseException) -> str:
    name = os.path.basename(path)
    reason = " ".join(str(exc).split())
    if "less than expected" in reason or "truncated" in reason.lower():
        return f"{name} is truncated: its pixel data is shorter than the header says ({reason.split(' - ')[0]})."
    if "missing dependencies" in reason or "no plugins" in reason.lower():
        return (
            f"{name} uses {syntax_label(syntax)} and no installed decoder can read it; "
            f"install {decoder_packages(syntax or '')}."
        )
    if "raised by all available plugins" in reason:
        detail = reason.split(":", 1)[-1].strip()
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        return (
            f"{name} uses {syntax_label(syntax)} and none of the installed decoders could read it "
            f"({detail}); it may need {decoder_packages(syntax or '')}."
        )
    if len(reason) > 200:
        reason = reason[:197] + "..."
    return f"{name} could not be decoded ({syntax_label(syntax)}): {reason}"
