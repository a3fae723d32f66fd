"""Reports in the annotation document: templates, findings from evidence, undo, saving, sign-off."""

from __future__ import annotations

import json
import os

import highdicom as hd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from engine.annotations import RemoveAnnotations, SetReview, load_document, save_document
from engine.annotations.formats.dicom_sr import tracking_uid
from engine.annotations.formats.targets import ExportError
from engine.annotations.model import MeasuredValue
from engine.annotations.persistence import document_to_dict
from engine.imaging.dicom_index import read_header
from engine.report.commands import PutReport
from engine.report.fields import field_values, fill, unfill
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


def ct_report(doc, image_id, header_path=None):
    """A CT report started as the app starts one: the template's fields from the CT's real header.

    CT_small.dcm says everything but the body part (no BodyPartExamined), the test PACS's CT
    series neither body part nor contrast, so the radiologist types them over the blanks, as
    sign-off demands."""
    header = read_header(header_path or doc.image(image_id).paths[0])
    report = new_report(doc, image_id, read_templates().for_modality("CT"), "CT", field_values([header]))
    technique = report.section("technique").replace("[region]", "chest")
    return report.with_section("technique", technique.replace("[contrast]", "without contrast"), doc.now())


def _doc_with_report():
    ref = series_ref()
    doc = new_doc(ref)
    report = ct_report(doc, ref.image_id, get_testdata_file("CT_small.dcm"))
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


