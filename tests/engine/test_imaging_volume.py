"""Volumes from series: geometry from positions, planes at display aspect, the sphere where it is."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from engine.imaging import frame_from_array, open_image, render
from engine.imaging.volume import Plane, VolumeError, load_volume, volume_geometry
from tests.engine.phantom import AIR_HU, SPHERE_HU, Phantom, rotation

OBLIQUE = tuple(np.concatenate([rotation((1, 2, 0.5), 20) @ [1, 0, 0], rotation((1, 2, 0.5), 20) @ [0, 1, 0]]))


def _sphere_centroid(volume, plane: Plane, index: int) -> tuple[float, float]:
    """Centre of the sphere's cross-section in display coordinates (pixel centres at +0.5)."""
    hu = volume.modality_values(volume.plane_pixels(plane, index))
    inside = hu > (SPHERE_HU + AIR_HU) / 2
    assert inside.any(), f"no sphere on {plane} slice {index}"
    y, x = np.argwhere(inside).mean(axis=0)
    return x + 0.5, y + 0.5


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), OBLIQUE], ids=["axial", "oblique"])
def test_sphere_centre_is_at_its_voxel_in_all_three_planes(tmp_path, orientation):
    phantom = Phantom(orientation=orientation)
    stack = open_image(phantom.write_series(tmp_path / "series"))
    volume = load_volume(stack)
    geometry = volume.geometry
    assert geometry.shape == (phantom.slices, phantom.rows, phantom.columns)
    assert geometry.slice_spacing_mm == pytest.approx(phantom.slice_mm)  # not SliceThickness (5)
    assert geometry.warnings == ()
    assert np.allclose(geometry.patient_to_voxel(phantom.centre), phantom.centre_voxel, atol=1e-6)
    assert np.allclose(geometry.voxel_to_patient(np.array(phantom.centre_voxel, float)), phantom.centre, atol=1e-6)
    assert volume.data.dtype == np.int16  # stored values, no float copy
    assert volume.data.nbytes == phantom.slices * phantom.rows * phantom.columns * 2
    assert volume.modality_values(volume.data[phantom.centre_voxel]) == SPHERE_HU
    for plane in Plane:
        index, x, y = volume.patient_to_display(plane, phantom.centre)
        assert float(index) == pytest.approx(round(float(index)), abs=1e-6)
        cx, cy = _sphere_centroid(volume, plane, round(float(index)))
        assert abs(cx - x) <= 1.0 and abs(cy - y) <= 1.0, (plane, (cx, cy), (float(x), float(y)))
        back = volume.display_to_patient(plane, index, x, y)
        assert np.allclose(back, phantom.centre, atol=1e-6)


def test_planes_are_square_pixels_with_radiological_letters(tmp_path):
    phantom = Phantom()
    volume = load_volume(open_image(phantom.write_series(tmp_path / "s")))
    axial, coronal, sagittal = (volume.axes(p) for p in Plane)
    assert (axial.width, axial.height, axial.n_positions) == (phantom.columns, phantom.rows, phantom.slices)
    # slices 2.0 mm apart shown at 0.75 mm pixels: 40 * 2 / 0.75 rows
    assert coronal.height == round(phantom.slices * phantom.slice_mm / phantom.pixel_mm)
    assert coronal.n_positions == phantom.rows and sagittal.n_positions == phantom.columns
    assert axial.letters == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert coronal.letters == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert sagittal.letters == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    # a round sphere stays round at display aspect: equal extents across and down, within the
    # 2 mm the slices sample it at
    hu = volume.modality_values(volume.plane_pixels(Plane.CORONAL, phantom.centre_voxel[1]))
    rows, cols = np.nonzero(hu > -470)
    down_mm, across_mm = (rows.max() - rows.min()) * phantom.pixel_mm, (cols.max() - cols.min()) * phantom.pixel_mm
    assert abs(down_mm - across_mm) <= phantom.slice_mm and across_mm == pytest.approx(2 * phantom.radius_mm, abs=2)


