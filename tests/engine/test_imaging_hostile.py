"""Hostile files: any bytes give an image or a clean ImageLoadError/LoadError, never a crash.

Covers the contract at its seams (header reading, decoding), decoder-process isolation (a
decoder that aborts, a decoder that never returns) and Hypothesis-generated header values.
"""

from __future__ import annotations

import multiprocessing
import struct
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.data import get_testdata_file

from engine.imaging import ImageLoadError, decoders, initial_window, key_facts, open_image, open_paths, render, tag_tree
from engine.imaging.decoder_pool import DecoderPool, configure_decoder_pool, decoder_pool, set_decode_timeout
from engine.imaging.guard import guarded
from engine.imaging.raster import read_raster_frame
from tests.engine.hostile_decoders import (
    ABORT,
    HANG,
    PILLOW_ABORT,
    PILLOW_HANG,
    ZLIB_ABORT,
    result_that_fails_to_unpickle,
    unpicklable_result,
)
from tests.engine.test_imaging_raster import png_header_only

RLE = get_testdata_file("MR_small_RLE.dcm")
J2K = get_testdata_file("MR_small_jp2klossless.dcm")
CT = get_testdata_file("CT_small.dcm")
DEFLATED = get_testdata_file("image_dfl.dcm")


@pytest.fixture
def rasters(tmp_path) -> dict[str, tuple[Path, np.ndarray]]:
    """A 16-bit PNG, a 16-bit TIFF (deflate-compressed, so libtiff decodes it) and a JPEG, with
    the pixels Pillow decodes from each in this process."""
    values = np.arange(96 * 80, dtype=np.uint16).reshape(96, 80) * 7
    files = {"png": tmp_path / "ct16.png", "tif": tmp_path / "ct16.tif", "jpg": tmp_path / "photo.jpg"}
    Image.fromarray(values).save(files["png"])
    Image.fromarray(values).save(files["tif"], compression="tiff_adobe_deflate")
    Image.fromarray((values // 256).astype(np.uint8)).save(files["jpg"])
    return {kind: (path, np.asarray(Image.open(path))) for kind, path in files.items()}


@pytest.fixture
def hostile_pool():
    """Install a test decoder in the decoder processes; restore the real ones afterwards."""

    def install(setup: str) -> None:
        configure_decoder_pool(child_setup=setup)

    yield install
    configure_decoder_pool(child_setup=None)
    set_decode_timeout(30.0)


def test_compressed_frames_decode_in_a_decoder_process_exactly(tmp_path):
    stack = open_image(J2K)
    frame = stack.frame(0)
    np.testing.assert_array_equal(frame.stored, pydicom.dcmread(J2K).pixel_array)
    assert decoder_pool().n_processes >= 1  # it ran in a child, not here


def test_a_decoder_that_aborts_becomes_a_load_error_and_the_next_frame_decodes(hostile_pool):
    hostile_pool(ABORT)
    rle, j2k = open_image(RLE), open_image(J2K)
    with pytest.raises(ImageLoadError) as caught:
        rle.frame(0)
    message = str(caught.value)
    assert "MR_small_RLE.dcm" in message and "RLE Lossless" in message and "SIGABRT" in message
    assert caught.value.path.endswith("MR_small_RLE.dcm")
    np.testing.assert_array_equal(j2k.frame(0).stored, pydicom.dcmread(J2K).pixel_array)  # pool restarted
    assert decoder_pool().restarts == 1
    with pytest.raises(ImageLoadError, match="crashed"):  # and it dies again, cleanly again
        open_image(RLE).frame(0)
    assert decoder_pool().restarts == 2


def test_a_failed_frame_is_remembered_until_its_failure_is_forgotten(hostile_pool):
    hostile_pool(ABORT)
    stack = open_image(RLE)
    with pytest.raises(ImageLoadError, match="crashed") as caught:
        stack.frame(0)
    assert stack.failures() == {0: caught.value}
    hostile_pool(None)  # a decoder that works (say, a longer time limit)
    with pytest.raises(ImageLoadError, match="crashed"):
        stack.frame(0)  # remembered: not decoded again
    assert stack.forget_failures() == 1 and stack.failures() == {}
    np.testing.assert_array_equal(stack.frame(0).stored, pydicom.dcmread(RLE).pixel_array)


def test_a_result_that_cannot_cross_the_pipe_is_not_called_damaged_pixel_data():
    """The decode worked but its answer could not be sent back (or rebuilt here): the error says
    so, the file is not blamed, and the pool goes on decoding."""
    pool = DecoderPool(workers=1)
    try:
        with pytest.raises(ImageLoadError, match=r"scan\.dcm, but its result could not be sent back") as sent:
            pool.run("/data/scan.dcm", "test", unpicklable_result)
        with pytest.raises(ImageLoadError, match="could not be received") as received:
            pool.run("/data/scan.dcm", "test", result_that_fails_to_unpickle)
        for caught in (sent, received):
            assert "damaged" not in str(caught.value) and "crashed" not in str(caught.value)
            assert caught.value.path == "/data/scan.dcm"
        assert "cannot be rebuilt in the viewer" in str(received.value)
        assert pool.run("/data/scan.dcm", "test", abs, -3) == 3
    finally:
        pool.shutdown()


def test_a_decode_past_the_time_limit_is_abandoned(hostile_pool):
    hostile_pool(HANG)
    set_decode_timeout(1.5)
    decoder_pool().warm()
    stack = open_image(RLE)
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"MR_small_RLE.dcm took longer than 1.5 s") as caught:
        stack.frame(0)
    assert time.monotonic() - started < 20
    assert "abandoned" in str(caught.value)
    np.testing.assert_array_equal(open_image(J2K).frame(0).stored, pydicom.dcmread(J2K).pixel_array)


@pytest.mark.parametrize("kind", ["png", "tif", "jpg"])
def test_raster_pixels_decode_in_a_decoder_process_exactly(rasters, kind):
    path, expected = rasters[kind]
    frame = open_image(path).frame(0)
    np.testing.assert_array_equal(frame.stored, expected)
    assert decoder_pool().n_processes >= 1  # Pillow decoded it in a child, not here


def test_a_pillow_decoder_that_aborts_becomes_a_load_error_and_the_next_image_decodes(hostile_pool, rasters):
    hostile_pool(PILLOW_ABORT)
    for kind, label in (("png", "PNG (Pillow)"), ("jpg", "JPEG (Pillow)"), ("tif", "TIFF (Pillow)")):
        path, _ = rasters[kind]
        stack = open_image(path)  # the header is read here: Image.open decodes no pixel
        with pytest.raises(ImageLoadError) as caught:
            stack.frame(0)
        message = str(caught.value)
        assert f"The {label} decoder crashed on {path.name}" in message and "SIGABRT" in message
        assert caught.value.path.endswith(path.name)
    np.testing.assert_array_equal(open_image(CT).frame(0).stored, pydicom.dcmread(CT).pixel_array)
    np.testing.assert_array_equal(open_image(J2K).frame(0).stored, pydicom.dcmread(J2K).pixel_array)
    assert decoder_pool().restarts == 3


def test_a_raster_decode_past_the_time_limit_is_abandoned(hostile_pool, rasters):
    hostile_pool(PILLOW_HANG)
    set_decode_timeout(1.5)
    decoder_pool().warm()
    path, _ = rasters["png"]
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"ct16.png took longer than 1.5 s to decode with the PNG \(Pillow\)"):
        open_image(path).frame(0)
    assert time.monotonic() - started < 20
    np.testing.assert_array_equal(open_image(J2K).frame(0).stored, pydicom.dcmread(J2K).pixel_array)


