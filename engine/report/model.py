"""The plain data of a radiology report: sections of text, findings that cite their evidence, sign-off.

A report belongs to one study (``study_key``: the Study Instance UID, or the image id of a picture
that is not DICOM). Like annotations it is a frozen value: every edit makes a new ``Report``, so the
document can undo by swapping snapshots. A report is a draft until a reading observer verifies it;
a final report never changes again, and a correction is a new report (an amendment) whose
``replaces`` names the one it supersedes. This module imports nothing of the annotation document,
which stores reports, so the document can import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

SECTIONS = ("clinical_information", "technique", "findings", "impression")
SECTION_TITLES = {
    "clinical_information": "Clinical information",
    "technique": "Technique",
    "findings": "Findings",
    "impression": "Impression",
}


class Status(StrEnum):
    DRAFT = "draft"
    FINAL = "final"


class FindingSource(StrEnum):
    """Who wrote a finding's text: the radiologist, or a model they have to review."""

    USER = "user"
    MODEL = "model"  # a ClinKD answer
    CLASSIFIER = "classifier"  # a KPL label and the descriptions behind it


@dataclass(frozen=True)
class Evidence:
    """What a finding points at: an annotation (by id) or a place on an image (a model answer).

    ``window`` is the display window (centre, width) and ``invert`` the inversion the image had
    when it was cited, so the PDF shows the key image as the radiologist saw it.
    """

    image_id: str
    frame: int
    annotation_id: str = ""  # empty for an answer nobody accepted as a box
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # answer boxes (x1, y1, x2, y2), pixels
    title: str = ""  # what the link says: "Length 23.4 mm on CT chest, frame 12"
    window: tuple[float, float] | None = None
    invert: bool = False


@dataclass(frozen=True)
class Finding:
    id: str
    text: str
    source: FindingSource = FindingSource.USER
    reviewed: bool = True  # model text: False until the radiologist has read and kept it
    evidence: tuple[Evidence, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", FindingSource(self.source))  # ValueError for an unknown one
        object.__setattr__(self, "evidence", tuple(self.evidence))


@dataclass(frozen=True)
class Observer:
    """The person who verifies a report (DICOM PN ``Family^Given``) and their organisation."""

    name: str
    organization: str = ""


@dataclass(frozen=True)
class Report:
    id: str
    study_key: str
    created: str
    modified: str
    modality: str = ""
    template: str = ""  # the template it was started from (name)
    sections: dict[str, str] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    status: Status = Status.DRAFT
    verifier: Observer | None = None
    verified: str = ""  # ISO 8601 time of sign-off
    replaces: str = ""  # id of the final report this amendment supersedes
    # A report read back from the PACS: the SOP Instance UID of its SR, so sending it again unchanged
    # is recognised and an amendment names the archive's instance; any edit forgets it (``edited``).
    sop_instance_uid: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        object.__setattr__(self, "findings", tuple(self.findings))
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown report section(s): {', '.join(sorted(unknown))}")

    @property
    def is_final(self) -> bool:
        return self.status is Status.FINAL

    def section(self, name: str) -> str:
        return self.sections.get(name, "")

    def finding(self, finding_id: str) -> Finding | None:
        return next((f for f in self.findings if f.id == finding_id), None)

    def edited(self, now: str, **changes: object) -> Report:
        """The report with ``changes``, modified at ``now``. A changed report is a new document, so
        it forgets the archive instance it was read from: sending it stores a new SR."""
        return replace(self, modified=now, sop_instance_uid="", **changes)

    def with_section(self, name: str, text: str, now: str) -> Report:
        if name not in SECTIONS:
            raise ValueError(f"unknown report section {name!r}")
        return self.edited(now, sections={**self.sections, name: text})

    def with_finding(self, finding: Finding, now: str) -> Report:
        """The report with ``finding`` added, or replacing the finding of the same id."""
        if self.finding(finding.id) is None:
            return self.edited(now, findings=(*self.findings, finding))
        findings = tuple(finding if f.id == finding.id else f for f in self.findings)
        return self.edited(now, findings=findings)

    def without_finding(self, finding_id: str, now: str) -> Report:
        return self.edited(now, findings=tuple(f for f in self.findings if f.id != finding_id))
