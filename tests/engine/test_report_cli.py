"""`main.py report`: a study's report as DICOM SR and PDF from a project, signed off from the command line."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from clinlens.command import main
from engine.annotations import save_document
from engine.report.sr import report_from_sr
from tests.engine.dicom_tools import dciodvfy_errors
from tests.engine.test_annotations_support import annotated_set
from tests.pdf_tools import outline_pixels, pdf_page


@pytest.fixture
def project(tmp_path):
    doc, refs = annotated_set(tmp_path / "images")
    path = tmp_path / "project.json"
    save_document(doc, path)
    return path, refs


def test_report_sr_and_pdf_signed_from_the_command_line(project, tmp_path, capsys):
    path, refs = project
    ct = refs["ct"].paths[0]
    out, pdf = tmp_path / "report.dcm", tmp_path / "report.pdf"
    args = ["report", ct, "--annotations", str(path), "--out", str(out), "--pdf", str(pdf)]
    signing = ["--verify", "Doe^Jane", "--organization", "General Hospital"]
    before = path.read_bytes()
    assert main([*args, *signing]) == 2  # CT_small.dcm has no BodyPartExamined: the technique has a blank
    assert capsys.readouterr().err == (
        "error: The technique still has the template's blank [region]: fill it in or delete it.\n"
    )
    assert not out.exists() and path.read_bytes() == before  # refused: nothing written, nothing saved
    code = main([*args, "--field", "body_part=chest", *signing])
    assert code == 0, capsys.readouterr().err
    out_line = capsys.readouterr().out
    assert "final, verified by Doe^Jane" in out_line and out_line.rstrip().endswith(f"; saved in {path}")
    assert dciodvfy_errors(out) == []
    ds = pydicom.dcmread(out)
    assert ds.VerificationFlag == "VERIFIED" and ds.VerifyingObserverSequence[0].VerifyingObserverName == "Doe^Jane"
    assert report_from_sr(ds).section("technique") == (  # the rest from the header
        "CT of the chest with intravenous contrast (ISOVUE300/100). Slice thickness 5 mm."
    )
    saved = json.loads(path.read_text())
    assert saved["schema_version"] == 4 and saved["reports"][0]["status"] == "final"
    page = pdf_page(pdf, tmp_path / "page.png")
    yellow = np.argwhere(outline_pixels(page))
    assert len(yellow) > 20, "the key image with its evidence outline is not on the page"
    text_rows = (page[: yellow[:, 0].min()] < 128).all(axis=2).any(axis=1)  # dark text above the key image
    assert text_rows.sum() > 20, "no findings text above the key image"


def test_nothing_accepted_is_one_sentence(tmp_path, capsys):
    doc, refs = annotated_set(tmp_path / "images")
    ct = refs["ct"]
    for box in doc.boxes(ct.image_id):
        if box.source.value == "user":
            from engine.annotations import RemoveAnnotations

            doc.execute(RemoveAnnotations(ct.image_id, [box.id]))
    save_document(doc, tmp_path / "p.json")
    code = main(["report", ct.paths[0], "--annotations", str(tmp_path / "p.json"), "--out", str(tmp_path / "r.dcm")])
    assert code == 2 and not (tmp_path / "r.dcm").exists()
    assert capsys.readouterr().err == (
        "error: nothing accepted in this study and no report yet: accept model output or annotate in the app, "
        "or write the report in its Report panel\n"
    )


def test_pdf_dicom_and_no_save_leave_the_project_untouched(project, tmp_path, capsys):
    path, refs = project
    before = path.read_bytes()
    out, pdf_dicom = tmp_path / "report.dcm", tmp_path / "report-pdf.dcm"
    args = ["report", refs["ct"].paths[0], "--annotations", str(path), "--out", str(out), "--field", "body_part=chest"]
    code = main([*args, "--pdf-dicom", str(pdf_dicom), "--verify", "Doe^Jane", "--no-save"])
    assert code == 0, capsys.readouterr().err
    assert "saved in" not in capsys.readouterr().out
    assert path.read_bytes() == before  # --no-save: the signed report went to the files only
    assert dciodvfy_errors(pdf_dicom) == []
    ds = pydicom.dcmread(pdf_dicom)
    sr = pydicom.dcmread(out)
    assert ds.StudyInstanceUID == sr.StudyInstanceUID and ds.VerificationFlag == "VERIFIED"
    assert ds.EncapsulatedDocument.startswith(b"%PDF")


def test_a_field_that_is_not_name_equals_value_is_refused(project, tmp_path, capsys):
    path, refs = project
    args = ["report", refs["ct"].paths[0], "--annotations", str(path), "--out", str(tmp_path / "r.dcm")]
    with pytest.raises(SystemExit) as done:
        main([*args, "--field", "chest"])
    assert done.value.code == 2 and "expected NAME=VALUE (e.g. body_part=chest), got 'chest'" in capsys.readouterr().err
