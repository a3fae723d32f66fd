"""The Report panel and the PACS, as a user drives them against the real Orthanc of tests/orthanc.py:
sign, Send to PACS (with the PDF), then open the study on another workstation and find the report."""

from __future__ import annotations

from dataclasses import replace

from app.annotations.box_tools import Tool
from app.main_window import MainWindow
from engine.pacs import PacsServer, PacsSettings, save_pacs_settings
from engine.report.model import Status
from tests.app.test_annotation_tools import drag
from tests.app.test_pacs_browser import pacs  # noqa: F401 (fixture: a seeded Orthanc for this module)
from tests.orthanc import OUR_AET


def _open_window(qtbot, server: PacsServer) -> MainWindow:
    save_pacs_settings(PacsSettings(servers=(server,)))
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(1100, 750)
    window.show()
    qtbot.waitExposed(window)
    return window


def _open_study(qtbot, window: MainWindow, server: PacsServer, pacs) -> None:  # noqa: F811
    study_uid, series_uid = str(pacs.ct[0].StudyInstanceUID), str(pacs.ct[0].SeriesInstanceUID)
    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        window.pacs.open_series(server, study_uid, series_uid)


def test_signed_report_sent_from_the_panel_comes_back_on_another_workstation(
    qtbot,
    pacs,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    server = PacsServer("Orthanc (DIMSE)", pacs.server.dimse_url, our_aet=OUR_AET)
    window = _open_window(qtbot, server)
    _open_study(qtbot, window, server, pacs)
    panel = window.report_panel
    assert not panel.send_button.isEnabled()  # no report yet: nothing to send
    window.set_tool(Tool.BOX)
    drag(window, (10, 20), (50, 45))
    window.annotation_panel.report_button.click()
    panel.editors["impression"].setPlainText("Small nodule, follow-up in 3 months.")
    technique = panel.editors["technique"]
    assert technique.toPlainText() == "CT of the [region] [contrast]. Slice thickness 2.5 mm."  # what the header says
    technique.setPlainText("CT of the chest without intravenous contrast. Slice thickness 2.5 mm.")
    window.set_assistant_settings(
        replace(window.assistant_settings, observer_name="Doe^Jane", observer_organization="General Hospital")
    )
    assert panel.sign()
    final = window.report.current()
    panel.send_pdf.setChecked(True)
    with qtbot.waitSignal(window.pacs.report_send_finished, timeout=60000) as sent:
        panel.send_button.click()
        assert not panel.send_button.isEnabled()  # one send at a time; the window stays usable
    message, stored = sent.args
    assert stored and message.startswith("Report (signed) sent to Orthanc (DIMSE) as DICOM SR ")
    assert " and DICOM PDF " in message and panel.sent.text() == message
    assert window.report.current() == final and panel.send_button.isEnabled()
    with qtbot.waitSignal(window.pacs.report_send_finished, timeout=60000) as again:
        panel.send_button.click()
    assert again.args[0].startswith("Not sent again: Orthanc (DIMSE) already holds this report")
    window.close()

    # another workstation: its own project folder and PACS cache
    monkeypatch.setenv("CLINLENS_DATA_DIR", str(tmp_path / "other-data"))
    monkeypatch.setenv("CLINLENS_CACHE_DIR", str(tmp_path / "other-cache"))
    other = _open_window(qtbot, server)
    _open_study(qtbot, other, server, pacs)
    report = other.report.current()
    assert report is not None and report.id != final.id  # read from the archive, not from the first project
    assert (report.status, report.verifier, report.section("impression")) == (
        Status.FINAL,
        final.verifier,
        "Small nodule, follow-up in 3 months.",
    )
    assert [f.text for f in report.findings] == [f.text for f in final.findings]
    shown = other.report_panel
    assert "verified by Doe^Jane (General Hospital)" in shown.status.text()
    assert shown.editors["impression"].isReadOnly() and shown.amend_button.isEnabled()
    shown.amend_button.click()  # the amendment names the archive's report
    assert other.report.current().replaces == report.id
    other.close()


def test_a_pacs_that_refuses_the_report_says_so_and_keeps_the_draft(qtbot, tmp_path):
    """A read-only archive (STOW refused): one sentence in the panel and the banner, the draft as it was."""
    import shutil

    from pydicom.data import get_testdata_file

    from tests.engine.test_pacs import READ_ONLY_LUA
    from tests.orthanc import OrthancServer

    ct = tmp_path / "study" / "CT_small.dcm"
    ct.parent.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), ct)
    with OrthancServer(tmp_path / "strict", lua=READ_ONLY_LUA) as strict:
        window = _open_window(qtbot, PacsServer("Read-only archive", strict.dicomweb_url))
        with qtbot.waitSignal(window.load_finished, timeout=20000):
            window.open([str(ct)])
        panel = window.report_panel
        panel.editors["impression"].setPlainText("No acute findings.")
        draft = window.report.current()
        with qtbot.waitSignal(window.pacs.report_send_finished, timeout=60000) as sent:
            panel.send_button.click()
        message, stored = sent.args
    assert not stored and "rejected" in message and message.endswith("The report is kept as it was on this computer.")
    assert panel.problem.text() == message and panel.sent.text() == "" and panel.send_button.isEnabled()
    assert window.banner.isVisible() and window.report.current() == draft
    window.close()
