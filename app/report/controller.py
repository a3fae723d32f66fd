"""The GUI's side of a study's report: the report of the image on screen, edited through undoable commands.

The report lives in the annotation document (``engine.report``), so it autosaves with the
annotations, atomically, and Ctrl+Z takes back a report edit like any other. Every refusal is one
sentence on ``problem`` and changes nothing: the draft is kept as it was.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pydicom.dataset import Dataset
from PySide6.QtCore import QObject, Signal

from app.annotations.controller import AnnotationController
from app.report.pdf import pdf_bytes
from app.viewer.state import ViewerState
from engine.annotations import Change
from engine.annotations.formats.targets import ExportError
from engine.files import write_bytes_atomic
from engine.imaging import ImageStack
from engine.report.commands import PutReport
from engine.report.fields import field_values, unfill
from engine.report.model import SECTIONS, Finding, Observer, Report
from engine.report.pdf_dicom import build_report_pdf_dicom, dicom_bytes
from engine.report.printable import printable
from engine.report.signoff import (
    SignOffError,
    amend,
    apply_template,
    finding_from_annotation,
    finding_from_answer,
    new_report,
    sign,
)
from engine.report.templates import Template, TemplateSet, read_templates, save_user_template


class ReportController(QObject):
    changed = Signal()  # the shown report (or which one is shown) changed
    problem = Signal(str)  # one sentence for the user; nothing was changed
    done = Signal(str)  # one sentence on what succeeded (replaces a refusal still on the status bar)
    send_requested = Signal(str, object, object)  # report id, Observer, PDF bytes or None (the PACS sends it)

    def __init__(
        self,
        annotations: AnnotationController,
        state: ViewerState,
        observer: Callable[[], Observer],
        stacks: Callable[[], list[ImageStack]] = list,
    ) -> None:
        super().__init__()
        self.annotations = annotations
        self.state = state
        self.observer = observer
        self.stacks = stacks  # the open images: their headers fill a new report's template fields
        self._templates: TemplateSet | None = None  # read again when the image changes or one is saved
        self._chosen: dict[str, str] = {}  # study key -> the template picked in the panel for it
        annotations.changed.connect(self._on_document_event)
        annotations.current_image_changed.connect(self._on_image_changed)
        state.stack_changed.connect(self._on_image_changed)  # its modality picks the preselected template

    def _on_image_changed(self, *_args) -> None:
        self._templates = None
        self.changed.emit()

    def _on_document_event(self, event) -> None:
        if event.change in (Change.REPORTS, Change.ANNOTATIONS):  # a cited annotation may be gone
            self.changed.emit()

    # ----- reading
    @property
    def study_key(self) -> str | None:
        doc, image_id = self.annotations.doc, self.annotations.image_id
        return None if doc is None or image_id is None else doc.study_key(image_id)

    def current(self) -> Report | None:
        key = self.study_key
        return None if key is None else self.annotations.doc.current_report(key)

    # ----- edits
    def _put(self, report: Report, text: str, merge_key: str | None = None) -> bool:
        return self.annotations.doc.execute(
            PutReport(self.annotations.image_id, report.id, report, text, merge_key=merge_key)
        )

    def _draft(self) -> Report | None:
        """The report to edit: the current draft, a new one from the template, or None (final: refused)."""
        if self.study_key is None:
            self.problem.emit("Open an image first: a report belongs to the study of the image on screen.")
            return None
        report = self.current()
        if report is None:
            template, values = self.chosen_template(), field_values(self._headers())
            report = new_report(self.annotations.doc, self.annotations.image_id, template, self.modality, values)
            self._put(report, "Start report")
        if report.is_final:
            self.problem.emit("This report is signed and read-only; Amend it to change it.")
            return None
        return report

    @property
    def modality(self) -> str:
        """The modality of the image on screen ("" for a picture that is not DICOM)."""
        return (self.state.stack.modality or "") if self.state.stack is not None else ""

    def templates(self) -> TemplateSet:
        """The bundled and user templates (read once per image shown, and again after a save)."""
        if self._templates is None:
            self._templates = read_templates()
        return self._templates

    def chosen_template(self) -> Template:
        """The template a new report of this study starts from: the one picked in the panel, else the
        one the study's report started from, else the modality's (the user's own wins)."""
        templates, report = self.templates(), self.current()
        picked = templates.named(self._chosen.get(self.study_key or "", ""))
        started = templates.named(report.template) if report is not None else None
        return picked or started or templates.for_modality(self.modality)

    def choose_template(self, name: str) -> None:
        if self.study_key is not None and self.templates().named(name) is not None:
            self._chosen[self.study_key] = name

    def apply_chosen_template(self) -> bool:
        """Start the report from the chosen template, or fill the draft's sections nobody wrote in
        from it (one undo step); text the radiologist typed is never replaced."""
        if self.current() is None:
            started = self._draft()
            if started is not None:
                self.done.emit(f"Started the report from the {started.template} template.")
            return started is not None
        report = self._draft()
        if report is None:
            return False
        template = self.chosen_template()
        applied, filled = apply_template(report, template, field_values(self._headers()), self.annotations.doc.now())
        if not filled:
            self.problem.emit(
                f"The {template.name} template has nothing for this draft: it fills only sections that are "
                "empty or as their template left them, never text you typed (clear a section to fill it)."
            )
            return False
        self._put(applied, f"Apply the {template.name} template")
        self.done.emit(
            f"Filled {len(filled)} section{'s' if len(filled) > 1 else ''} from the {template.name} template."
        )
        return True

    def save_template(self, name: str) -> bool:
        """Save the report's sections as the user template ``name`` for its modality, with the values
        its template's fields were filled with turned back into ``{field}``; one sentence when refused."""
        report, name = self.current(), name.strip()
        if report is None:
            self.problem.emit("There is no report to save as a template yet: write its sections first.")
            return False
        if not name:
            self.problem.emit("A template needs a name: the template was not saved.")
            return False
        templates = self.templates()
        same = templates.named(name)
        if same is not None and same.modality != report.modality:
            self.problem.emit(
                f"{name} is the name of the {same.modality or 'default'} template: choose another name, "
                "or saving would replace it."
            )
            return False
        started, values = templates.named(report.template), field_values(self._headers())
        sections = {
            section: unfill(report.section(section), started.sections.get(section, "") if started else "", values)
            for section in SECTIONS
        }
        try:
            save_user_template(name, report.modality, sections)
        except OSError as err:
            self.problem.emit(f"Could not save the template {name}: {err.strerror or err}. Nothing was changed.")
            return False
        self._templates = None
        self.choose_template(name)
        then = f"new {report.modality} reports start from it" if report.modality else "choose it in Template to use it"
        self.done.emit(f"Saved the template {name}: {then}.")
        self.changed.emit()
        return True

    def _headers(self) -> list[Dataset]:
        """The headers of the image on screen, then of the other open series: already in memory."""
        shown = self.state.stack
        stacks = ([shown] if shown is not None else []) + [s for s in self.stacks() if s is not shown]
        return [h for s in stacks if s.kind == "dicom" and (h := s.header(0)) is not None]

    def set_section(self, name: str, text: str) -> None:
        report = self.current()
        if report is None and text.strip():
            report = self._draft()  # typing into an empty panel starts the study's report
        if report is None or report.is_final or report.section(name) == text:
            return
        self._put(report.with_section(name, text, self.annotations.doc.now()), "Edit report", merge_key=name)

    def _display(self) -> dict:
        window = self.state.effective_window()
        return {"window": None if window is None else (window.center, window.width), "invert": self.state.invert}

    def add_annotations(self, annotation_ids: list[str]) -> int:
        """Cite annotations of the image on screen as findings; returns how many were added."""
        if not annotation_ids:
            self.problem.emit("Select an annotation first, then Add to report.")
            return 0
        report = self._draft()
        if report is None:
            return 0
        doc, image_id = self.annotations.doc, self.annotations.image_id
        for annotation_id in annotation_ids:
            if doc.find(image_id, annotation_id) is not None:
                finding = finding_from_annotation(doc, image_id, annotation_id, **self._display())
                report = report.with_finding(finding, doc.now())
        self._put(report, "Add to report")
        return len(annotation_ids)

    def add_answer(self, frame: int, text: str, boxes) -> None:
        report = self._draft()
        if report is None:
            return
        doc = self.annotations.doc
        finding = finding_from_answer(doc, self.annotations.image_id, frame, text, tuple(boxes), **self._display())
        self._put(report.with_finding(finding, doc.now()), "Add answer to report")

    def edit_finding(self, finding_id: str, **changes) -> None:
        report = self.current()
        finding = report.finding(finding_id) if report is not None else None
        if finding is None or report.is_final:
            return
        updated: Finding = replace(finding, **changes)
        self._put(report.with_finding(updated, self.annotations.doc.now()), "Edit finding")

    def remove_finding(self, finding_id: str) -> None:
        report = self.current()
        if report is not None and not report.is_final:
            self._put(report.without_finding(finding_id, self.annotations.doc.now()), "Remove finding")

    def sign(self) -> bool:
        """Sign the draft off as the observer from the settings; one sentence per reason when refused."""
        report = self.current()
        if report is None:
            self.problem.emit("There is no report to sign yet: add findings or write the impression first.")
            return False
        try:
            final = sign(self.annotations.doc, report, self.observer())
        except SignOffError as err:
            self.problem.emit(str(err))
            return False
        if not self._put(final, "Sign report"):
            return False
        self.done.emit(f"Report signed off by {final.verifier.name}.")
        return True

    def amend(self) -> bool:
        report = self.current()
        if report is None or not report.is_final:
            self.problem.emit("Only a signed report is amended; edit the draft directly.")
            return False
        return self._put(amend(self.annotations.doc, report), "Amend report")

    def _pdf(self, report: Report) -> bytes:
        """The printed report (Qt, in this process: a page takes a fraction of a second); OSError."""
        with tempfile.TemporaryDirectory(prefix="clinlens-report-") as folder:
            return pdf_bytes(printable(self.annotations.doc, report).write(Path(folder)))

    def save_pdf(self, out: Path) -> bool:
        """The printable report as PDF, or as Encapsulated PDF DICOM when ``out`` ends in .dcm;
        False with one sentence when it fails."""
        report = self.current()
        if report is None:
            self.problem.emit("There is no report to print yet.")
            return False
        try:
            pdf = self._pdf(report)
            if out.suffix.lower() == ".dcm":
                write_bytes_atomic(out, dicom_bytes(build_report_pdf_dicom(self.annotations.doc, report, pdf)))
            else:
                write_bytes_atomic(out, pdf)
        except ExportError as err:
            self.problem.emit(f"Could not write {out.name}: {err}. The report is unchanged.")
            return False
        except OSError as err:
            self.problem.emit(f"Could not write the PDF {out.name}: {err.strerror or err}. The report is unchanged.")
            return False
        return True

    def send_to_pacs(self, with_pdf: bool = False) -> bool:
        """Ask for the study's report to be sent (``send_requested``); the draft is never changed by it."""
        report = self.current()
        if report is None:
            self.problem.emit("There is no report to send yet: add findings or write the impression first.")
            return False
        pdf = None
        if with_pdf:
            try:
                pdf = self._pdf(report)
            except OSError as err:
                self.problem.emit(f"The report was not sent: its PDF could not be drawn ({err.strerror or err}).")
                return False
        self.send_requested.emit(report.id, self.observer(), pdf)
        return True
