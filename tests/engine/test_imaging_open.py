"""Opening DICOM: transfer syntaxes, colour models, multi-frame, series order, functional groups."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, get_decoder
from pydicom.uid import JPEG2000Lossless, generate_uid

from engine.imaging import (
    FrameSource,
    ImageLoadError,
    PixelSpacing,
    Window,
    initial_window,
    open_image,
    open_paths,
    render,
)

MR = get_testdata_file("MR_small.dcm")
CT = get_testdata_file("CT_small.dcm")


def reference_pixels(name: str) -> np.ndarray:
    return pydicom.dcmread(get_testdata_file(name)).pixel_array


# ---- transfer syntaxes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("MR_small_jp2klossless.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless Image Compression"),
        ("MR_small_RLE.dcm", "RLE Lossless"),
        ("MR_small_bigendian.dcm", "Explicit VR Big Endian"),
        ("MR_small_implicit.dcm", "Implicit VR Little Endian"),
    ],
)
def test_lossless_syntaxes_decode_to_the_uncompressed_values(name, syntax):
    stack = open_image(get_testdata_file(name))
    assert stack.transfer_syntax == syntax
    frame = stack.frame(0)
    np.testing.assert_array_equal(frame.stored, reference_pixels("MR_small.dcm"))
    assert frame.stored.dtype.isnative


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
        "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG baseline, YBR_FULL_422
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1
        "SC_rgb_gdcm_KY.dcm",  # JPEG 2000
        "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS near lossless
        "SC_rgb_rle.dcm",
        "image_dfl.dcm",  # deflated explicit VR little endian
        "693_J2KI.dcm",  # JPEG 2000 lossy CT
        "JPEGLSNearLossless_16.dcm",
    ],
)
def test_compressed_files_decode_like_pydicom(name):
    frame = open_image(get_testdata_file(name)).frame(0)
    np.testing.assert_array_equal(frame.stored, reference_pixels(name))


def test_ybr_is_converted_to_rgb_close_to_the_rgb_original():
    ybr = open_image(get_testdata_file("SC_ybr_full_422_uncompressed.dcm")).frame(0)
    rgb = open_image(get_testdata_file("SC_rgb_rle.dcm")).frame(0)  # the same picture, stored as RGB
    assert ybr.is_color and ybr.stored.dtype == np.uint8 and ybr.stored.shape == (100, 100, 3)
    diff = np.abs(ybr.stored.astype(int) - rgb.stored.astype(int))
    assert diff.mean() < 2 and np.percentile(diff, 99) <= 8  # 4:2:2 chroma subsampling only


def test_16bit_rgb_is_scaled_to_8bit():
    frame = open_image(get_testdata_file("SC_rgb_rle_16bit.dcm")).frame(0)
    original = reference_pixels("SC_rgb_rle_16bit.dcm")
    assert frame.stored.dtype == np.uint8
    np.testing.assert_array_equal(frame.stored, np.rint(original / 65535 * 255).astype(np.uint8))


def test_palette_colour_goes_through_apply_color_lut():
    path = get_testdata_file("examples_palette.dcm")
    stack = open_image(path)
    frame = stack.frame(0)
    ds = pydicom.dcmread(path)
    expected = apply_color_lut(ds.pixel_array, ds)
    if expected.dtype == np.uint16:
        expected = np.rint(expected / 65535 * 255).astype(np.uint8)
    assert stack.is_color and stack.photometric == "PALETTE COLOR"
    np.testing.assert_array_equal(frame.stored, expected)
    np.testing.assert_array_equal(render(frame), expected)


# ---- multi-frame ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "index"), [("examples_ybr_color.dcm", 17), ("rtdose.dcm", 9), ("rtdose_rle.dcm", 3)])
def test_multiframe_files_decode_the_requested_frame(name, index):
    path = get_testdata_file(name)
    stack = open_image(path)
    ds = pydicom.dcmread(path)
    assert stack.n_frames == int(ds.NumberOfFrames)
    assert stack.key == str(stack.paths[0])
    np.testing.assert_array_equal(stack.frame(index).stored, ds.pixel_array[index])
    assert stack.frame_source(index) == FrameSource(stack.paths[0], ds.SOPInstanceUID, index + 1)


def test_rtdose_modality_values_use_dose_grid_scaling_free_rescale():
    path = get_testdata_file("rtdose.dcm")
    frame = open_image(path).frame(2)
    assert frame.stored.dtype == np.uint32  # wide integers: the direct (non-LUT) path
    assert render(frame).shape == (10, 10)
    np.testing.assert_array_equal(frame.modality_values(), reference_pixels("rtdose.dcm")[2].astype(float))


def make_enhanced_ct(tmp_path, intercepts=(-1024.0, -924.0, -824.0)):
    """A Legacy Converted Enhanced CT (highdicom) from CT_small slices with differing rescale."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    base = pydicom.dcmread(CT)
    slices = []
    for i, intercept in enumerate(intercepts):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        ds.RescaleIntercept = intercept
        ds.WindowCenter, ds.WindowWidth = 40 + 10 * i, 400
        slices.append(ds)
    enhanced = LegacyConvertedEnhancedCTImage(
        slices, series_instance_uid=generate_uid(), series_number=9, sop_instance_uid=generate_uid(), instance_number=1
    )
    path = tmp_path / "enhanced_ct.dcm"
    enhanced.save_as(path)
    return path, base


