"""Reports in the annotation document: templates, findings from evidence, undo, saving, sign-off."""

from __future__ import annotations

import json

import highdicom as hd
import pydicom
import pytest

from engine.annotations import RemoveAnnotations, SetReview, load_document, save_document
from engine.annotations.formats.dicom_sr import tracking_uid
from engine.annotations.formats.targets import ExportError
from engine.annotations.model import MeasuredValue
from engine.annotations.persistence import document_to_dict
from engine.report.commands import PutReport
from engine.report.model import FindingSource, Observer, Status
from engine.report.signoff import (
    SignOffError,
    amend,
    finding_from_annotation,
    finding_from_answer,
    new_report,
    sign,
    sign_off_problems,
)
from engine.report.sr import build_report_sr, report_from_sr
from engine.report.templates import read_templates, save_user_template
from tests.engine.dicom_tools import dciodvfy_errors
from tests.engine.test_annotations_support import add_box, annotated_set, new_doc, series_ref

READER = Observer("Doe^Jane", "General Hospital")


def _doc_with_report():
    ref = series_ref()
    doc = new_doc(ref)
    template = read_templates().for_modality("CT")
    report = new_report(doc, ref.image_id, template, "CT")
    assert doc.execute(PutReport(ref.image_id, report.id, report, "Start report"))
    return doc, ref, report


def test_bundled_templates_per_modality_and_user_template_wins():
    templates = read_templates()
    assert {"CT", "MR", "CR", "DX", "Default"} <= {t.name for t in templates.templates}
    assert templates.for_modality("CT").sections["technique"].startswith("CT of the")
    assert templates.for_modality("US").name == "Default"
    save_user_template("My CT", "CT", {"technique": "Low-dose CT of the chest."})
    mine = read_templates().for_modality("CT")
    assert (mine.name, mine.user, mine.sections["technique"]) == ("My CT", True, "Low-dose CT of the chest.")


def test_damaged_user_template_is_skipped_with_a_sentence(tmp_path):
    path = save_user_template("Broken", "MR", {})
    path.write_text('{"sections": {"nonsense": 1}}')
    templates = read_templates()
    assert templates.named("Broken") is None
    assert templates.problems == (
        (
            "The report template Broken.json was skipped: sections must be text under "
            "clinical_information, technique, findings, impression."
        ),
    )


def test_report_edits_undo_redo_and_typing_merges():
    doc, ref, report = _doc_with_report()
    assert doc.current_report(ref.study_instance_uid) == report
    for text in ("N", "No", "No nodule"):
        edited = doc.find_report(report.id).with_section("findings", text, doc.now())
        doc.execute(PutReport(ref.image_id, report.id, edited, "Edit findings", merge_key="findings"))
    assert doc.find_report(report.id).section("findings") == "No nodule"
    assert doc.history(ref.image_id).undo_text == "Edit findings"
    assert doc.undo(ref.image_id)  # the typing is one step
    assert doc.find_report(report.id) == report
    assert doc.undo(ref.image_id)
    assert doc.reports() == []
    assert doc.redo(ref.image_id) and doc.redo(ref.image_id)
    assert doc.find_report(report.id).section("findings") == "No nodule"


