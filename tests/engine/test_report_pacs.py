"""A report's SR sent to a real Orthanc with the annotations' send path, read back; a refused send keeps the draft."""

from __future__ import annotations

import pydicom
import pytest

from engine.pacs import InstanceCache, SendRejected, connect, server_from_url
from engine.pacs.report_writeback import reports_from_pacs, send_report_sr
from engine.report.commands import PutReport
from engine.report.model import Observer, Status
from engine.report.signoff import finding_from_annotation, sign
from tests.engine.test_pacs import READ_ONLY_LUA, _annotated_series
from tests.engine.test_report import ct_report
from tests.orthanc import OUR_AET, OrthancServer, encode, seeded_orthanc

READER = Observer("Doe^Jane", "General Hospital")


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    yield from seeded_orthanc(tmp_path_factory)


def _report(doc, ref, user_box):
    report = ct_report(doc, ref.image_id)
    report = report.with_section("impression", "Nodule in the right lung.", doc.now())
    report = report.with_finding(finding_from_annotation(doc, ref.image_id, user_box.id), doc.now())
    doc.execute(PutReport(ref.image_id, report.id, report, "Start report"))
    return report


def test_report_sent_and_read_back_once(pacs):
    server, ref, doc, (user, _model, _kpl) = _annotated_series(pacs, "dicomweb")
    final = sign(doc, _report(doc, ref, user), READER)
    with connect(server) as connection:
        sent = send_report_sr(connection, doc, final)
        assert not sent.already_stored and sent.sr.StudyInstanceUID == ref.study_instance_uid
        assert send_report_sr(connection, doc, final).already_stored  # the same report: one instance
        found = reports_from_pacs(connection, InstanceCache(), ref.study_instance_uid)
    assert found.warnings == ()
    back = [r for r in found.reports if r.id == sent.sr.SOPInstanceUID]
    assert len(back) == 1
    assert (back[0].status, back[0].verifier, back[0].section("impression")) == (
        Status.FINAL,
        READER,
        "Nodule in the right lung.",
    )
    assert [f.text for f in back[0].findings] == ["nodule"]


def test_a_draft_read_back_is_resent_as_the_same_instance_until_it_is_edited(pacs):
    server, ref, doc, (user, _model, _kpl) = _annotated_series(pacs, "dicomweb")
    draft = _report(doc, ref, user)
    with connect(server) as connection:
        sent = send_report_sr(connection, doc, draft)
        found = reports_from_pacs(connection, InstanceCache(), ref.study_instance_uid).reports
        [back] = [r for r in found if r.id == sent.sr.SOPInstanceUID]
        assert back.status is Status.DRAFT and back.sop_instance_uid == sent.sr.SOPInstanceUID
        again = send_report_sr(connection, doc, back)  # another workstation sends the draft it read
        assert again.already_stored and again.sr.SOPInstanceUID == sent.sr.SOPInstanceUID
        edited = back.with_section("impression", "Nodule in the right lung, 8 mm.", doc.now())
        assert edited.sop_instance_uid == ""
        changed = send_report_sr(connection, doc, edited)
        assert not changed.already_stored and changed.sr.SOPInstanceUID != sent.sr.SOPInstanceUID


def test_refused_send_keeps_the_draft(tmp_path, pacs):
    _server, ref, doc, (user, _model, _kpl) = _annotated_series(pacs, "dicomweb")
    draft = _report(doc, ref, user)
    read_only = {
        "DicomAlwaysAllowStore": False,
        "DicomModalities": {"clinlens": {"AET": OUR_AET, "Host": "127.0.0.1", "Port": 104, "AllowStore": False}},
    }
    with OrthancServer(tmp_path / "strict", lua=READ_ONLY_LUA, config=read_only) as strict:
        strict.upload(encode(pydicom.dcmread(ref.paths[0])))
        with pytest.raises(SendRejected, match="rejected"):
            send_report_sr(connect(server_from_url(strict.dicomweb_url)), doc, draft)
    assert doc.find_report(draft.id) == draft and doc.find_report(draft.id).status is Status.DRAFT


def test_report_sent_with_its_pdf_and_added_to_a_project_once_chained(pacs):
    """The SR and its Encapsulated PDF go together; a project that lacks the report gets it back
    once, and an amendment read from the archive points at the project's own copy of the original."""
    from engine.annotations.document import AnnotationDocument
    from engine.pacs.report_writeback import reports_to_add
    from engine.report.signoff import amend

    server, ref, doc, (user, _model, _kpl) = _annotated_series(pacs, "dicomweb")
    final = sign(doc, _report(doc, ref, user), READER)
    doc.execute(PutReport(ref.image_id, final.id, final, "Sign"))
    pdf = b"%PDF-1.4\n%%EOF\n"
    with connect(server) as connection:
        sent = send_report_sr(connection, doc, final, pdf=pdf)
        assert sent.pdf is not None and not sent.already_stored
        stored = connection.instance_uids(ref.study_instance_uid, str(sent.pdf.SeriesInstanceUID))
        assert str(sent.pdf.SOPInstanceUID) in stored
        found = reports_from_pacs(connection, InstanceCache(), ref.study_instance_uid).reports

    ours = [r.id for r in reports_to_add(doc, ref.study_instance_uid, found)]  # (other tests' reports are there too)
    assert sent.sr.SOPInstanceUID in [r.id for r in found] and sent.sr.SOPInstanceUID not in ours  # held already
    fresh = AnnotationDocument()
    fresh.add_image(ref)
    added = reports_to_add(fresh, ref.study_instance_uid, found)
    back = next(r for r in added if r.id == sent.sr.SOPInstanceUID)
    assert back.is_final and back.sop_instance_uid == sent.sr.SOPInstanceUID
    for report in added:
        fresh.execute(PutReport(ref.image_id, report.id, report, "Report from PACS"))
    assert reports_to_add(fresh, ref.study_instance_uid, found) == []  # read twice: added once

    amendment = amend(doc, final).with_section("impression", "It was a vessel.", doc.now())
    with connect(server) as connection:
        assert send_report_sr(connection, doc, amendment, READER)  # a draft: the project's own work wins
        found = reports_from_pacs(connection, InstanceCache(), ref.study_instance_uid).reports
        assert reports_to_add(fresh, ref.study_instance_uid, found) == []
        sent_amendment = send_report_sr(connection, doc, sign(doc, amendment, READER))
        found = reports_from_pacs(connection, InstanceCache(), ref.study_instance_uid).reports
    new = reports_to_add(fresh, ref.study_instance_uid, found)
    assert [(r.id, r.replaces) for r in new] == [(sent_amendment.sr.SOPInstanceUID, back.id)]
    for report in new:
        fresh.execute(PutReport(ref.image_id, report.id, report, "Report from PACS"))
    assert fresh.current_report(ref.study_instance_uid).section("impression") == "It was a vessel."


def test_foreign_srs_are_not_read_as_reports(pacs):
    """OHIF's measurement report and a dose report sit in the study: no report, no exception."""
    from tests.engine.foreign_sr import CT, dose_report, issue_22_report

    header = pydicom.dcmread(CT)
    for report in (issue_22_report(header), dose_report(header)):
        pacs.server.upload(report)
    with connect(server_from_url(pacs.server.dicomweb_url)) as connection:
        found = reports_from_pacs(connection, InstanceCache(), str(header.StudyInstanceUID))
    assert found.reports == () and found.warnings == ()