def test_deflated_pixel_data_is_inflated_in_a_decoder_process(hostile_pool):
    expected = pydicom.dcmread(DEFLATED).pixel_array
    np.testing.assert_array_equal(open_image(DEFLATED).frame(0).stored, expected)
    hostile_pool(ZLIB_ABORT)  # zlib aborts, in the decoder processes only
    stack = open_image(DEFLATED)  # so the header, read here, still opens
    with pytest.raises(
        ImageLoadError,
        match=r"Deflated Explicit VR Little Endian \(zlib\) decoder crashed "
        r"on image_dfl.dcm .*SIGABRT",
    ):
        stack.frame(0)


def _decode_in_a_daemon(paths: list[str], answers) -> None:
    answers.put([open_image(path).frame(0).stored for path in paths])


def test_a_daemonic_process_which_may_not_start_decoder_processes_decodes_in_process(rasters):
    """DataLoader workers are daemonic: Python forbids them to start processes."""
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    paths = [str(rasters["png"][0]), J2K]
    worker = context.Process(target=_decode_in_a_daemon, args=(paths, answers), daemon=True)
    worker.start()
    png, j2k = answers.get(timeout=60)
    worker.join(timeout=30)
    assert worker.exitcode == 0
    np.testing.assert_array_equal(png, rasters["png"][1])
    np.testing.assert_array_equal(j2k, pydicom.dcmread(J2K).pixel_array)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # we refuse it ourselves
