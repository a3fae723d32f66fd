"""``main.py pacs`` against the real Orthanc of tests/orthanc.py, over DICOMweb and DIMSE."""

from __future__ import annotations

import json

import pydicom
import pytest
from pydicom.data import get_testdata_file

from main import main
from tests.orthanc import OUR_AET, seeded_orthanc


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    yield from seeded_orthanc(tmp_path_factory)


def urls(pacs):
    return {"dicomweb": pacs.server.dicomweb_url, "dimse": pacs.server.dimse_url}


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_echo_find_get(pacs, protocol, tmp_path, capsys):
    url = urls(pacs)[protocol]
    assert main(["pacs", "echo", "--url", url, "--aet", OUR_AET]) == 0
    assert "answered" in capsys.readouterr().out
    assert main(["pacs", "find", "--url", url, "--patient-id", "PACS-CT", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    study = pacs.ct[0]
    assert [json.loads(line) for line in lines] == [
        {
            "StudyInstanceUID": study.StudyInstanceUID,
            "StudyDate": "20240315",
            "Modality": "CT",
            "StudyDescription": "Chest CT",
            "NumberOfStudyRelatedSeries": 1,
        }
    ]
    assert main(["pacs", "find", "--url", url, "--modality", "CT", "--date", "20240101-20241231"]) == 0
    out = capsys.readouterr().out
    assert study.StudyInstanceUID in out and str(pacs.corrupt[0].StudyInstanceUID) not in out
    assert "PACS-CT" not in out and "Test^Pacs" not in out  # no patient identifiers on the terminal
    assert (
        main(
            [
                "pacs",
                "get",
                "--url",
                url,
                study.StudyInstanceUID,
                "--series",
                study.SeriesInstanceUID,
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    files = sorted((tmp_path / "out" / study.StudyInstanceUID / study.SeriesInstanceUID).glob("*.dcm"))
    assert {pydicom.dcmread(f).SOPInstanceUID for f in files} == {ds.SOPInstanceUID for ds in pacs.ct}
    assert (
        main(["pacs", "get", "--url", url, str(pacs.corrupt[0].StudyInstanceUID), "--out", str(tmp_path / "all")]) == 0
    )
    assert "5 instance(s) of 1 series" in capsys.readouterr().out  # every series of the study, the corrupt one too


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_send(pacs, protocol, capsys):
    source = pydicom.dcmread(get_testdata_file("test-SR.dcm"), stop_before_pixels=True)
    assert (
        main(["pacs", "send", "--url", urls(pacs)[protocol], "--aet", OUR_AET, get_testdata_file("test-SR.dcm")]) == 0
    )
    assert "sent 1 instance(s)" in capsys.readouterr().out
    assert main(["pacs", "find", "--url", urls(pacs)[protocol], "--modality", "SR", "--json"]) == 0
    found = [json.loads(line)["StudyInstanceUID"] for line in capsys.readouterr().out.splitlines()]
    assert source.StudyInstanceUID in found


def test_bad_input_and_pacs_failures(pacs, tmp_path, capsys):
    url = pacs.server.dicomweb_url
    assert main(["pacs", "find", "--url", url, "--date", "last week"]) == 2
    assert "not a date" in capsys.readouterr().err
    assert main(["pacs", "send", "--url", url, str(tmp_path / "missing.dcm")]) == 2
    (tmp_path / "note.txt").write_text("not dicom")
    assert main(["pacs", "send", "--url", url, str(tmp_path / "note.txt")]) == 2
    assert "not a readable DICOM file" in capsys.readouterr().err
    assert main(["pacs", "echo", "--url", "dicom://ORTHANC@no-such-pacs.invalid:104"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown host") and err.count("\n") == 1
    assert main(["pacs", "get", "--url", url, "../etc", "--out", str(tmp_path)]) == 2