def test_the_newest_user_template_of_a_modality_wins():
    older = save_user_template("A CT", "CT", {"technique": "A."})
    newer = save_user_template("Z CT", "CT", {"technique": "Z."})
    os.utime(older, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))  # "A CT" saved again, after "Z CT"
    os.utime(newer, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    assert read_templates().for_modality("CT").name == "A CT"
    save_user_template("CT", "CT", {"technique": "Mine."})  # replaces the bundled CT, and is the newest
    templates = read_templates()
    assert templates.for_modality("CT").sections == {"technique": "Mine."} and templates.named("CT").user


def test_unfill_turns_header_values_back_into_fields_but_keeps_what_was_typed():
    template = "CT of the {body_part} {contrast}. Slice thickness {slice_thickness} mm."
    values = {"body_part": "lumbar spine", "contrast": "with intravenous contrast (X)", "slice_thickness": "5"}
    assert unfill("Prone. " + fill(template, values) + " A 5 mm nodule.", template, values) == (
        "Prone. " + template + " A 5 mm nodule."  # the nodule's "5" is not the template's: kept
    )
    typed = fill(template, {"slice_thickness": "5"}).replace("[region]", "chest")  # the blank typed over
    assert (
        unfill(typed, template, {"slice_thickness": "5"})
        == "CT of the chest {contrast}. Slice thickness {slice_thickness} mm."
    )
    assert unfill("Rewritten entirely.", template, values) == "Rewritten entirely."


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
    report = ct_report(doc, ct.image_id)
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


def _cited_length_and_mask(doc, ct):
    """A length and a mask with its volume on the CT, both cited as findings ("Add to report")."""
    import numpy as np

    from engine.annotations import AddAnnotations

    length = doc.new_measurement(
        ct.image_id, "length", 0, ((10, 10), (40, 10)), (MeasuredValue("length", 24.0, "mm"),), label="nodule"
    )
    inside = np.zeros((128, 128), dtype=bool)
    inside[30:50, 40:60] = True
    mask = doc.new_mask(ct.image_id, {0: inside}, "lesion", values=(MeasuredValue("volume", 0.5, "ml"),))
    doc.execute(AddAnnotations(ct.image_id, [length, mask]))
    report = ct_report(doc, ct.image_id)
    for annotation in (length, mask):
        report = report.with_finding(finding_from_annotation(doc, ct.image_id, annotation.id), doc.now())
    return length, mask, report


def test_measurement_and_mask_findings_link_to_their_tid_1501_groups(ct_project, tmp_path):
    """Each cited annotation is one measurement group; the finding's UIDREF is that group's Tracking UID."""
    doc, refs = ct_project
    ct = refs["ct"]
    length, mask, report = _cited_length_and_mask(doc, ct)
    assert [f.text for f in report.findings] == ["nodule: 24.0 mm", "lesion (segmented): volume 0.5 ml"]
    assert [f.evidence[0].annotation_id for f in report.findings] == [length.id, mask.id]
    path = tmp_path / "linked.dcm"
    build_report_sr(doc, sign(doc, report, READER)).save_as(path)
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    content = hd.sr.MeasurementReport.from_sequence([ds])  # the root is a TID 1500 container
    groups = {str(g.tracking_uid): g for g in content.get_planar_roi_measurement_groups()}
    groups.update((str(g.tracking_uid), g) for g in content.get_image_measurement_groups())
    assert set(groups) == {tracking_uid(length.id), tracking_uid(mask.id)}
    findings = next(c for c in ds.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "121070")
    linked = {
        item.TextValue: [ref.UID for ref in item.ContentSequence if ref.ValueType == "UIDREF"]
        for item in findings.ContentSequence
    }
    assert linked == {
        "nodule: 24.0 mm": [tracking_uid(length.id)],
        "lesion (segmented): volume 0.5 ml": [tracking_uid(mask.id)],
    }
    rows = [c.ConceptNameCodeSequence[0].CodeValue for c in ds.ContentSequence]
    assert rows.index("126010") < rows.index("121070")  # the TID 1500 rows first, the sections after them


def test_a_report_without_measurements_is_tid_1500_row_12_and_valid(ct_project, tmp_path):
    """No cited annotation: no group, so Qualitative Evaluations stands in (this used to raise TypeError)."""
    doc, refs = ct_project
    ct = refs["ct"]
    report = ct_report(doc, ct.image_id)
    report = report.with_section("impression", "No acute findings.", doc.now())
    final = sign(doc, report, Observer("Doe^Jane"))  # no organisation given
    path = tmp_path / "text.dcm"
    build_report_sr(doc, final).save_as(path)
    assert dciodvfy_errors(path) == []  # Verifying Organization (type 1) is never empty
    ds = pydicom.dcmread(path)
    content = hd.sr.MeasurementReport.from_sequence([ds])
    assert content.get_planar_roi_measurement_groups() == []
    evaluations = next(c for c in ds.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "C0034375")
    assert [i.TextValue for i in evaluations.ContentSequence] == ["No acute findings."]
    institution = pydicom.dcmread(ct.paths[0], stop_before_pixels=True).InstitutionName
    assert ds.VerifyingObserverSequence[0].VerifyingOrganization == institution  # the study's, none given
    back = report_from_sr(ds)
    assert (back.verifier, back.section("impression")) == (Observer("Doe^Jane", institution), "No acute findings.")
    assert back.sop_instance_uid == ds.SOPInstanceUID  # a final report read back keeps its instance
    empty = new_report(doc, ct.image_id, read_templates().for_modality(""))
    with pytest.raises(ExportError, match="says nothing yet"):
        build_report_sr(
            doc, empty.with_section("clinical_information", "", doc.now()).with_section("technique", "", doc.now())
        )


def test_report_pdf_as_encapsulated_pdf_dicom_is_valid(ct_project, tmp_path):
    from engine.report.pdf_dicom import ENCAPSULATED_PDF, build_report_pdf_dicom, dicom_bytes

    doc, refs = ct_project
    ct = refs["ct"]
    _nodule, final = _signed_ct_report(doc, ct)
    pdf = b"%PDF-1.4\n% a three-byte-odd page\n%%EOF"
    ds = build_report_pdf_dicom(doc, final, pdf)
    path = tmp_path / "report-pdf.dcm"
    path.write_bytes(dicom_bytes(ds))
    assert dciodvfy_errors(path) == []
    read = pydicom.dcmread(path)
    header = pydicom.dcmread(ct.paths[0], stop_before_pixels=True)
    assert (read.SOPClassUID, read.Modality, read.MIMETypeOfEncapsulatedDocument) == (
        ENCAPSULATED_PDF,
        "DOC",
        "application/pdf",
    )
    assert read.EncapsulatedDocument[: read.EncapsulatedDocumentLength] == pdf
    assert (read.StudyInstanceUID, read.PatientID) == (header.StudyInstanceUID, header.PatientID)
    assert [s.ReferencedSOPInstanceUID for s in read.SourceInstanceSequence] == [header.SOPInstanceUID]
    assert read.VerificationFlag == "VERIFIED"
    assert build_report_pdf_dicom(doc, final, pdf).SOPInstanceUID == read.SOPInstanceUID  # same report, same instance
    with pytest.raises(ExportError, match="not a PDF"):
        build_report_pdf_dicom(doc, final, b"<html>")


def _header(name: str):
    return read_header(get_testdata_file(name))


def test_template_fields_filled_from_real_ct_and_mr_headers():
    """CT_small.dcm knows its contrast agent, slice thickness and date; MR_small.dcm much less."""
    ct = new_report(
        new_doc(series_ref()),
        "series:1.2.3",
        read_templates().for_modality("CT"),
        "CT",
        field_values([_header("CT_small.dcm")]),
    )
    assert (
        ct.section("technique") == "CT of the [region] with intravenous contrast (ISOVUE300/100). Slice thickness 5 mm."
    )
    mr = field_values([_header("MR_small.dcm")])
    assert mr == {"slice_thickness": "0.8", "study_date": "2004-08-26"}  # its ContrastBolusAgent is empty: unknown
    technique = new_report(new_doc(series_ref()), "series:1.2.3", read_templates().for_modality("MR"), "MR", mr)
    assert technique.section("technique") == "MRI of the [region] [contrast]. Sequences: [sequences]."


def test_fields_of_the_study_series_and_what_a_header_does_not_prove():
    pa, lateral, other_study = (_header("CT_small.dcm") for _ in range(3))
    for header, view, part in ((pa, "PA", "CHEST"), (lateral, "LL", "CHEST"), (other_study, "AP", "KNEE")):
        header.ViewPosition, header.BodyPartExamined, header.SeriesDescription = view, part, f"{view} view"
    other_study.StudyInstanceUID = "1.2.3.4"
    pa.ContrastBolusRoute = "ORAL"
    values = field_values([pa, lateral, other_study])
    assert (values["body_part"], values["projection"]) == ("chest", "PA and left lateral projections")
    assert (values["sequences"], values["contrast"]) == ("PA view, LL view", "with oral contrast (ISOVUE300/100)")
    del pa.ContrastBolusAgent  # absent is not "without contrast": the blank stays for the radiologist
    assert "contrast" not in field_values([pa])
    template = read_templates().for_modality("CR").sections["technique"]
    assert fill(template, values) == "Radiograph of the chest, PA and left lateral projections."
    assert fill(template, {}) == "Radiograph of the [region], [projection]."


def test_sign_off_refuses_template_blanks_in_one_sentence_but_not_the_radiologists_brackets():
    doc, _ref, report = _doc_with_report()
    report = report.with_section("impression", "Stable nodule [see prior].", doc.now())
    assert sign_off_problems(doc, report, READER) == []  # "[see prior]" is the radiologist's, not a blank
    blank = report.with_section("technique", "CT of the [region] [contrast]. Slice thickness 5 mm.", doc.now())
    assert sign_off_problems(doc, blank, READER) == [
        "The technique still has the template's blanks [region], [contrast]: fill them in or delete them."
    ]
    with pytest.raises(SignOffError, match=r"^The technique still has the template's blanks \[region\], \[contrast\]"):
        sign(doc, blank, READER)


def test_a_user_template_with_fields_and_a_blank_of_its_own():
    save_user_template(
        "Chest CT", "CT", {"technique": "CT of the {body_part}, {slice_thickness} mm slices. {laterality} lung."}
    )
    doc = new_doc(series_ref())
    template = read_templates().for_modality("CT")
    report = new_report(doc, "series:1.2.3", template, "CT", field_values([_header("CT_small.dcm")]))
    assert report.section("technique") == "CT of the [region], 5 mm slices. [laterality] lung."
    report = report.with_section("impression", "Normal.", doc.now())
    assert sign_off_problems(doc, report, READER) == [
        "The technique still has the template's blanks [region], [laterality]: fill them in or delete them."
    ]
    filled = report.with_section("technique", "CT of the chest, 5 mm slices. Right lung.", doc.now())
    assert sign_off_problems(doc, filled, READER) == []