def test_the_size_limit_is_checked_again_where_pixels_are_decoded(tmp_path):
    path = tmp_path / "grew.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    stack = open_image(path)  # opened while small ...
    path.write_bytes(png_header_only(12000, 9000))  # ... replaced by a 108-megapixel file
    with pytest.raises(ImageLoadError, match=r"grew.png is 12000 x 9000 pixels, larger than"):
        read_raster_frame(str(path), 0)
    with pytest.raises(ImageLoadError, match=r"grew.png .*larger than"):
        stack.frame(0)


def test_a_jpeg2000_stream_declaring_a_huge_image_is_refused_before_decoding(tmp_path):
    data = bytearray(Path(J2K).read_bytes())
    siz = data.index(b"\xff\x4f\xff\x51")
    data[siz + 12 : siz + 16] = struct.pack(">I", 2_000_000)  # Ysiz: 64 rows become 2 million
    path = tmp_path / "bomb.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match=r"bomb.dcm has a damaged JPEG 2000 stream: it declares a 64 x 2000000"):
        open_image(path).frame(0)


class FakePanic(BaseException):
    """Stands in for pyo3_runtime.PanicException, which derives from BaseException."""


@pytest.mark.parametrize("path", [CT, RLE])
def test_native_panics_in_decoding_become_load_errors(monkeypatch, path):
    def panic(*_args, **_kwargs):
        raise FakePanic("called `Result::unwrap()` on an `Err` value")

    monkeypatch.setattr(decoders, "pixel_array", panic)
    with pytest.raises(ImageLoadError, match=Path(path).name) as caught:
        decoders.decode_pixels(path, pydicom.dcmread(path).file_meta.TransferSyntaxUID, None)
    assert "FakePanic" in str(caught.value) or "unwrap" in str(caught.value)


def test_interrupts_and_exits_are_never_swallowed():
    for stop in (KeyboardInterrupt, SystemExit):
        with pytest.raises(stop), guarded("x.dcm", "decoded"):
            raise stop()
    with pytest.raises(ImageLoadError, match=r"x\.dcm could not be decoded: boom"), guarded("x.dcm", "decoded"):
        raise FakePanic("boom")


def _with_bad_vr(tmp_path: Path, tag: tuple[int, int]) -> Path:
    """CT_small with the VR of one element replaced by 'ZZ' (pydicom cannot convert it)."""
    data = bytearray(Path(CT).read_bytes())
    group, element = tag
    offset = data.index(struct.pack("<HH", group, element), 132)
    data[offset + 4 : offset + 6] = b"ZZ"
    path = tmp_path / f"bad_vr_{group:04x}{element:04x}.dcm"
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_element_the_image_does_not_need_is_dropped(tmp_path):
    path = _with_bad_vr(tmp_path, (0x0008, 0x0090))  # ReferringPhysicianName
    result = open_paths([path])
    assert not result.errors
    stack = result.stacks[0]
    assert "ReferringPhysicianName" not in stack.header(0)
    assert render(stack.frame(0), None).shape == (128, 128)
    assert tag_tree(stack.header(0), reveal_phi=True)  # the metadata panel can list it


def test_a_damaged_element_the_image_needs_refuses_the_file(tmp_path):
    path = _with_bad_vr(tmp_path, (0x0028, 0x0010))  # Rows
    result = open_paths([path])
    assert not result.stacks
    assert "damaged Rows element" in result.errors[0].message and path.name in result.errors[0].message


