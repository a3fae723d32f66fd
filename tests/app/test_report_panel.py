"""The Report panel in the window: add evidence, edit, sign off, amend; autosaved with the annotations."""

from __future__ import annotations

import json
from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.annotations.box_tools import Tool
from engine.annotations import Source
from engine.report.model import FindingSource, Status
from tests.app.test_annotation_tools import drag, images, make_window, open_and_wait  # noqa: F401 (fixture)


def test_add_evidence_edit_sign_and_amend(qtbot, images, tmp_path):  # noqa: F811
    window = make_window(qtbot)
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    panel, report = window.report_panel, window.report
    assert "No report for this study yet" in panel.status.text()

    window.set_tool(Tool.BOX)
    drag(window, (10, 20), (50, 45))
    box = window.annotations.boxes()[0]
    window.annotation_panel.report_button.click()  # "Add to report" on the selected row
    draft = report.current()
    assert draft is not None and draft.modality == "CT" and draft.template == "CT"
    assert [f.text for f in draft.findings] == ["finding"]
    technique = "CT of the [region] with intravenous contrast (ISOVUE300/100). Slice thickness 5 mm."
    assert draft.section("technique") == technique  # from the header; CT_small.dcm has no BodyPartExamined
    assert panel.editors["technique"].toPlainText() == technique
    evidence = draft.findings[0].evidence[0]
    shown_window = window.state.effective_window()
    assert (evidence.annotation_id, evidence.window) == (box.id, (shown_window.center, shown_window.width))
    assert panel.findings.count() == 1 and "finding" in panel.findings.item(0).text()

    window.ask_panel.report_requested.emit(0, "A round opacity in the left lung.", ((5.0, 5.0, 20.0, 20.0),))
    answer = report.current().findings[1]
    assert (answer.source, answer.reviewed) == (FindingSource.MODEL, False)
    assert "needs review" in panel.findings.item(1).text()

    panel.editors["impression"].setPlainText("Small nodule.")
    assert report.current().section("impression") == "Small nodule."

    window.state.set_frame(0)
    panel.findings.setCurrentRow(0)
    with qtbot.waitSignal(panel.evidence_requested) as shown:
        panel.findings.itemClicked.emit(panel.findings.item(0))
    assert shown.args == [window.annotations.image_id, box.id, 0]
    assert window.annotations.selected == {box.id}  # the window showed and selected the cited box

    assert not panel.sign() and panel.problem.text().startswith(
        "Sign-off needs the reading observer's name: set it in Assistant > Settings (Report) or pass --verify."
    )
    assert "The technique still has the template's blank [region]: fill it in or delete it." in panel.problem.text()
    assert "Finding 2 (“A round opacity in the left lung.”) came from ClinKD" in panel.problem.text()
    assert report.current().status is Status.DRAFT  # refused: the draft is kept

    window.set_assistant_settings(
        replace(window.assistant_settings, observer_name="Doe^Jane", observer_organization="General Hospital")
    )
    panel.findings.setCurrentRow(1)
    panel.reviewed_button.click()
    assert not panel.sign() and panel.problem.text().startswith("The technique still has the template's blank")
    panel.editors["technique"].setPlainText(technique.replace("[region]", "chest"))
    assert panel.sign()
    final = report.current()
    assert (final.status, final.verifier.name) == (Status.FINAL, "Doe^Jane")
    assert panel.editors["impression"].isReadOnly() and "verified by Doe^Jane" in panel.status.text()
    assert not panel.sign_button.isEnabled() and panel.amend_button.isEnabled()

    panel.amend_button.click()
    amendment = report.current()
    assert (amendment.status, amendment.replaces) == (Status.DRAFT, final.id)
    assert not panel.editors["impression"].isReadOnly()

    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the amendment
    assert report.current().id == final.id

    window.annotations.save_all()
    saved = json.loads(window.annotations.document_path().read_text())
    assert saved["schema_version"] == 4 and saved["reports"][0]["status"] == "final"
    assert window.annotations.doc.find(window.annotations.image_id, box.id).source is Source.USER