def test_enhanced_multiframe_uses_per_frame_rescale_and_windows(tmp_path):
    path, base = make_enhanced_ct(tmp_path)
    enhanced = pydicom.dcmread(path)
    assert "RescaleIntercept" not in enhanced  # only in the functional groups
    stack = open_image(path)
    assert stack.n_frames == 3 and stack.modality == "CT"
    assert stack.spacing == PixelSpacing(0.661468, 0.661468, "PixelMeasuresSequence")
    stored = base.pixel_array
    seen = []
    for i in range(3):
        groups = enhanced.PerFrameFunctionalGroupsSequence[i]
        intercept = float(groups.PixelValueTransformationSequence[0].RescaleIntercept)
        seen.append(intercept)
        frame = stack.frame(i)
        np.testing.assert_array_equal(frame.modality_values(), stored * 1.0 + intercept)
        assert frame.modality_value_at(5, 7) == stored[7, 5] + intercept
        voi = groups.FrameVOILUTSequence[0]
        assert initial_window(frame) == Window(float(voi.WindowCenter), float(voi.WindowWidth), "LINEAR", "")
    assert sorted(seen) == [-1024.0, -924.0, -824.0]  # the frames really differ


# ---- series --------------------------------------------------------------------------------


def write_series(folder, z_values, instance_numbers, *, orientation=(1, 0, 0, 0, 1, 0), series_uid=None):
    """Copies of CT_small with positions along the normal of `orientation`; stored + i marks slice i."""
    base = pydicom.dcmread(CT)
    series_uid = series_uid or generate_uid()
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row, col)
    for i, (z, number) in enumerate(zip(z_values, instance_numbers, strict=True)):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = [float(v) for v in normal * z + np.array([3.0, -2.0, 1.0])]
        ds.PixelData = (base.pixel_array + z).astype(base.pixel_array.dtype).tobytes()
        ds.save_as(folder / f"slice_{i:02d}.dcm")
    return series_uid


def test_series_sorted_by_position_on_the_slice_normal_not_instance_number(tmp_path):
    z = [30.0, -10.0, 20.0, 0.0, 10.0]
    uid = write_series(tmp_path, z, [1, 2, 3, 4, 5], orientation=(0, 1, 0, 0, 0, -1))  # sagittal
    result = open_paths([tmp_path])
    assert not result.errors and len(result.stacks) == 1
    stack = result.stacks[0]
    assert stack.key == f"series:{uid}" and stack.n_frames == 5
    base = pydicom.dcmread(CT).pixel_array
    for i, expected_z in enumerate(sorted(z)):
        np.testing.assert_array_equal(stack.frame(i).stored, base + expected_z)
        assert stack.frame_source(i).sop_instance_uid == stack.header(i).SOPInstanceUID


def test_series_without_positions_falls_back_to_instance_number(tmp_path):
    write_series(tmp_path, [0.0, 1.0, 2.0, 3.0], [3, 1, 4, 2])
    for path in tmp_path.iterdir():
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    stack = open_image(tmp_path)
    assert [int(stack.header(i).InstanceNumber) for i in range(4)] == [1, 2, 3, 4]


