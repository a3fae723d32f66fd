"""The display pipeline against pydicom's own functions and the PS3.3 C.11.2.1 formulas."""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

from engine.imaging import (
    LutData,
    PixelParams,
    Window,
    auto_window,
    display_values,
    frame_from_array,
    initial_window,
    open_image,
    render,
    render_rgb,
)

CT = get_testdata_file("CT_small.dcm")
MR = get_testdata_file("MR_small.dcm")


def output_range(ds: Dataset) -> tuple[float, float]:
    """The VOI output range pydicom windows into (its docs: BitsStored, sign, rescale)."""
    if ds.PixelRepresentation == 0:
        y_min, y_max = 0.0, 2.0**ds.BitsStored - 1
    else:
        y_min, y_max = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        y_min = y_min * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        y_max = y_max * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return y_min, y_max


def pydicom_display(ds: Dataset) -> np.ndarray:
    """pydicom's pipeline on the real dataset, then its output range scaled to 8 bit (floats)."""
    modality = apply_modality_lut(ds.pixel_array, ds)
    voi = apply_voi_lut(modality, ds, index=0)
    y_min, y_max = output_range(ds)
    return (voi - y_min) / (y_max - y_min) * 255.0


def assert_rounds_to(ours: np.ndarray, reference: np.ndarray) -> None:
    """Our uint8 is the nearest integer to the reference float (ties either way)."""
    assert ours.dtype == np.uint8 and ours.shape == reference.shape
    assert np.abs(ours.astype(np.float64) - reference).max() <= 0.5 + 1e-6


def with_window(path: str, center: float, width: float, function: str | None = None) -> Dataset:
    ds = pydicom.dcmread(path)
    ds.WindowCenter, ds.WindowWidth = center, width
    if function:
        ds.VOILUTFunction = function
    return ds


# ---- against pydicom on real files ------------------------------------------------------


def test_ct_hounsfield_values_equal_stored_times_slope_plus_intercept():
    ds = pydicom.dcmread(CT)
    frame = open_image(CT).frame(0)
    stored = ds.pixel_array
    hu = stored.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(frame.stored, stored)
    np.testing.assert_array_equal(frame.modality_values(), hu)
    assert frame.modality_value_at(40, 70) == hu[70, 40]
    assert frame.stored_value_at(40, 70) == int(stored[70, 40])


@pytest.mark.parametrize(("center", "width"), [(40, 400), (-600, 1500), (480, 2500), (55, 1)])
def test_ct_window_matches_pydicom_apply_windowing(center, width):
    ds = with_window(CT, center, width)
    ours = render(open_image(CT).frame(0), Window(center, width))
    assert_rounds_to(ours, pydicom_display(ds))


def test_mr_header_window_is_initial_and_matches_pydicom():
    ds = pydicom.dcmread(MR)
    frame = open_image(MR).frame(0)
    assert initial_window(frame) == Window(float(ds.WindowCenter), float(ds.WindowWidth), "LINEAR", "")
    assert_rounds_to(render(frame), pydicom_display(ds))


def test_every_header_window_is_listed_with_its_explanation(tmp_path):
    ds = pydicom.dcmread(CT)
    ds.WindowCenter, ds.WindowWidth = [40, -600], [400, 1500]
    ds.WindowCenterWidthExplanation = ["SOFT", "LUNG"]
    path = tmp_path / "two_windows.dcm"
    ds.save_as(path)
    frame = open_image(path).frame(0)
    assert frame.windows == (Window(40, 400, "LINEAR", "SOFT"), Window(-600, 1500, "LINEAR", "LUNG"))
    assert initial_window(frame) == frame.windows[0]
    reference = apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds, index=1)
    y_min, y_max = output_range(ds)
    assert_rounds_to(render(frame, frame.windows[1]), (reference - y_min) / (y_max - y_min) * 255)