# ----- Hypothesis: odd header values
def _encode(tag: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" " if vr in ("IS", "DS", "CS") else b"\0"
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode() + struct.pack("<H", len(value)) + value


_numbers_as_text = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1e308",
            "-0",
            "nan",
            "inf",
            "1\\2\\3",
            "\\",
            "abc",
            "0x10",
            "1,5",
            "99999999999999999999",
            "1.5\\-2",
            "\x00\x01",
            "\u00e9",
        ]
    ),
)
_ds_values = st.lists(_numbers_as_text, min_size=0, max_size=4).map(lambda parts: "\\".join(parts))
_us_values = st.one_of(
    st.lists(st.integers(0, 65535), min_size=0, max_size=3).map(lambda v: struct.pack(f"<{len(v)}H", *v)),
    st.binary(max_size=7),
)
_cs_values = st.one_of(
    st.sampled_from(
        [
            "MONOCHROME1",
            "MONOCHROME2",
            "RGB",
            "PALETTE COLOR",
            "YBR_FULL",
            "YBR_FULL_422",
            "",
            "HSV",
            "MONOCHROME2\\RGB",
            "CMYK",
        ]
    ),
    st.text(max_size=20),
)

HEADER_FIELDS = {
    # keyword: (tag, VR, strategy of raw value bytes)
    "Rows": (0x00280010, "US", _us_values),
    "Columns": (0x00280011, "US", _us_values),
    "BitsAllocated": (0x00280100, "US", _us_values),
    "PixelRepresentation": (0x00280103, "US", _us_values),
    "PhotometricInterpretation": (0x00280004, "CS", _cs_values.map(lambda s: s.encode("latin-1", "replace"))),
    "NumberOfFrames": (0x00280008, "IS", _ds_values.map(lambda s: s.encode("latin-1", "replace"))),
    "PixelSpacing": (0x00280030, "DS", _ds_values.map(lambda s: s.encode("latin-1", "replace"))),
    "WindowCenter": (0x00281050, "DS", _ds_values.map(lambda s: s.encode("latin-1", "replace"))),
    "WindowWidth": (0x00281051, "DS", _ds_values.map(lambda s: s.encode("latin-1", "replace"))),
    "RescaleSlope": (0x00281053, "DS", _ds_values.map(lambda s: s.encode("latin-1", "replace"))),
}


@st.composite
def odd_headers(draw) -> dict[str, bytes]:
    chosen = draw(st.sets(st.sampled_from(sorted(HEADER_FIELDS)), min_size=1, max_size=4))
    return {name: draw(HEADER_FIELDS[name][2]) for name in sorted(chosen)}


def _ct_with(values: dict[str, bytes], folder: Path) -> Path:
    """CT_small whose chosen elements carry exactly these raw value bytes."""
    ds = pydicom.dcmread(CT)
    for name in values:
        if name in ds:
            del ds[name]
    path = folder / "odd.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = bytearray(path.read_bytes())
    pixel_offset = data.rindex(struct.pack("<HH", 0x7FE0, 0x0010) + b"OW")
    raw = b"".join(_encode(HEADER_FIELDS[name][0], HEADER_FIELDS[name][1], value) for name, value in values.items())
    data[pixel_offset:pixel_offset] = raw
    path.write_bytes(bytes(data))
    return path


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about each odd value
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=odd_headers())
def test_odd_header_values_give_an_image_or_a_clean_error(tmp_path, values):
    path = _ct_with(values, tmp_path)
    result = open_paths([path])
    assert len(result.stacks) + len(result.errors) == 1
    for error in result.errors:
        assert "odd.dcm" in error.message
        assert "Traceback" not in error.message
    for stack in result.stacks:
        key_facts(stack, 0)
        tag_tree(stack.header(0), reveal_phi=True)
        try:
            frame = stack.frame(0)
        except ImageLoadError as error:
            assert "odd.dcm" in str(error)
            continue
        pixels = render(frame, initial_window(frame))
        assert pixels.shape[:2] == (stack.rows, stack.columns)
