"""Starting a report, turning evidence into findings, and the rules of sign-off and amendment.

Why the rules live here and not in the panel: the command line signs reports too
(``main.py report --verify``), and both must refuse the same things with the same sentence:
a missing observer name, a report with nothing in it, blanks the template left (``[region]``:
the header did not say), machine findings nobody reviewed, and findings whose evidence was
deleted after it was cited. A refused sign-off changes nothing: the
draft stays as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from engine.annotations.document import AnnotationDocument
from engine.annotations.model import (
    Annotation,
    Box,
    ImageLabel,
    Mask,
    Measurement,
    Review,
    Source,
    new_id,
    value_text,
)
from engine.report.fields import fill, template_blanks
from engine.report.model import SECTION_TITLES, SECTIONS, Evidence, Finding, FindingSource, Observer, Report, Status
from engine.report.templates import Template, read_templates

_SOURCES = {
    Source.USER: FindingSource.USER,
    Source.MODEL: FindingSource.MODEL,
    Source.CLASSIFIER: FindingSource.CLASSIFIER,
}


class SignOffError(ValueError):
    """The report cannot be signed as it is; ``str(err)`` says why (one sentence per reason)."""


def new_report(
    doc: AnnotationDocument,
    image_id: str,
    template: Template,
    modality: str = "",
    values: Mapping[str, str] | None = None,
) -> Report:
    """A draft report of the image's study, its sections started from ``template`` with its fields
    filled from ``values`` (``engine.report.fields.field_values`` of the study's headers); a field
    without a value stays a visible blank that sign-off refuses."""
    now = doc.now()
    return Report(
        id=new_id(),
        study_key=doc.study_key(image_id),
        created=now,
        modified=now,
        modality=modality,
        template=template.name,
        sections={name: fill(text, values or {}) for name, text in template.sections.items()},
    )


def apply_template(
    report: Report,
    template: Template,
    values: Mapping[str, str],
    now: str,
) -> tuple[Report, list[str]]:
    """The draft with ``template`` (its fields filled from ``values``) in the sections nobody wrote in:
    those that are empty, or still read exactly as the report's own template filled them. Text the
    radiologist typed is never replaced. Returns the report and the sections it filled (none: unchanged).
    """
    started = read_templates().named(report.template)
    untouched = {name: fill(started.sections.get(name, ""), values) for name in SECTIONS} if started else {}
    sections = dict(report.sections)
    filled = []
    for name in SECTIONS:
        text, new = report.section(name), fill(template.sections.get(name, ""), values)
        if new and new != text and (not text.strip() or text == untouched.get(name)):
            sections[name] = new
            filled.append(name)
    if not filled:
        return report, []
    return report.edited(now, template=template.name, sections=sections), filled


def is_reviewed(annotation: Annotation) -> bool:
    """What a person stands behind: their own annotation, or machine output accepted or corrected."""
    return annotation.source is Source.USER or annotation.review in (Review.ACCEPTED, Review.CORRECTED)


def describe(annotation: Annotation) -> str:
    """The finding text an annotation starts as: its label and what was measured, with units."""
    if isinstance(annotation, Measurement):
        return f"{annotation.label}: {annotation.summary()}".strip(": ")
    if isinstance(annotation, Mask):
        values = ", ".join(f"{v.name} {value_text(v)}" for v in annotation.values)
        return f"{annotation.label} (segmented){': ' + values if values else ''}"
    if isinstance(annotation, ImageLabel):
        score = "" if annotation.score is None else f", score {annotation.score:.2f}"
        behind = f": {annotation.note}" if annotation.note else ""
        return f"{annotation.label} (KPL{score}){behind}"
    note = f": {annotation.note}" if annotation.note and annotation.source is Source.USER else ""
    return f"{annotation.label}{note}"


def _where(doc: AnnotationDocument, image_id: str, frame: int) -> str:
    ref = doc.image(image_id)
    return f"{ref.title or image_id}, frame {frame + 1}" if ref.n_frames > 1 else (ref.title or image_id)


def annotation_frame(annotation: Annotation) -> int:
    return 0 if isinstance(annotation, ImageLabel) else annotation.frame


def finding_from_annotation(
    doc: AnnotationDocument,
    image_id: str,
    annotation_id: str,
    *,
    window: tuple[float, float] | None = None,
    invert: bool = False,
) -> Finding:
    """A finding citing one annotation; machine output nobody accepted starts unreviewed."""
    annotation = doc.annotation(image_id, annotation_id)
    frame = annotation_frame(annotation)
    text = describe(annotation)
    boxes = ((annotation.x1, annotation.y1, annotation.x2, annotation.y2),) if isinstance(annotation, Box) else ()
    evidence = Evidence(
        image_id=image_id,
        frame=frame,
        annotation_id=annotation.id,
        boxes=boxes,
        title=f"{text} on {_where(doc, image_id, frame)}",
        window=window,
        invert=invert,
    )
    return Finding(new_id(), text, _SOURCES[annotation.source], is_reviewed(annotation), (evidence,))


def finding_from_answer(
    doc: AnnotationDocument,
    image_id: str,
    frame: int,
    text: str,
    boxes: tuple[tuple[float, float, float, float], ...] = (),
    *,
    window: tuple[float, float] | None = None,
    invert: bool = False,
) -> Finding:
    """A model's answer as a finding: its text, its boxes on the frame it was asked about; unreviewed."""
    doc.image(image_id).frame(frame)  # range check
    evidence = Evidence(
        image_id, frame, "", tuple(boxes), f"ClinKD answer on {_where(doc, image_id, frame)}", window, invert
    )
    return Finding(new_id(), text.strip(), FindingSource.MODEL, False, (evidence,))


def accepted_findings(doc: AnnotationDocument, study_key: str) -> list[Finding]:
    """A finding for every annotation of the study a person stands behind, in document order."""
    return [
        finding_from_annotation(doc, image_id, annotation.id)
        for image_id in doc.study_images(study_key)
        for annotation in doc.annotations(image_id)
        if is_reviewed(annotation)
    ]


def evidence_annotation(doc: AnnotationDocument, evidence: Evidence) -> Annotation | None:
    """The annotation a piece of evidence cites, or None when it (or its image) is gone."""
    if not evidence.annotation_id or not doc.has_image(evidence.image_id):
        return None
    return doc.find(evidence.image_id, evidence.annotation_id)


def evidence_gone(doc: AnnotationDocument, evidence: Evidence) -> bool:
    """Whether cited evidence was deleted after it was cited (its annotation or its image)."""
    return not doc.has_image(evidence.image_id) or bool(
        evidence.annotation_id and evidence_annotation(doc, evidence) is None
    )


def missing_evidence(doc: AnnotationDocument, report: Report) -> list[str]:
    """One sentence per finding whose cited annotation was deleted after it was cited."""
    return [
        f"Finding {number} cites {evidence.title or 'an annotation'}, which was deleted since: "
        "remove the finding or cite something else."
        for number, finding in enumerate(report.findings, start=1)
        for evidence in finding.evidence
        if evidence_gone(doc, evidence)
    ]


def needs_review(doc: AnnotationDocument, finding: Finding) -> bool:
    """A model finding nobody accepted: neither marked reviewed nor all its cited annotations accepted.

    A finding with deleted evidence is left to ``missing_evidence`` (one sentence, not two)."""
    if any(evidence_gone(doc, e) for e in finding.evidence):
        return False
    cited = [evidence_annotation(doc, e) for e in finding.evidence if e.annotation_id]
    accepted_since = bool(cited) and all(is_reviewed(a) for a in cited)  # accepted after it was cited
    return not (finding.reviewed or accepted_since)


def unreviewed(doc: AnnotationDocument, report: Report) -> list[str]:
    """One sentence per finding that came from a model and was never accepted.

    Accepted means the radiologist marked the finding reviewed, or accepted (corrected) every
    annotation it cites, whenever that happened."""
    found = []
    for number, finding in enumerate(report.findings, start=1):
        if needs_review(doc, finding):
            what = {FindingSource.MODEL: "ClinKD", FindingSource.CLASSIFIER: "KPL"}.get(finding.source, "a model")
            found.append(
                f"Finding {number} (“{_short(finding.text)}”) came from {what} and was never accepted: "
                "review it (Mark reviewed, or accept its annotation) or remove it before signing."
            )
    return found


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def blanks_left(report: Report) -> list[str]:
    """One sentence per section that still has blanks its template put there (``[region]``).

    The report's own template (by name, when it still exists) adds its non-field placeholders;
    bracketed text the radiologist wrote is not a template blank and is left alone."""
    template = read_templates().named(report.template)
    found = []
    for name in SECTIONS:
        blanks = template_blanks(report.section(name), template.sections.get(name, "") if template else "")
        if blanks:
            many = len(blanks) > 1
            found.append(
                f"The {SECTION_TITLES[name].lower()} still has the template's blank{'s' if many else ''} "
                f"{', '.join(blanks)}: fill {'them' if many else 'it'} in or delete {'them' if many else 'it'}."
            )
    return found


def sign_off_problems(doc: AnnotationDocument, report: Report, observer: Observer | None) -> list[str]:
    """Why ``report`` cannot become final now, most basic first (empty: it can)."""
    if report.is_final:
        return ["This report is already final; amend it to change it."]
    problems = []
    if observer is None or not observer.name.strip():
        problems.append(
            "Sign-off needs the reading observer's name: set it in Assistant > Settings (Report) or pass --verify."
        )
    has_text = any(report.section(name).strip() for name in ("findings", "impression")) or report.findings
    if not has_text:
        problems.append("The report says nothing yet: write the findings or the impression before signing.")
    return problems + blanks_left(report) + missing_evidence(doc, report) + unreviewed(doc, report)


def sign(doc: AnnotationDocument, report: Report, observer: Observer | None, now: str | None = None) -> Report:
    """The report verified by ``observer`` at ``now``; ``SignOffError`` (nothing changed) if it cannot be."""
    problems = sign_off_problems(doc, report, observer)
    if problems:
        raise SignOffError(" ".join(problems))
    now = now or doc.now()
    return report.edited(now, status=Status.FINAL, verifier=observer, verified=now)


def amend(doc: AnnotationDocument, report: Report) -> Report:
    """A new draft with the final report's content that replaces it once signed (an amendment)."""
    if not report.is_final:
        raise SignOffError("Only a final report is amended; edit this draft directly.")
    now = doc.now()
    return replace(
        report,
        id=new_id(),
        created=now,
        modified=now,
        status=Status.DRAFT,
        verifier=None,
        verified="",
        replaces=report.id,
        sop_instance_uid="",  # the amendment is a new document
    )