def test_finding_cites_annotation_with_units_and_saves_as_schema_4(tmp_path):
    doc, ref, report = _doc_with_report()
    length = doc.new_measurement(
        ref.image_id, "length", 1, ((1, 1), (10, 1)), (MeasuredValue("length", 23.4, "mm"),), label="nodule"
    )
    from engine.annotations import AddAnnotations

    doc.execute(AddAnnotations(ref.image_id, [length]))
    finding = finding_from_annotation(doc, ref.image_id, length.id, window=(40.0, 400.0))
    assert finding.text == "nodule: 23.4 mm" and finding.reviewed and finding.source is FindingSource.USER
    assert finding.evidence[0].frame == 1 and finding.evidence[0].title == "nodule: 23.4 mm on CT, frame 2"
    doc.execute(PutReport(ref.image_id, report.id, report.with_finding(finding, doc.now()), "Add to report"))
    path = tmp_path / "project.json"
    save_document(doc, path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == 4 and data["reports"][0]["findings"][0]["evidence"][0]["window"] == [40, 400]
    again = load_document(path)
    assert again.reports() == doc.reports()


def test_a_file_without_report_keeps_its_older_schema():
    doc = new_doc(series_ref())
    data = document_to_dict(doc)
    assert data["schema_version"] == 2 and "reports" not in data


def test_sign_off_rules_one_sentence_each_and_the_draft_kept():
    doc, ref, report = _doc_with_report()
    assert sign_off_problems(doc, report, Observer("")) == [
        "Sign-off needs the reading observer's name: set it in Assistant > Settings (Report) or pass --verify.",
        "The report says nothing yet: write the findings or the impression before signing.",
    ]
    box = add_box(doc, ref.image_id, label="mass", source="model", score=0.8)
    answer = finding_from_answer(doc, ref.image_id, 0, "A mass in the right upper lobe.", ((1, 2, 10, 12),))
    cited = finding_from_annotation(doc, ref.image_id, box.id)
    assert not answer.reviewed and not cited.reviewed
    draft = report.with_finding(answer, doc.now()).with_finding(cited, doc.now())
    with pytest.raises(SignOffError) as err:
        sign(doc, draft, READER)
    assert str(err.value) == (
        "Finding 1 (“A mass in the right upper lobe.”) came from ClinKD and was never accepted: review it "
        "(Mark reviewed, or accept its annotation) or remove it before signing. "
        "Finding 2 (“mass”) came from ClinKD and was never accepted: review it (Mark reviewed, or accept "
        "its annotation) or remove it before signing."
    )
    from dataclasses import replace

    draft = draft.with_finding(replace(answer, reviewed=True), doc.now())
    doc.execute(SetReview(ref.image_id, [box.id], "accepted"))
    doc.execute(RemoveAnnotations(ref.image_id, [box.id]))  # deleted after it was cited
    assert sign_off_problems(doc, draft, READER) == [
        "Finding 2 cites mass on CT, frame 1, which was deleted since: remove the finding or cite something else."
    ]
    doc.undo(ref.image_id)
    final = sign(doc, draft, READER, "2026-02-03T10:11:12.000+00:00")
    assert (final.status, final.verifier, final.verified) == (Status.FINAL, READER, "2026-02-03T10:11:12.000+00:00")
    assert draft.status is Status.DRAFT  # the draft value itself never changes


def test_amendment_points_to_the_report_it_replaces():
    doc, ref, report = _doc_with_report()
    final = sign(doc, report.with_section("impression", "Normal.", doc.now()), READER)
    doc.execute(PutReport(ref.image_id, report.id, final, "Sign report"))
    with pytest.raises(SignOffError, match="already final"):
        sign(doc, final, READER)
    amendment = amend(doc, final)
    doc.execute(PutReport(ref.image_id, amendment.id, amendment, "Amend report"))
    assert (amendment.replaces, amendment.status, amendment.verifier) == (final.id, Status.DRAFT, None)
    assert doc.current_report(ref.study_instance_uid).id == amendment.id
    assert [r.id for r in doc.reports(ref.study_instance_uid)] == [final.id, amendment.id]


@pytest.fixture(scope="module")
def ct_project(tmp_path_factory):
    doc, refs = annotated_set(tmp_path_factory.mktemp("report") / "images")
    return doc, refs


def _signed_ct_report(doc, ct):
    nodule = next(b for b in doc.boxes(ct.image_id) if b.label == "nodule")
    report = new_report(doc, ct.image_id, read_templates().for_modality("CT"), "CT")
    report = report.with_section("clinical_information", "Cough for three weeks.", doc.now())
    report = report.with_section("impression", "Solitary nodule, follow-up CT in 3 months.", doc.now())
    report = report.with_finding(finding_from_annotation(doc, ct.image_id, nodule.id), doc.now())
    return nodule, sign(doc, report, READER, "2026-02-03T10:11:12.000+00:00")


def test_report_sr_is_valid_and_highdicom_reads_it_back(ct_project, tmp_path):
    doc, refs = ct_project
    ct = refs["ct"]
    nodule, final = _signed_ct_report(doc, ct)
    sr = build_report_sr(doc, final)
    path = tmp_path / "report.dcm"
    sr.save_as(path)
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    read = hd.sr.Comprehensive3DSR.from_dataset(ds)
    groups = read.content.get_planar_roi_measurement_groups()
    assert [g.tracking_uid for g in groups] == [tracking_uid(nodule.id)]  # the cited box, nothing else
    assert (ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag) == ("COMPLETE", "VERIFIED", "FINAL")
    who = ds.VerifyingObserverSequence[0]
    assert (who.VerifyingObserverName, who.VerifyingOrganization) == ("Doe^Jane", "General Hospital")
    assert who.VerificationDateTime == "20260203101112+0000"
    back = report_from_sr(ds)
    assert back.sections == {
        "clinical_information": "Cough for three weeks.",
        "technique": final.section("technique").strip(),
        "impression": "Solitary nodule, follow-up CT in 3 months.",
    }
    assert [f.text for f in back.findings] == ["nodule"]
    assert (back.status, back.verifier) == (Status.FINAL, READER)
    assert build_report_sr(doc, final).SOPInstanceUID == ds.SOPInstanceUID  # sent twice: one instance


def test_amended_report_sr_names_its_predecessor_and_a_draft_is_partial(ct_project, tmp_path):
    doc, refs = ct_project
    ct = refs["ct"]
    _, final = _signed_ct_report(doc, ct)
    doc.execute(PutReport(ct.image_id, final.id, final, "Sign"))
    amendment = amend(doc, final).with_section("impression", "No nodule: it was a vessel.", doc.now())
    sr = build_report_sr(doc, amendment, Observer("Roe^Rick"))
    path = tmp_path / "amendment.dcm"
    sr.save_as(path)
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert (ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag) == ("PARTIAL", "UNVERIFIED", "PRELIMINARY")
    predecessor = ds.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == build_report_sr(doc, final).SOPInstanceUID
    assert report_from_sr(ds).replaces == predecessor.ReferencedSOPInstanceUID


def test_report_sr_refuses_deleted_evidence_in_one_sentence(ct_project):
    doc, refs = ct_project
    png = refs["png"]
    box = doc.boxes(png.image_id)[0]
    report = new_report(doc, png.image_id, read_templates().for_modality(""))
    report = report.with_finding(finding_from_annotation(doc, png.image_id, box.id), doc.now())
    with pytest.raises(ExportError, match="needs DICOM images"):
        build_report_sr(doc, report)
    doc.execute(RemoveAnnotations(png.image_id, [box.id]))
    try:
        with pytest.raises(
            ExportError, match=r"^Finding 1 cites nodule: edge, clipped on photo.png, which was deleted"
        ):
            build_report_sr(doc, report)
    finally:
        doc.undo(png.image_id)