def test_plane_renders_through_the_display_function(tmp_path):
    phantom = Phantom()
    stack = open_image(phantom.write_series(tmp_path / "s"))
    volume = load_volume(stack)
    k = phantom.centre_voxel[0]
    # the axial plane of an axial series is the slice itself, pixel for pixel, as displayed
    native = stack.frame(volume.geometry.frame_indices[k])
    assert np.array_equal(render(volume.plane_frame(Plane.AXIAL, k)), render(native))
    sagittal = render(volume.plane_frame(Plane.SAGITTAL, phantom.centre_voxel[2]))  # header window 40/400
    assert sagittal.dtype == np.uint8
    assert sagittal.shape == (volume.axes("sagittal").height, volume.axes("sagittal").width)
    assert sagittal.min() == 0 and sagittal.max() > 128  # air black, the 60 HU sphere above mid-grey
    assert render(volume.plane_frame(Plane.SAGITTAL, 0)).max() == 0


def test_missing_slice_warns_and_keeps_positions(tmp_path):
    phantom = Phantom(missing=(10,))
    volume = load_volume(open_image(phantom.write_series(tmp_path / "s")))
    geometry = volume.geometry
    assert geometry.shape[0] == phantom.slices - 1
    assert not geometry.regular
    assert len(geometry.warnings) == 1 and "missing slice" in geometry.warnings[0]
    assert "4.00 mm between slices 10 and 11" in geometry.warnings[0]
    assert geometry.slice_offsets_mm[10] == pytest.approx(11 * phantom.slice_mm)
    # the sphere (beyond the gap) is still at its true position on the coronal plane
    index, x, y = volume.patient_to_display(Plane.CORONAL, phantom.centre)
    cx, cy = _sphere_centroid(volume, Plane.CORONAL, round(float(index)))
    assert abs(cx - x) <= 1.0 and abs(cy - y) <= 1.0
    assert volume.axes(Plane.CORONAL).height == round(phantom.slices * phantom.slice_mm / phantom.pixel_mm)


def test_tilted_series_is_refused_in_one_sentence(tmp_path):
    stack = open_image(Phantom(tilt_mm_per_slice=0.5).write_series(tmp_path / "s"))
    with pytest.raises(VolumeError, match=r"sheared by 14\.0° \(gantry tilt\)") as err:
        volume_geometry(stack)
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")
    assert stack.frame(0).stored.shape == (64, 60)  # the slices themselves still open


def test_enhanced_multiframe_uses_per_frame_positions(tmp_path):
    phantom = Phantom(orientation=OBLIQUE)
    stack = open_image(phantom.write_enhanced(tmp_path / "enhanced.dcm"))
    assert stack.n_frames == phantom.slices
    volume = load_volume(stack)
    assert volume.geometry.frame_indices[0] == phantom.slices - 1  # frames were stored in reverse
    assert volume.geometry.slice_spacing_mm == pytest.approx(phantom.slice_mm)
    assert volume.modality_values(volume.data[phantom.centre_voxel]) == SPHERE_HU
    index, x, y = volume.patient_to_display(Plane.SAGITTAL, phantom.centre)
    cx, cy = _sphere_centroid(volume, Plane.SAGITTAL, round(float(index)))
    assert abs(cx - x) <= 1.0 and abs(cy - y) <= 1.0


def test_pydicom_rt_dose_grid_is_a_volume():
    """rtdose.dcm: 15 frames stacked by GridFrameOffsetVector (a real multi-frame file)."""
    stack = open_image(get_testdata_file("rtdose.dcm"))
    volume = load_volume(stack)
    geometry = volume.geometry
    from pydicom import dcmread

    header = dcmread(get_testdata_file("rtdose.dcm"), stop_before_pixels=True)
    offsets = [float(v) for v in header.GridFrameOffsetVector]
    assert geometry.shape == (15, 10, 10)
    assert geometry.slice_spacing_mm == pytest.approx(abs(np.median(np.diff(offsets))))
    assert volume.data.dtype == stack.frame(0).stored.dtype
    expected = np.stack([stack.frame(i).stored for i in geometry.frame_indices])
    assert np.array_equal(volume.data, expected)
    assert volume.axes(Plane.CORONAL).n_positions == 10


