"""The dciodvfy check that the export tests use does catch a broken object."""

from __future__ import annotations

import pydicom
from pydicom.data import get_testdata_file

from tests.engine.dicom_tools import dciodvfy_errors


def test_dciodvfy_reports_a_missing_type_1_attribute(tmp_path):
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del dataset.Modality  # Type 1 in the General Series module
    dataset.save_as(tmp_path / "broken.dcm")
    errors = dciodvfy_errors(tmp_path / "broken.dcm")
    assert any("Modality" in line for line in errors), errors
