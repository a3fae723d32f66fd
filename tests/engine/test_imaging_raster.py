"""PNG, JPEG and TIFF (8/16-bit, grayscale and colour) through the same Frame/render path."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from engine.imaging import ImageLoadError, Window, auto_window, initial_window, open_image, open_paths, render

CT = get_testdata_file("CT_small.dcm")
RGB = get_testdata_file("examples_rgb_color.dcm")


def ct_as_uint16() -> np.ndarray:
    """CT_small's stored values shifted to unsigned 16 bit (what a 16-bit PNG export holds)."""
    stored = pydicom.dcmread(CT).pixel_array.astype(np.int32)
    return (stored - stored.min()).astype(np.uint16)


def ct_as_uint8() -> np.ndarray:
    values = ct_as_uint16().astype(np.float64)
    return np.rint(values / values.max() * 255).astype(np.uint8)


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16bit_grayscale_keeps_its_values_and_gets_windowed(tmp_path, suffix):
    values = ct_as_uint16()
    path = tmp_path / f"ct16.{suffix}"
    Image.fromarray(values).save(path)
    stack = open_image(path)
    frame = stack.frame(0)
    assert stack.kind == "raster" and stack.modality == "" and stack.transfer_syntax == ""
    assert not stack.is_color and stack.spacing is None and stack.header(0) is None
    assert frame.stored.dtype == np.uint16
    np.testing.assert_array_equal(frame.stored, values)
    assert frame.windows == () and initial_window(frame) == auto_window(frame)
    lo, hi = np.percentile(values.astype(np.float64), [0.5, 99.5])
    assert auto_window(frame) == Window((lo + hi) / 2, hi - lo, "LINEAR_EXACT", "auto")
    center, width = 1100.0, 300.0
    x = values.astype(np.float64)
    ramp = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255  # PS3.3 C.11.2.1.2.1, output 0..255
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    expected = np.where(x <= low, 0.0, np.where(x > high, 255.0, ramp))
    assert np.abs(render(frame, Window(center, width)).astype(float) - expected).max() <= 0.5 + 1e-6


@pytest.mark.parametrize("suffix", ["png", "tif", "jpg"])
def test_8bit_grayscale_displays_as_stored(tmp_path, suffix):
    values = ct_as_uint8()
    path = tmp_path / f"ct8.{suffix}"
    Image.fromarray(values).save(path)
    frame = open_image(path).frame(0)
    decoded = np.asarray(Image.open(path))  # JPEG is lossy: compare with what Pillow decodes
    if suffix != "jpg":
        np.testing.assert_array_equal(decoded, values)
    np.testing.assert_array_equal(frame.stored, decoded)
    assert initial_window(frame).explanation == "full range"
    np.testing.assert_array_equal(render(frame), decoded)  # the figure looks like the figure
    np.testing.assert_array_equal(render(frame, invert=True), 255 - decoded)


@pytest.mark.parametrize("suffix", ["png", "tif", "jpg"])
def test_colour_files_render_their_rgb(tmp_path, suffix):
    rgb = pydicom.dcmread(RGB).pixel_array
    path = tmp_path / f"colour.{suffix}"
    Image.fromarray(rgb).save(path)
    stack = open_image(path)
    frame = stack.frame(0)
    decoded = np.asarray(Image.open(path).convert("RGB"))
    if suffix != "jpg":
        np.testing.assert_array_equal(decoded, rgb)
    assert stack.is_color and frame.is_color and stack.photometric == "RGB"
    np.testing.assert_array_equal(render(frame), decoded)
    assert frame.stored_value_at(10, 20) == tuple(int(v) for v in decoded[20, 10])


def test_rgba_and_palette_pngs_become_rgb(tmp_path):
    rgb = pydicom.dcmread(RGB).pixel_array
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).quantize(16).save(tmp_path / "palette.png")
    np.testing.assert_array_equal(open_image(tmp_path / "rgba.png").frame(0).stored, rgb)
    palette = open_image(tmp_path / "palette.png").frame(0).stored
    np.testing.assert_array_equal(palette, np.asarray(Image.open(tmp_path / "palette.png").convert("RGB")))


def test_multipage_tiff_is_one_stack_of_pages(tmp_path):
    values = ct_as_uint16()
    pages = [Image.fromarray(values + i) for i in range(3)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    stack = open_image(path)
    assert stack.n_frames == 3
    np.testing.assert_array_equal(stack.frame(2).stored, values + 2)
    assert stack.frame_source(2).frame_number == 3 and stack.frame_source(2).sop_instance_uid is None


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (8-bit gray) with a one-row data stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 2)) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # we refuse it ourselves
@pytest.mark.parametrize("size", [(20000, 20000), (12000, 9000)])
def test_huge_raster_is_refused_from_its_header(tmp_path, size):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(*size))
    result = open_paths([path])
    assert result.stacks == []
    message = result.errors[0].message
    assert f"{size[0] * size[1]:,} pixels" in message or f"{size[0]} x {size[1]} pixels" in message
    assert "10000 x 10000" in message


def test_corrupt_png_fails_with_a_sentence_on_decode(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(ct_as_uint8()).save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(data[: len(data) // 2])
    stack = open_image(bad)  # header intact
    with pytest.raises(ImageLoadError) as info:
        stack.frame(0)
    assert str(info.value).startswith("bad.png could not be decoded")
