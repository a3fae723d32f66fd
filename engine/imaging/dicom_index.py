"""Read and vet DICOM headers without touching pixel data (dcmread stop_before_pixels).

Bad files must be refused here, before any decoding: no image, an image too large to hold,
or pixel data cut short. The pixel data element's tag and length are peeked with pydicom's
own element reader (its value is never read), which finds truncation in native files cheaply.

pydicom converts element values lazily, so a damaged value would otherwise raise (an unknown
VR, a bad length) wherever it is first read: the display, the metadata panel, an export. Every
element is converted here instead; one that cannot be is dropped, unless the image needs it.
"""

from __future__ import annotations

import os

from pydicom import dcmread
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import data_element_generator
from pydicom.pixels.utils import get_expected_length
from pydicom.tag import Tag

from .errors import ImageLoadError
from .guard import guarded, is_recoverable, reason

MAX_SIDE = 10_000
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # "10000 x 10000": bigger images are refused before decoding
_PIXEL_TAGS = {Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009), Tag(0x7FE0, 0x0010)}
_UNDEFINED_LENGTH = 0xFFFFFFFF
# Elements without which the pixels cannot be decoded or placed: damage here refuses the file.
_ESSENTIAL = {
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "TransferSyntaxUID",
}


def has_dicom_preamble(path: str) -> bool:
    with open(path, "rb") as fp:
        head = fp.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def size_error(path: str, rows: int, columns: int) -> ImageLoadError | None:
    """The refusal for an image over the pixel limit, or None when it fits."""
    if rows * columns <= MAX_PIXELS:
        return None
    return ImageLoadError(
        path,
        f"{os.path.basename(path)} is {columns} x {rows} pixels, larger than the "
        f"{MAX_SIDE} x {MAX_SIDE} ({MAX_PIXELS:,} pixel) limit, so it was not decoded.",
    )


def read_header(path: str, *, force: bool = False) -> Dataset:
    """The header of an image file (no pixel data), or ImageLoadError saying what is wrong.

    `force` reads files without the 128-byte preamble; they are accepted only if they carry a
    SOP Class UID, so that arbitrary binary files are not taken for DICOM.
    """
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fp:
            header = dcmread(fp, stop_before_pixels=True, force=force)
            pixel_info = _peek_pixel_element(fp, header)
    except InvalidDicomError as exc:
        raise ImageLoadError(path, f"{name} is not a DICOM file.") from exc
    except BaseException as exc:
        if not is_recoverable(exc):
            raise
        raise ImageLoadError(path, f"{name} could not be read as DICOM: {reason(exc)}.") from exc
    with guarded(path, "read as DICOM"):
        _convert_elements(path, header)
        if hasattr(header, "file_meta"):
            _convert_elements(path, header.file_meta)
        if force and "SOPClassUID" not in header:
            raise ImageLoadError(path, f"{name} is not a DICOM or image file.")
        _vet(path, header, pixel_info)
    return header


def _convert_elements(path: str, dataset: Dataset, depth: int = 0) -> None:
    """Convert every element value now (nested sequences too), dropping the ones that fail."""
    for tag in list(dataset.keys()):
        try:
            element = dataset[tag]
            items = list(element.value) if element.VR == "SQ" else ()
        except BaseException as exc:
            if not is_recoverable(exc):
                raise
            keyword = keyword_for_tag(tag)
            if depth == 0 and keyword in _ESSENTIAL:
                raise ImageLoadError(
                    path, f"{os.path.basename(path)} has a damaged {keyword} element ({reason(exc)})."
                ) from exc
            del dataset[tag]
            continue
        for item in items:
            if isinstance(item, Dataset):
                _convert_elements(path, item, depth + 1)


def _peek_pixel_element(fp, header: Dataset) -> tuple[int, int] | None:
    """(value start, value length) of the pixel data element, or None if the file has none.

    dcmread(stop_before_pixels) leaves the file at the pixel data tag; the generator reads
    that element's header and rewinds without reading the value. Deflated files are skipped:
    their positions are in the compressed stream.
    """
    syntax = header.file_meta.get("TransferSyntaxUID") if hasattr(header, "file_meta") else None
    if syntax is not None and syntax.is_deflated:
        return (-1, _UNDEFINED_LENGTH)
    implicit, little = header.original_encoding
    if implicit is None:
        return (-1, _UNDEFINED_LENGTH)
    start = fp.tell()
    found: dict[str, int] = {}

    def stop(tag, vr, length) -> bool:
        if tag in _PIXEL_TAGS:
            found["length"] = length
        return True

    for _ in data_element_generator(fp, implicit, little, stop_when=stop):
        pass
    if "length" not in found:
        return None
    element_header = 8 if implicit else 12  # pixel data VRs (OB/OW/OF/OD) have 4-byte lengths
    return start + element_header, found["length"]


def _vet(path: str, header: Dataset, pixel_info: tuple[int, int] | None) -> None:
    name = os.path.basename(path)
    if "Rows" not in header or "Columns" not in header:
        kind = header.get("SOPClassUID")
        kind_text = f" (SOP class: {kind.name})" if kind is not None else ""
        raise ImageLoadError(path, f"{name} contains no image data{kind_text}.")
    rows, columns = int(header.Rows or 0), int(header.Columns or 0)
    if rows <= 0 or columns <= 0:
        raise ImageLoadError(path, f"{name} declares an empty image ({columns} x {rows} pixels).")
    too_big = size_error(path, rows, columns)
    if too_big is not None:
        raise too_big
    if pixel_info is None:
        raise ImageLoadError(path, f"{name} has an image header but no pixel data.")
    start, length = pixel_info
    if length == _UNDEFINED_LENGTH:
        return  # encapsulated or deflated: the decoder checks the fragments
    available = os.path.getsize(path) - start
    if available < length:
        raise ImageLoadError(
            path,
            f"{name} is truncated: its pixel data should be {length:,} bytes "
            f"but the file ends after {max(available, 0):,}.",
        )
    try:
        expected = int(get_expected_length(header))
    except Exception:  # noqa: BLE001 - incomplete Image Pixel module: let the decoder report it
        return
    if length < expected:
        raise ImageLoadError(
            path,
            f"{name} has {length:,} bytes of pixel data but its header describes {expected:,}.",
        )
