"""Template fields: ``{body_part}`` and friends, filled from the study's DICOM header when a report starts.

A template says ``CT of the {body_part} {contrast}.``; a new report reads ``CT of the chest with
intravenous contrast (ISOVUE300/100).`` when the header knows, and ``CT of the [region] [contrast].``
when it does not. A field is never guessed: a missing or empty tag (for contrast, DICOM's empty
Type 2 ContrastBolusAgent means "unknown", not "none") leaves a visible blank in square brackets
for the radiologist, and sign-off refuses a report that still has one (``template_blanks``).

Only blanks a template put there count: the blank of every field below, and ``[name]`` for a
placeholder ``{name}`` of the report's own template that is not a field (a user template's own
blank, e.g. ``{laterality}``). A radiologist's own bracketed text ("[see prior]") is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from engine.imaging.metadata import dicom_date

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Field:
    name: str  # the placeholder: {name}
    blank: str  # what stays in the text when the header does not say: [blank]
    source: str  # where the value comes from (the user guide's field list)


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("body_part", "region", "BodyPartExamined (lower case), else the anatomic region's code meaning"),
        Field(
            "contrast",
            "contrast",
            "ContrastBolusAgent and ContrastBolusRoute: 'with intravenous contrast (AGENT)'; "
            "a blank when the agent is absent or empty (unknown, not 'none')",
        ),
        Field("slice_thickness", "thickness", "SliceThickness in mm, e.g. 1.25"),
        Field(
            "projection",
            "projection",
            "ViewPosition of the study's images: 'PA projection', 'PA and lateral projections'",
        ),
        Field("sequences", "sequences", "SeriesDescription (else SequenceName) of each of the study's series"),
        Field("study_date", "date", "StudyDate as YYYY-MM-DD"),
        Field("study_description", "study", "StudyDescription"),
        Field("indication", "indication", "ReasonForTheRequestedProcedure (also inside RequestAttributesSequence)"),
    )
}

_VIEWS = {
    "LL": "left lateral",
    "RL": "right lateral",
    "LAT": "lateral",
    "LLD": "left lateral decubitus",
    "RLD": "right lateral decubitus",
    "OBL": "oblique",
}
_ROUTES = {"IV": "intravenous", "INTRAVENOUS": "intravenous", "ORAL": "oral", "PO": "oral", "RECTAL": "rectal"}


def _text(header: Dataset, keyword: str) -> str:
    value = header.get(keyword)
    return " ".join(str(value).split()) if value is not None else ""


def _distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _body_part(header: Dataset) -> str:
    part = _text(header, "BodyPartExamined").replace("_", " ").lower()
    if part:
        return part
    region = header.get("AnatomicRegionSequence")
    return _text(region[0], "CodeMeaning").lower() if region else ""


def _contrast(header: Dataset) -> str:
    agent = _text(header, "ContrastBolusAgent")
    if not agent:
        return ""  # absent or empty: unknown, which is not "without contrast"
    route = _ROUTES.get(_text(header, "ContrastBolusRoute").upper(), "")
    return f"with {route + ' ' if route else ''}contrast ({agent})"


def _thickness(header: Dataset) -> str:
    try:
        value = float(header.get("SliceThickness"))
    except (TypeError, ValueError):
        return ""
    return f"{value:g}" if value > 0 else ""


def _projection(headers: Sequence[Dataset]) -> str:
    views = _distinct(_VIEWS.get(v.upper(), v) for v in (_text(h, "ViewPosition") for h in headers))
    return f"{_and(views)} projection{'s' if len(views) > 1 else ''}" if views else ""


def _sequences(headers: Sequence[Dataset]) -> str:
    return ", ".join(_distinct(_text(h, "SeriesDescription") or _text(h, "SequenceName") for h in headers))


def _indication(header: Dataset) -> str:
    requests = header.get("RequestAttributesSequence") or []
    return _text(header, "ReasonForTheRequestedProcedure") or next(
        (reason for item in requests if (reason := _text(item, "ReasonForTheRequestedProcedure"))), ""
    )


def field_values(headers: Sequence[Dataset]) -> dict[str, str]:
    """The fields the headers say something about (a field they do not know is left out).

    ``headers[0]`` is the image the report was started on; the others (one per series) add the
    study's projections and sequences, and a header of another study is ignored.
    """
    if not headers:
        return {}
    first = headers[0]
    study = _text(first, "StudyInstanceUID")
    same = [h for h in headers if _text(h, "StudyInstanceUID") == study]
    values = {
        "body_part": _body_part(first),
        "contrast": _contrast(first),
        "slice_thickness": _thickness(first),
        "projection": _projection(same),
        "sequences": _sequences(same),
        "study_date": dicom_date(_text(first, "StudyDate")),
        "study_description": _text(first, "StudyDescription"),
        "indication": _indication(first),
    }
    return {name: value for name, value in values.items() if value}


def _blank(name: str) -> str:
    return f"[{FIELDS[name].blank if name in FIELDS else name.replace('_', ' ')}]"


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every ``{field}`` replaced by its value, or by its visible blank when unknown."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1)) or _blank(m.group(1)), text)


def unfill(text: str, template_text: str, values: Mapping[str, str]) -> str:
    """``text`` with what ``fill`` put in for ``template_text``'s fields turned back into ``{field}``.

    Why: a report saved as a template must not freeze this study's header ("lumbar spine") into
    every later report. Where the template's own words still stand in ``text``, each field's value
    from ``values`` (or its blank) becomes the placeholder again; a value the radiologist typed
    instead stays as typed, and text whose template words were rewritten is kept as it is.
    """
    parts = _PLACEHOLDER.split(template_text)  # literal, field, literal, field, ..., literal
    if len(parts) == 1:
        return text
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?:(?P<f{i}>{re.escape(values.get(part) or _blank(part))})|(?P<t{i}>.*?))"
        for i, part in enumerate(parts)
    )
    match = re.search(pattern, text)
    if match is None:
        return text
    rebuilt = "".join(
        part if i % 2 == 0 else "{" + part + "}" if match.group(f"f{i}") is not None else match.group(f"t{i}")
        for i, part in enumerate(parts)
    )
    return text[: match.start()] + rebuilt + text[match.end() :]


def template_blanks(text: str, template_text: str = "") -> list[str]:
    """The template blanks still in ``text`` (in order, once each): every field's blank, and the
    blank of any other ``{placeholder}`` in ``template_text`` (the report's own template)."""
    known = {_blank(name) for name in FIELDS} | {_blank(m) for m in _PLACEHOLDER.findall(template_text)}
    return _distinct(blank for blank in re.findall(r"\[[^\[\]\n]+\]", text) if blank in known)