def test_voi_lut_sequence_replaces_window_and_matches_pydicom(tmp_path):
    ds = pydicom.dcmread(MR)  # has a header window too: the LUT must win (pydicom prefer_lut)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    ramp = np.clip((np.arange(4096) - 100) * 2, 0, 4095)
    item.add_new(0x00283006, "US", ramp.tolist())
    ds.VOILUTSequence = [item]
    path = tmp_path / "voi_lut.dcm"
    ds.save_as(path)
    frame = open_image(path).frame(0)
    assert frame.has_voi_lut and initial_window(frame) is None
    reference = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, prefer_lut=True)
    assert_rounds_to(render(frame), reference.astype(np.float64) / 4095 * 255)
    # An explicit window still overrides the LUT (user drags the window).
    assert_rounds_to(render(frame, Window(600, 1600)), pydicom_display(with_window(MR, 600, 1600)))


def test_modality_lut_sequence_is_applied_before_the_window(tmp_path):
    ds = pydicom.dcmread(MR)
    del ds.WindowCenter, ds.WindowWidth
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    item.add_new(0x00283006, "US", (np.arange(4096) // 2 + 7).tolist())
    ds.ModalityLUTSequence = [item]
    path = tmp_path / "modality_lut.dcm"
    ds.save_as(path)
    frame = open_image(path).frame(0)
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    np.testing.assert_array_equal(frame.modality_values(), expected)
    ds.WindowCenter, ds.WindowWidth = 500, 800
    reference = apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds)
    assert_rounds_to(render(frame, Window(500, 800)), reference / 65535 * 255)


# ---- the PS3.3 C.11.2.1 formulas, written here --------------------------------------------


def linear(x: float, c: float, w: float) -> float:  # C.11.2.1.2.1
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 255.0
    return ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0


def linear_exact(x: float, c: float, w: float) -> float:  # C.11.2.1.3.2
    if x <= c - w / 2:
        return 0.0
    if x > c + w / 2:
        return 255.0
    return ((x - c) / w + 0.5) * 255.0


def sigmoid(x: float, c: float, w: float) -> float:  # C.11.2.1.3.1
    exponent = -4 * (x - c) / w
    return 0.0 if exponent > 700 else 255.0 / (1 + math.exp(exponent))


@pytest.mark.parametrize(
    ("function", "formula"), [("LINEAR", linear), ("LINEAR_EXACT", linear_exact), ("SIGMOID", sigmoid)]
)
@pytest.mark.parametrize(("center", "width"), [(40.0, 400.0), (-600.0, 1500.0), (10.5, 3.0)])
def test_voi_functions_follow_ps33_formulas(function, formula, center, width):
    frame = open_image(CT).frame(0)
    hu = frame.modality_values()
    expected = np.vectorize(lambda x: formula(x, center, width))(hu)
    assert_rounds_to(render(frame, Window(center, width, function)), expected)


def test_voi_function_from_header_is_used(tmp_path):
    ds = with_window(CT, 40, 400, "SIGMOID")
    path = tmp_path / "sigmoid.dcm"
    ds.save_as(path)
    frame = open_image(path).frame(0)
    assert frame.windows[0].function == "SIGMOID"
    assert_rounds_to(render(frame), pydicom_display(ds))


# ---- MONOCHROME1, invert, step, colour -------------------------------------------------------


def test_monochrome1_is_inverted_after_voi(tmp_path):
    ds = pydicom.dcmread(CT)
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "mono1.dcm"
    ds.save_as(path)
    mono1 = open_image(path).frame(0)
    mono2 = open_image(CT).frame(0)
    window = Window(300, 900)  # asymmetric about the data: inverting before VOI would differ
    assert mono1.monochrome1 and not mono2.monochrome1
    np.testing.assert_array_equal(render(mono1, window), 255 - render(mono2, window))
    np.testing.assert_array_equal(render(mono1, window, invert=True), render(mono2, window))
    flipped_before = render(frame_from_array(-mono2.stored, params=mono2.params), window)
    assert not np.array_equal(render(mono1, window), flipped_before)


def test_step_renders_every_nth_pixel_of_the_exact_image():
    frame = open_image(CT).frame(0)
    full = render(frame, Window(40, 400))
    np.testing.assert_array_equal(render(frame, Window(40, 400), step=3), full[::3, ::3])
    with pytest.raises(ValueError, match="step must be >= 1"):
        render(frame, step=0)


def test_render_rgb_is_the_grayscale_render_in_three_channels():
    frame = open_image(CT).frame(0)
    rgb = render_rgb(frame, Window(40, 400), invert=True)
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], render(frame, Window(40, 400), invert=True))


