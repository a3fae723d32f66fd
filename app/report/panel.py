"""The Report panel: the study's report as editable sections, findings that link to their evidence, sign-off.

Sections are plain text editors (typing in one is one undo step per section), started from the
template chosen above them (the modality's, preselected); Apply template fills the sections nobody
wrote in, and Save as template… keeps the draft as the user's template of its modality. Findings are a list
whose rows say where they came from and whether they still need review; clicking a row's
evidence shows it on the image (``evidence_requested``, wired by the window). A signed report is
read-only: the editors lock and Amend starts a new draft that replaces it. Send to PACS hands the
report (and, ticked, its PDF) to the window, which sends it on the PACS's worker thread and
answers through ``show_sent``; a refused send only says so, the report stays as it was.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.report.controller import ReportController
from engine.report.model import SECTION_TITLES, SECTIONS, FindingSource, Report
from engine.report.signoff import evidence_gone, needs_review

FINDING_ROLE = Qt.ItemDataRole.UserRole


class ReportPanel(QWidget):
    evidence_requested = Signal(str, str, int)  # image id, annotation id ("" for an answer), frame

    def __init__(self, controller: ReportController) -> None:
        super().__init__()
        self.controller = controller
        self._sending = False
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.template = QComboBox()
        self.template.setToolTip(
            "The template a new report starts from (yours are marked); the modality's is preselected"
        )
        self.apply_button = QPushButton("Apply template")
        self.apply_button.setToolTip(
            "Start the report from this template, or fill the draft's empty sections from it (your text is kept)"
        )
        self.save_template_button = QPushButton("Save as template…")
        self.save_template_button.setToolTip(
            "Keep these sections as your template for the modality; values from the header go back to their fields"
        )
        self.editors: dict[str, QPlainTextEdit] = {}
        form = QFormLayout()
        for name in SECTIONS:
            editor = QPlainTextEdit()
            editor.setObjectName(f"report_{name}")
            editor.setPlaceholderText(f"{SECTION_TITLES[name]}…")
            editor.setMaximumHeight(90 if name != "findings" else 120)
            editor.textChanged.connect(lambda n=name: self._section_edited(n))
            self.editors[name] = editor
            form.addRow(SECTION_TITLES[name], editor)
        self.findings = QListWidget()
        self.findings.setWordWrap(True)
        self.findings.itemActivated.connect(self._show_evidence)
        self.findings.itemClicked.connect(self._show_evidence)
        self.reviewed_button = QPushButton("Mark reviewed")
        self.reviewed_button.setToolTip("You have read this model finding and stand behind it")
        self.remove_button = QPushButton("Remove finding")
        self.sign_button = QPushButton("Sign off…")
        self.sign_button.setToolTip("Make the report final, verified by the reading observer from the settings")
        self.amend_button = QPushButton("Amend")
        self.amend_button.setToolTip("Start a new draft that replaces this signed report once signed")
        self.pdf_button = QPushButton("Save PDF…")
        self.pdf_button.setToolTip("The printed report as PDF, or as Encapsulated PDF DICOM (.dcm) for a PACS")
        self.send_button = QPushButton("Send to PACS")
        self.send_button.setToolTip(
            "Store the report as DICOM SR in the PACS the study came from (else the default PACS)"
        )
        self.send_pdf = QCheckBox("with PDF")
        self.send_pdf.setToolTip("Also store the printed report as an Encapsulated PDF DICOM object")
        self.sent = QLabel()
        self.sent.setWordWrap(True)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #ff8080;")
        template_row = QHBoxLayout()
        template_row.addWidget(QLabel("Template"))
        template_row.addWidget(self.template, 1)
        template_row.addWidget(self.apply_button)
        template_row.addWidget(self.save_template_button)
        finding_row = QHBoxLayout()
        finding_row.addWidget(self.reviewed_button)
        finding_row.addWidget(self.remove_button)
        finding_row.addStretch(1)
        sign_row = QHBoxLayout()
        for button in (self.sign_button, self.amend_button, self.pdf_button):
            sign_row.addWidget(button)
        sign_row.addStretch(1)
        send_row = QHBoxLayout()
        send_row.addWidget(self.send_button)
        send_row.addWidget(self.send_pdf)
        send_row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.status)
        layout.addLayout(template_row)
        layout.addLayout(form)
        layout.addWidget(QLabel("Findings with evidence (click one to show it on the image)"))
        layout.addWidget(self.findings, 1)
        layout.addLayout(finding_row)
        layout.addLayout(sign_row)
        layout.addLayout(send_row)
        layout.addWidget(self.sent)
        layout.addWidget(self.problem)
        self.template.activated.connect(lambda _i: self.controller.choose_template(self.template.currentData()))
        self.apply_button.clicked.connect(self.apply_template)
        self.save_template_button.clicked.connect(self.save_template)
        self.reviewed_button.clicked.connect(self._mark_reviewed)
        self.remove_button.clicked.connect(self._remove)
        self.sign_button.clicked.connect(self.sign)
        self.amend_button.clicked.connect(self.controller.amend)
        self.pdf_button.clicked.connect(self._choose_pdf)
        self.send_button.clicked.connect(self.send)
        self.findings.currentItemChanged.connect(lambda *_: self._update_buttons())
        controller.changed.connect(self.refresh)
        controller.problem.connect(self.problem.setText)
        self.refresh()

    # ----- view
    def refresh(self) -> None:
        report = self.controller.current()
        doc = self.controller.annotations.doc
        for name, editor in self.editors.items():
            text = report.section(name) if report else ""
            if editor.toPlainText() != text:
                editor.blockSignals(True)
                editor.setPlainText(text)
                editor.blockSignals(False)
            editor.setReadOnly(report is not None and report.is_final)
        self.status.setText(_status(report))
        self._show_templates()
        current = self.findings.currentItem().data(FINDING_ROLE) if self.findings.currentItem() else None
        self.findings.clear()
        for number, finding in enumerate(report.findings if report else (), start=1):
            pending = doc is not None and needs_review(doc, finding)
            gone = doc is not None and any(evidence_gone(doc, e) for e in finding.evidence)
            where = "; ".join(e.title for e in finding.evidence) or "no evidence"
            marks = []
            if finding.source is not FindingSource.USER:
                marks.append("AI")
            if pending:
                marks.append("needs review")
            if gone:
                marks.append("evidence deleted")
            suffix = f"  [{', '.join(marks)}]" if marks else ""
            item = QListWidgetItem(f"{number}. {finding.text}{suffix}\n    ↳ {where}")
            item.setData(FINDING_ROLE, finding.id)
            if pending or gone:
                item.setForeground(Qt.GlobalColor.darkYellow)
            self.findings.addItem(item)
            if finding.id == current:
                self.findings.setCurrentItem(item)
        self._update_buttons()

    def _show_templates(self) -> None:
        """List the templates (only when they changed: refresh runs on every keystroke) and show the chosen one."""
        templates = self.controller.templates().templates
        names = [t.name for t in templates]
        self.template.blockSignals(True)
        if [self.template.itemData(i) for i in range(self.template.count())] != names:
            self.template.clear()
            for t in templates:
                self.template.addItem(f"{t.name} (yours)" if t.user else t.name, t.name)
        self.template.setCurrentIndex(self.template.findData(self.controller.chosen_template().name))
        self.template.blockSignals(False)

    def _update_buttons(self) -> None:
        report = self.controller.current()
        draft = report is not None and not report.is_final
        chosen = self.findings.currentItem() is not None
        self.reviewed_button.setEnabled(draft and chosen)
        self.remove_button.setEnabled(draft and chosen)
        editable = self.controller.study_key is not None and (report is None or draft)
        self.template.setEnabled(editable)
        self.apply_button.setEnabled(editable)
        self.save_template_button.setEnabled(report is not None)
        self.sign_button.setEnabled(draft)
        self.amend_button.setEnabled(report is not None and report.is_final)
        self.pdf_button.setEnabled(report is not None)
        self.send_button.setEnabled(report is not None and not self._sending)

    # ----- actions
    def _section_edited(self, name: str) -> None:
        self.problem.clear()
        self.controller.set_section(name, self.editors[name].toPlainText())

    def _chosen(self) -> str | None:
        item = self.findings.currentItem()
        return None if item is None else item.data(FINDING_ROLE)

    def _mark_reviewed(self) -> None:
        if self._chosen():
            self.controller.edit_finding(self._chosen(), reviewed=True)

    def _remove(self) -> None:
        if self._chosen():
            self.controller.remove_finding(self._chosen())

    def apply_template(self) -> bool:
        self.problem.clear()
        return self.controller.apply_chosen_template()

    def save_template(self) -> bool:
        """Ask a name (the report's template, else its modality) and save the draft as that template."""
        report = self.controller.current()
        if report is None:
            return False
        self.problem.clear()
        name, ok = QInputDialog.getText(
            self,
            "Save as template",
            f"Name of your {report.modality or 'report'} template (an existing name of yours is replaced):",
            text=report.template or report.modality,
        )
        return ok and self.controller.save_template(name)

    def sign(self) -> bool:
        self.problem.clear()
        return self.controller.sign()

    def send(self) -> bool:
        """Send the report (and its PDF when ticked) to the PACS; the answer comes to ``show_sent``."""
        self.problem.clear()
        self.sent.clear()
        if not self.controller.send_to_pacs(self.send_pdf.isChecked()):
            return False
        self._sending = True
        self.sent.setText("Sending the report…")
        self._update_buttons()
        return True

    def show_sent(self, message: str, stored: bool) -> None:
        """The PACS's answer: what was stored, or (in red, with the draft kept) why not."""
        self._sending = False
        self.sent.setText(message if stored else "")
        if not stored:
            self.problem.setText(message)
        self._update_buttons()

    def _show_evidence(self, item: QListWidgetItem) -> None:
        report = self.controller.current()
        finding = report.finding(item.data(FINDING_ROLE)) if report else None
        if finding is not None and finding.evidence:
            evidence = finding.evidence[0]
            self.evidence_requested.emit(evidence.image_id, evidence.annotation_id, evidence.frame)

    def _choose_pdf(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the report as PDF", "report.pdf", "PDF (*.pdf);;Encapsulated PDF DICOM (*.dcm)"
        )
        if path:
            self.controller.save_pdf(Path(path))


def _status(report: Report | None) -> str:
    if report is None:
        return "No report for this study yet: type in a section or use Add to report on the evidence."
    amends = " It amends an earlier signed report." if report.replaces else ""
    if report.is_final:
        verifier = report.verifier
        organisation = f" ({verifier.organization})" if verifier and verifier.organization else ""
        when = report.verified[:16].replace("T", " ")
        name = verifier.name if verifier else "?"
        return f"<b>Final</b>: verified by {name}{organisation} on {when} UTC. Read-only; Amend to change it.{amends}"
    return f"<b>Draft</b> from the {report.template or 'default'} template.{amends}"
