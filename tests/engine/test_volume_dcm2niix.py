"""A second opinion on volume geometry: dcm2niix (the converter neuroimaging relies on) reads the
same series, and its NIfTI affine must place the volume where ClinLens does.

Compared without assuming either tool's axis conventions: the eight corner voxel centres as a set
of patient points, and the sphere's centre found in each tool's own voxel array.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.imaging import open_image
from engine.imaging.volume import load_volume
from tests.engine.dicom_tools import dcm2niix
from tests.engine.phantom import AIR_HU, SPHERE_HU, Phantom, rotation

OBLIQUE = tuple(np.concatenate([rotation((1, 2, 0.5), 20) @ [1, 0, 0], rotation((1, 2, 0.5), 20) @ [0, 1, 0]]))
SERIES = {
    "axial": Phantom(),
    "coronal": Phantom(orientation=(1, 0, 0, 0, 0, -1)),
    "sagittal": Phantom(orientation=(0, 1, 0, 0, 0, -1)),
    "oblique": Phantom(orientation=OBLIQUE),
    "flipped": Phantom(orientation=(-1, 0, 0, 0, -1, 0)),  # rows and columns run against the patient axes
    "descending": Phantom(slice_mm=-2.0),  # slice positions fall as the files go on
}
# Not compared: a series with a missing slice. NIfTI cannot hold irregular spacing; dcm2niix warns
# ("Interslice distance varies") and its volume puts every slice after the gap one spacing early,
# while ClinLens keeps each slice at its own position (test_imaging_volume covers that case).
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def _corners(shape) -> np.ndarray:
    return np.array(list(itertools.product(*[(0, n - 1) for n in shape])), dtype=float)


def _sorted_points(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort(np.round(points, 2).T[::-1])]


def _sphere_voxel(data: np.ndarray) -> np.ndarray:
    return np.argwhere(data > (SPHERE_HU + AIR_HU) / 2).mean(axis=0)


@pytest.mark.parametrize("name", list(SERIES))
def test_volume_geometry_agrees_withdcm2niix(tmp_path, name):
    phantom = SERIES[name]
    series = phantom.write_series(tmp_path / "series")
    volume = load_volume(open_image(str(series)))
    nifti = dcm2niix(series, tmp_path / "nifti")
    affine = nifti.affine  # NIfTI voxel (i, j, k) -> RAS mm
    theirs_data = nifti.get_fdata()  # modality values: dcm2niix stores the rescale as scl_slope/inter
    assert sorted(theirs_data.shape) == sorted(volume.data.shape)

    def theirs_to_lps(voxels: np.ndarray) -> np.ndarray:
        return (voxels @ affine[:3, :3].T + affine[:3, 3]) @ LPS_FROM_RAS.T

    ours = _sorted_points(volume.geometry.voxel_to_patient(_corners(volume.data.shape)))
    theirs = _sorted_points(theirs_to_lps(_corners(theirs_data.shape)))
    np.testing.assert_allclose(ours, theirs, atol=0.01)  # float32 affine, millimetres

    our_centre = volume.geometry.voxel_to_patient(_sphere_voxel(volume.modality_values(volume.data)))
    their_centre = theirs_to_lps(_sphere_voxel(theirs_data))
    np.testing.assert_allclose(our_centre, their_centre, atol=0.01)
    np.testing.assert_allclose(our_centre, phantom.centre, atol=0.5)  # and both where the sphere was drawn