def test_two_series_in_one_folder_become_two_stacks(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_series(tmp_path / "a", [0.0, 1.0], [1, 2])
    second = write_series(tmp_path / "b", [5.0, 6.0, 7.0], [1, 2, 3])
    result = open_paths([tmp_path])
    assert [(s.key, s.n_frames) for s in result.stacks] == [(f"series:{first}", 2), (f"series:{second}", 3)]


def test_frames_are_decoded_lazily_and_cached(tmp_path, monkeypatch):
    write_series(tmp_path, [0.0, 1.0, 2.0], [1, 2, 3])
    stack = open_image(tmp_path)
    import engine.imaging.stack as stack_module

    calls = []
    real = stack_module.decode_frame
    monkeypatch.setattr(stack_module, "decode_frame", lambda *a: calls.append(a[2]) or real(*a))
    assert calls == []  # opening decoded nothing
    first = stack.frame(1)
    assert stack.frame(1) is first and len(calls) == 1


# ---- bad input -----------------------------------------------------------------------------


def test_bad_files_are_reported_and_the_good_ones_still_open(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    paths = [
        empty,
        CT,
        get_testdata_file("rtplan.dcm"),
        text,
        get_testdata_file("MR_truncated.dcm"),
        get_testdata_file("test-SR.dcm"),
        MR,
        tmp_path / "missing.dcm",
    ]
    result = open_paths(paths)
    assert [s.modality for s in result.stacks] == ["CT", "MR"]
    messages = {e.path.rsplit("/", 1)[-1]: e.message for e in result.errors}
    assert messages["empty.dcm"] == "empty.dcm is empty (0 bytes)."
    assert messages["rtplan.dcm"] == "rtplan.dcm contains no image data (SOP class: RT Plan Storage)."
    assert messages["notes.txt"] == "notes.txt is not a DICOM or image file."
    assert messages["MR_truncated.dcm"].startswith("MR_truncated.dcm is truncated")
    assert messages["test-SR.dcm"] == "test-SR.dcm contains no image data (SOP class: Comprehensive SR Storage)."
    assert messages["missing.dcm"] == "missing.dcm does not exist."
    assert all(m.count(".") >= 1 and "\n" not in m and "Traceback" not in m for m in messages.values())


def test_open_image_raises_one_sentence_for_a_bad_file():
    with pytest.raises(ImageLoadError) as info:
        open_image(get_testdata_file("rtplan.dcm"))
    assert info.value.path.endswith("rtplan.dcm")
    assert str(info.value) == "rtplan.dcm contains no image data (SOP class: RT Plan Storage)."


def test_huge_dicom_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    ds = pydicom.dcmread(CT)
    ds.Rows = ds.Columns = 20000  # the pixel data is not this big: decoding it would fail differently
    path = tmp_path / "huge.dcm"
    ds.save_as(path)
    import engine.imaging.stack as stack_module

    monkeypatch.setattr(stack_module, "decode_frame", lambda *a: pytest.fail("decoded a huge image"))
    result = open_paths([path])
    assert result.stacks == []
    assert result.errors[0].message == (
        "huge.dcm is 20000 x 20000 pixels, larger than the 10000 x 10000 "
        "(100,000,000 pixel) limit, so it was not decoded."
    )


def test_missing_decoder_names_the_syntax_and_the_package(monkeypatch):
    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})  # as if no J2K plugin were installed
    stack = open_image(get_testdata_file("MR_small_jp2klossless.dcm"))  # the header still opens
    with pytest.raises(ImageLoadError) as info:
        stack.frame(0)
    message = str(info.value)
    assert "JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)" in message
    assert "pylibjpeg-openjpeg" in message and "python-gdcm" in message


def test_12bit_jpeg_extended_failure_names_the_gpl_decoder_it_needs():
    stack = open_image(get_testdata_file("JPGExtended.dcm"))
    with pytest.raises(ImageLoadError) as info:
        stack.frame(0)
    message = str(info.value)
    assert "JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51)" in message
    assert "pylibjpeg-libjpeg" in message


def test_header_only_copy_of_an_image_reports_missing_pixel_data(tmp_path):
    ds = pydicom.dcmread(CT)
    del ds.PixelData
    path = tmp_path / "no_pixels.dcm"
    ds.save_as(path)
    result = open_paths([path])
    assert result.errors[0].message == "no_pixels.dcm has an image header but no pixel data."


def test_copied_folder_with_a_dicom_file_without_extension_opens(tmp_path):
    shutil.copy(CT, tmp_path / "IM0001")
    stack = open_image(tmp_path)
    assert stack.modality == "CT" and stack.kind == "dicom"
    assert stack.spacing == PixelSpacing(0.661468, 0.661468, "PixelSpacing")


def test_a_folder_scan_skips_non_image_files_but_a_named_one_is_an_error(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(CT, folder / "ct.dcm")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "README").write_text("exported\n")
    (folder / "bad.dcm").write_bytes(b"\x00\x01garbage" * 100)  # an image extension: a failure
    result = open_paths([folder])
    assert len(result.stacks) == 1
    assert [Path(e.path).name for e in result.errors] == ["bad.dcm"]
    assert sorted(Path(p).name for p in result.skipped) == ["README", "notes.txt"]
    named = open_paths([folder / "notes.txt"])
    assert not named.skipped and named.errors[0].message == "notes.txt is not a DICOM or image file."
