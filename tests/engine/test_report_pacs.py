"""A report's SR sent to a real Orthanc with the annotations' send path, read back; a refused send keeps the draft."""

from __future__ import annotations

import pydicom
import pytest

from engine.pacs import InstanceCache, SendRejected, connect, server_from_url
from engine.pacs.report_writeback import reports_from_pacs, send_report_sr
from engine.report.commands import PutReport
from engine.report.model import Observer, Status
from engine.report.signoff import finding_from_annotation, new_report, sign
from engine.report.templates import read_templates
from tests.engine.test_pacs import READ_ONLY_LUA, _annotated_series
from tests.orthanc import OUR_AET, OrthancServer, encode, seeded_orthanc

READER = Observer("Doe^Jane", "General Hospital")


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    yield from seeded_orthanc(tmp_path_factory)


def _report(doc, ref, user_box):
    report = new_report(doc, ref.image_id, read_templates().for_modality("CT"), "CT")
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