def test_single_images_and_colour_are_not_volumes():
    with pytest.raises(VolumeError, match="one slice"):
        volume_geometry(open_image(get_testdata_file("CT_small.dcm")))
    with pytest.raises(VolumeError, match="colour"):
        volume_geometry(open_image(get_testdata_file("SC_rgb_rle_2frame.dcm")))


# ----- damaged geometry headers: one sentence naming the file and the attribute
def test_a_short_grid_frame_offset_vector_is_a_volume_error_naming_it(tmp_path):
    """Issue 22: fewer offsets than frames raised IndexError from the offset lookup."""
    from pydicom import dcmread

    ds = dcmread(get_testdata_file("rtdose.dcm"))
    ds.GridFrameOffsetVector = list(ds.GridFrameOffsetVector)[:5]
    ds.save_as(tmp_path / "dose.dcm")
    with pytest.raises(VolumeError, match=r"^dose\.dcm: GridFrameOffsetVector has 5 value\(s\), not 15\.$"):
        volume_geometry(open_image(tmp_path / "dose.dcm"))


def test_nan_in_the_orientation_is_refused_before_a_plane_is_cut(tmp_path):
    """Issue 22: a NaN cosine passed the geometry and failed later ('cannot convert float NaN')."""
    from pydicom import dcmread

    series = Phantom(slices=6).write_series(tmp_path / "s")
    first = min(series.glob("*.dcm"))
    ds = dcmread(first)
    ds.ImageOrientationPatient = [1, 0, 0, 0, float("nan"), 0]
    ds.save_as(first)
    with pytest.raises(VolumeError) as err:
        load_volume(open_image(series))
    assert str(err.value) == f"{first.name}: ImageOrientationPatient has NaN."


def test_orientation_must_be_two_perpendicular_unit_vectors(tmp_path):
    for orientation, message in (
        ((1, 0, 0, 1, 0, 0), r"are 0\.0° apart, not perpendicular"),
        ((1, 0, 0, 0, 0, 0), "the column direction of ImageOrientationPatient has length 0, not 1"),
        ((2, 0, 0, 0, 1, 0), r"ImageOrientationPatient value 2 is out of range \(beyond ±1\.01\)"),
    ):
        folder = Phantom(slices=3).write_series(tmp_path / str(len(list(tmp_path.iterdir()))))
        stack = open_image(folder)
        for index in range(stack.n_frames):
            stack.header(index).ImageOrientationPatient = list(orientation)
        with pytest.raises(VolumeError, match=message):
            volume_geometry(stack)


def test_a_plane_larger_than_an_image_may_be_is_refused(tmp_path):
    """Slices metres apart at fine pixels would ask for gigabytes per coronal plane."""
    phantom = Phantom(slices=3, slice_mm=5000.0, pixel_mm=0.1)
    expected = r"the coronal plane would be 60 x 150000 pixels, more than 10000 a side \(ImagePositionPatient spans"
    with pytest.raises(VolumeError, match=expected):
        volume_geometry(open_image(phantom.write_series(tmp_path / "s")))


def test_a_slice_that_decodes_to_another_size_is_a_volume_error(tmp_path, monkeypatch):
    stack = open_image(Phantom(slices=3).write_series(tmp_path / "s"))
    real = stack.frame

    def short_frame(index):
        frame = real(index)
        return frame_from_array(frame.stored[:10], index=index, windows=frame.windows, params=frame.pixel_params)

    monkeypatch.setattr(stack, "frame", short_frame)
    with pytest.raises(VolumeError, match=r"decoded as 60 x 10 pixels, but Rows and Columns of the series say 60 x 64"):
        load_volume(stack)


def test_an_unforeseen_failure_in_the_geometry_is_still_a_volume_error(tmp_path, monkeypatch):
    """The guard behind the checked reads: the MPR view calls this on the GUI thread."""
    from engine.imaging import volume as volume_module

    def broken(*_args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(volume_module, "read_slice", broken)
    with pytest.raises(VolumeError, match=r"the geometry headers could not be read as a volume \(division by zero"):
        volume_geometry(open_image(Phantom(slices=3).write_series(tmp_path / "s")))
