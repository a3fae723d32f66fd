"""The Report panel's templates: choose one, apply it to a draft, save a draft as the user's own."""

from __future__ import annotations

import json
from dataclasses import replace

from PySide6.QtWidgets import QInputDialog

from engine.report.templates import read_templates, user_dir
from tests.app.test_annotation_tools import images, make_window, open_and_wait  # noqa: F401 (fixture)

# CT_small.dcm's header: a contrast agent and a slice thickness, no BodyPartExamined.
FILLED = "CT of the [region] with intravenous contrast (ISOVUE300/100). Slice thickness 5 mm."


def _name(monkeypatch, answer: str, ok: bool = True) -> list[str]:
    """Answer the name dialog with ``answer``; returns the defaults it was offered."""
    offered: list[str] = []

    def get_text(parent, title, label, text=""):
        offered.append(text)
        return answer, ok

    monkeypatch.setattr(QInputDialog, "getText", get_text)
    return offered


def test_saved_template_starts_the_next_report_of_its_modality(qtbot, images, monkeypatch):  # noqa: F811
    window = make_window(qtbot)
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    panel, report = window.report_panel, window.report
    assert panel.template.currentData() == "CT" and not panel.save_template_button.isEnabled()
    panel.editors["impression"].setPlainText("No acute finding.")
    assert report.current().section("technique") == FILLED

    technique = FILLED.replace("[region]", "chest") + " Prone."
    panel.editors["technique"].setPlainText(technique)
    offered = _name(monkeypatch, "My CT")
    assert panel.save_template()
    assert offered == ["CT"]  # the report's template name is the default
    saved = json.loads((user_dir() / "My_CT.json").read_text())
    assert saved["modality"] == "CT"
    # What the header filled goes back to its field; what the radiologist typed stays.
    assert saved["sections"]["technique"] == "CT of the chest {contrast}. Slice thickness {slice_thickness} mm. Prone."
    assert saved["sections"]["impression"] == "No acute finding."
    assert window.statusBar().currentMessage() == "Saved the template My CT: new CT reports start from it."
    assert panel.template.currentText() == "My CT (yours)"

    window.close()
    window = make_window(qtbot)  # the next CT report: a fresh window, nothing remembered but the template files
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    panel, report = window.report_panel, window.report
    assert report.current() is None and panel.template.currentData() == "My CT"  # the user's template wins
    panel.editors["findings"].setPlainText("Nothing.")  # typing starts the report from it
    started = report.current()
    assert started.template == "My CT"
    assert (
        started.section("technique") == "CT of the chest with intravenous contrast (ISOVUE300/100). "
        "Slice thickness 5 mm. Prone."
    )
    assert started.section("impression") == "No acute finding."


def test_a_bad_template_name_is_one_sentence_and_writes_nothing(qtbot, images, monkeypatch):  # noqa: F811
    window = make_window(qtbot)
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    panel = window.report_panel
    panel.editors["impression"].setPlainText("No acute finding.")
    _name(monkeypatch, "   ")
    assert not panel.save_template()
    assert panel.problem.text() == "A template needs a name: the template was not saved."
    _name(monkeypatch, "MR")
    assert not panel.save_template()
    assert panel.problem.text() == "MR is the name of the MR template: choose another name, or saving would replace it."
    assert not user_dir().exists() or not list(user_dir().iterdir())
    assert read_templates().for_modality("MR").name == "MR" and not read_templates().named("MR").user


def test_apply_template_fills_only_sections_nobody_wrote_in_and_undoes_in_one_step(qtbot, images):  # noqa: F811
    from engine.report.templates import save_user_template

    save_user_template(
        "Trauma CT",
        "CT",
        {
            "clinical_information": "Trauma: {indication}.",
            "technique": "Trauma CT, {slice_thickness} mm.",
            "impression": "Template impression.",
        },
    )
    window = make_window(qtbot)
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    panel, report = window.report_panel, window.report
    assert panel.template.currentData() == "Trauma CT"  # the user's CT template is preselected
    panel.template.setCurrentIndex(panel.template.findData("CT"))
    panel.template.activated.emit(panel.template.currentIndex())  # pick the bundled one instead
    assert panel.apply_template()  # no report yet: it starts one from the pick
    assert report.current().template == "CT" and report.current().section("technique") == FILLED
    panel.editors["impression"].setPlainText("Typed impression.")

    panel.template.setCurrentIndex(panel.template.findData("Trauma CT"))
    panel.template.activated.emit(panel.template.currentIndex())
    before = report.current()
    assert panel.apply_template()
    after = report.current()
    assert after.section("impression") == "Typed impression."  # the radiologist's text is kept
    assert after.section("technique") == "Trauma CT, 5 mm."  # still as the CT template filled it: replaced
    assert after.section("clinical_information") == "Trauma: [indication]."  # was empty
    assert after.template == "Trauma CT"
    assert window.statusBar().currentMessage() == "Filled 2 sections from the Trauma CT template."

    assert window.annotations.doc.undo(window.annotations.image_id)  # one step back to before the apply
    assert report.current() == before
    assert panel.editors["technique"].toPlainText() == FILLED

    panel.editors["technique"].setPlainText("Typed technique.")
    panel.editors["clinical_information"].setPlainText("Typed history.")
    assert not panel.apply_template()  # nothing left that nobody wrote in
    assert panel.problem.text().startswith("The Trauma CT template has nothing for this draft")
    assert report.current().section("technique") == "Typed technique."


def test_a_successful_sign_off_replaces_the_refusal_on_the_status_bar(qtbot, images):  # noqa: F811
    window = make_window(qtbot)
    open_and_wait(qtbot, window, [images["CT_small.dcm"]])
    panel = window.report_panel
    panel.editors["impression"].setPlainText("No acute finding.")
    assert not panel.sign()
    assert window.statusBar().currentMessage().startswith("Sign-off needs the reading observer's name")
    window.set_assistant_settings(replace(window.assistant_settings, observer_name="Doe^Jane"))
    panel.editors["technique"].setPlainText(FILLED.replace("[region]", "chest"))
    assert panel.sign()
    assert window.statusBar().currentMessage() == "Report signed off by Doe^Jane."
