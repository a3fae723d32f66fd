"""Metadata for the side panel: a few key facts and a searchable tag tree, PHI hidden by default.

Key facts never include patient identifiers; the tag tree shows them as "(hidden)" until the
user reveals them (design.md: "No PHI leaves the image").
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from .stack import ImageStack

HIDDEN = "(hidden)"
_MAX_VALUE_CHARS = 200

PHI_KEYWORDS: frozenset[str] = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientBirthName",
        "PatientMotherBirthName",
        "OtherPatientIDs",
        "OtherPatientNames",
        "OtherPatientIDsSequence",
        "IssuerOfPatientID",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "MedicalRecordLocator",
        "PatientInsurancePlanCodeSequence",
        "MilitaryRank",
        "BranchOfService",
        "AccessionNumber",
        "PatientComments",
        "ResponsiblePerson",
        "CountryOfResidence",
        "RegionOfResidence",
    }
)


@dataclass(frozen=True)
class TagNode:
    tag: str  # "(0028,0010)"
    keyword: str  # "Rows"
    vr: str
    value: str  # display string; "(hidden)" for PHI unless revealed
    children: tuple[TagNode, ...]
    phi: bool


def key_facts(stack: ImageStack, index: int) -> list[tuple[str, str]]:
    """(label, value) pairs for the panel header; never patient identifiers."""
    header = stack.header(index)
    facts: list[tuple[str, str]] = []
    if header is not None:
        for label, keyword in (
            ("Modality", "Modality"),
            ("Body part", "BodyPartExamined"),
            ("View", "ViewPosition"),
            ("Study date", "StudyDate"),
            ("Series", "SeriesDescription"),
        ):
            value = str(header.get(keyword, "") or "").strip()
            if value:
                facts.append((label, dicom_date(value) if keyword == "StudyDate" else value))
    if stack.transfer_syntax:
        facts.append(("Transfer syntax", stack.transfer_syntax))
    facts.append(("Photometric", stack.photometric))
    facts.append(("Size", f"{stack.columns} x {stack.rows} px"))
    if stack.spacing is not None:
        s = stack.spacing
        facts.append(("Pixel spacing", f"{s.row_mm:g} x {s.col_mm:g} mm ({s.source})"))
    facts.append(("Frames", f"{index + 1} of {stack.n_frames}"))
    return facts


def tag_tree(header: Dataset, *, reveal_phi: bool = False) -> list[TagNode]:
    """Every element (file meta first), sequences as nested items; PHI values hidden."""
    nodes: list[TagNode] = []
    meta = getattr(header, "file_meta", None)
    if meta:
        nodes.extend(_element_node(elem, reveal_phi) for elem in meta)
    nodes.extend(_element_node(elem, reveal_phi) for elem in header)
    return nodes


def _element_node(elem: DataElement, reveal: bool) -> TagNode:
    keyword = elem.keyword or elem.name
    phi = elem.keyword in PHI_KEYWORDS
    tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
    vr = str(elem.VR)
    if phi and not reveal:
        return TagNode(tag, keyword, vr, HIDDEN, (), True)
    if vr == "SQ":
        items = tuple(
            TagNode("", f"Item {i + 1}", "", "", tuple(_element_node(e, reveal) for e in item), False)
            for i, item in enumerate(elem.value)
        )
        return TagNode(tag, keyword, vr, f"{len(items)} item(s)", items, phi)
    return TagNode(tag, keyword, vr, _display(elem), (), phi)


def _display(elem: DataElement) -> str:
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    text = "" if value is None else str(value)
    if elem.VR == "UI" and hasattr(value, "name") and value.name != str(value):
        text = f"{value} ({value.name})"
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def dicom_date(value: str) -> str:
    """A DICOM DA (YYYYMMDD) as YYYY-MM-DD; anything else as it is."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value
