"""Mask measurements on the sphere phantom: known volume, HU and diameter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.imaging import open_image
from engine.imaging.display import modality_of
from engine.imaging.volume import load_volume
from engine.segmentation import area_mm2, hu_stats, longest_diameter_mm, measure_mask, volume_ml
from tests.engine.phantom import SPHERE_HU, Phantom


@pytest.fixture(scope="module")
def sphere(tmp_path_factory):
    phantom = Phantom()
    volume = load_volume(open_image(phantom.write_series(tmp_path_factory.mktemp("phantom") / "s")))
    values = modality_of(volume.data, volume.params)
    return phantom, volume, values, values == SPHERE_HU


def test_volume_is_the_sphere_within_one_voxel_layer(sphere):
    phantom, volume, _, mask = sphere
    true_ml = 4 / 3 * math.pi * phantom.radius_mm**3 / 1000
    layer_ml = 4 * math.pi * phantom.radius_mm**2 * phantom.pixel_mm / 1000  # one pixel-thick shell
    measured = volume_ml(mask, volume.geometry)
    assert abs(measured - true_ml) <= layer_ml
    by_slice = {k: mask[k] for k in range(mask.shape[0]) if mask[k].any()}
    assert volume_ml(by_slice, volume.geometry) == pytest.approx(measured)


def test_hu_of_the_sphere_is_its_value(sphere):
    _, volume, values, mask = sphere
    result = measure_mask(mask, volume.geometry, values)
    assert result.hu is not None
    assert result.hu.mean == SPHERE_HU and result.hu.sd == 0
    assert result.hu.minimum == result.hu.maximum == SPHERE_HU
    assert result.hu.voxels == int(mask.sum())


def test_longest_diameter_is_two_radii_within_a_pixel(sphere):
    phantom, volume, values, mask = sphere
    result = measure_mask(mask, volume.geometry, values)
    assert abs(result.longest_diameter_mm - 2 * phantom.radius_mm) <= phantom.pixel_mm
    assert result.longest_diameter_slice == phantom.centre_voxel[0]
    centre = mask[phantom.centre_voxel[0]]
    assert result.area_mm2[phantom.centre_voxel[0]] == pytest.approx(centre.sum() * phantom.pixel_mm**2)
    assert abs(result.area_mm2[phantom.centre_voxel[0]] - math.pi * phantom.radius_mm**2) < 2 * math.pi * 10 * 0.75


def test_a_missing_slice_does_not_lose_volume(tmp_path):
    phantom = Phantom(missing=(20,))
    volume = load_volume(open_image(phantom.write_series(tmp_path / "s")))
    mask = modality_of(volume.data, volume.params) == SPHERE_HU
    true_ml = 4 / 3 * math.pi * phantom.radius_mm**3 / 1000
    assert abs(volume_ml(mask, volume.geometry) - true_ml) <= 4 * math.pi * 100 * phantom.slice_mm / 1000


def test_small_and_empty_masks():
    assert area_mm2(np.zeros((4, 4), bool), 0.5, 0.5) == 0
    assert longest_diameter_mm(np.zeros((4, 4), bool), 1, 1) == 0
    one = np.zeros((4, 4), bool)
    one[1, 1] = True
    assert longest_diameter_mm(one, 1, 1) == 0
    line = np.zeros((5, 10), bool)
    line[2, 1:9] = True  # collinear: no hull, all pairs compared
    assert longest_diameter_mm(line, 2.0, 0.5) == pytest.approx(7 * 0.5)
    square = np.zeros((10, 10), bool)
    square[2:6, 2:6] = True
    assert longest_diameter_mm(square, 1, 2) == pytest.approx(math.hypot(3, 6))
    assert hu_stats(np.zeros((2, 2), bool), np.ones((2, 2))) is None