def test_colour_frames_render_their_rgb_and_invert():
    path = get_testdata_file("examples_rgb_color.dcm")
    frame = open_image(path).frame(0)
    rgb = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(render(frame, Window(40, 400)), rgb)  # windows do not apply
    np.testing.assert_array_equal(render(frame, invert=True), 255 - rgb)
    np.testing.assert_array_equal(render_rgb(frame), rgb)


# ---- the fast path ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.int8])
@pytest.mark.parametrize(
    "window", [Window(40, 400), Window(-600, 1500, "LINEAR_EXACT"), Window(100, 30, "SIGMOID"), None]
)
def test_lut_path_equals_direct_path_for_every_stored_value(dtype, window):
    info = np.iinfo(dtype)
    every_value = np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
    stored = every_value.reshape(-1, 256)
    voi = LutData.from_values(-50, 12, np.clip(np.arange(5000) * 1.3, 0, 4095).astype(int), "ramp")
    params = PixelParams(
        bits_stored=info.bits, signed=info.min < 0, rescale=(1.5, -1024.0), voi_luts=(voi,) if window is None else ()
    )
    frame = frame_from_array(stored, params=params)
    for flip in (False, True):
        fast = render(frame, window, invert=flip)
        direct = display_values(stored, params, window or None, flip=flip)
        np.testing.assert_array_equal(fast, direct)


def test_float_frames_use_the_direct_path_with_the_same_math():
    values = np.linspace(-0.2, 1.3, 64 * 64, dtype=np.float32).reshape(64, 64)
    frame = frame_from_array(values)
    expected = np.vectorize(lambda x: linear_exact(x, 0.5, 1.0))(values.astype(np.float64))
    assert_rounds_to(render(frame, Window(0.5, 1.0, "LINEAR_EXACT")), expected)


def test_too_narrow_window_is_a_threshold_not_an_error():
    frame = open_image(CT).frame(0)
    hu = frame.modality_values()
    out = render(frame, Window(0, 0.2))  # LINEAR needs width >= 1: raised to 1
    np.testing.assert_array_equal(out, np.where(hu > -0.5, 255, 0))


# ---- auto window --------------------------------------------------------------------------


def test_auto_window_spans_robust_percentiles_of_modality_values():
    frame = open_image(CT).frame(0)
    lo, hi = np.percentile(frame.modality_values(), [0.5, 99.5])
    window = auto_window(frame)
    assert window == Window((lo + hi) / 2, hi - lo, "LINEAR_EXACT", "auto")
    assert initial_window(frame) == window  # CT_small has no header window
    out = render(frame)
    hu = frame.modality_values()
    assert (out[hu <= lo] == 0).all() and (out[hu >= hi] == 255).all()


def test_auto_window_of_a_flat_image_is_valid():
    frame = frame_from_array(np.full((8, 8), 7, dtype=np.uint16))
    assert auto_window(frame).width == 1.0
    assert render(frame).shape == (8, 8)


WINDOWS = [(40.0, 400.0), (-600.0, 1500.0), (0.5, 1.0), (12.25, 3.5), (100.0, 0.3)]


@pytest.mark.parametrize(
    ("function", "center", "width"),
    [
        (function, center, width)
        for function in ("LINEAR", "LINEAR_EXACT", "SIGMOID")
        for center, width in WINDOWS
        if not (function == "LINEAR" and width < 1)  # pydicom rejects these; ours widens them to 1
    ],
)
def test_window_values_equal_pydicom_apply_windowing(function, center, width):
    """Our window formulas are pydicom's, bit for bit, over a dense range of values."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    from engine.imaging.display import window_values

    values = np.linspace(-2000, 2000, 40001)
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored = 8
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, function
    with np.errstate(over="ignore"):
        expected = apply_windowing(values.copy(), ds)
    np.testing.assert_array_equal(window_values(values, Window(center, width, function)), expected)
