"""Which lines the corner overlays show, and whether they are shown: the reader's choice, kept.

OHIF and Slicer let a reader turn each overlay line on or off; a reader who never wants the
modality or the zoom should not see them again after a restart. The choices live in
``corner_overlays.json`` in the user's config folder, written atomically like the other stores;
a damaged file is moved aside and the defaults (everything shown) are used. Field names are kept
by id, so a field added in a later version starts shown and an unknown one is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.files import JsonFileError, Loaded, load_store, read_json, write_json_atomic
from engine.paths import config_dir


@dataclass(frozen=True)
class CornerField:
    id: str
    text: str  # the menu item
    corner: str  # where its line is drawn


FIELDS = (
    CornerField("patient_name", "Patient &name (only while identifiers are shown)", "top_left"),
    CornerField("description", "Series &description", "top_left"),
    CornerField("modality", "&Modality", "top_left"),
    CornerField("slice", "Slice &number", "top_right"),
    CornerField("location", "Slice &position (mm)", "top_right"),
    CornerField("thickness", "Slice &thickness", "top_right"),
    CornerField("window", "&Window (centre / width)", "bottom_left"),
    CornerField("zoom", "&Zoom", "bottom_left"),
)
FIELD_IDS = frozenset(f.id for f in FIELDS)


@dataclass(frozen=True)
class CornerChoices:
    shown: bool = True
    fields: frozenset[str] = field(default=FIELD_IDS)

    def with_field(self, field_id: str, on: bool) -> CornerChoices:
        fields = self.fields | {field_id} if on else self.fields - {field_id}
        return CornerChoices(self.shown, frozenset(fields))


def _store() -> Path:
    return config_dir() / "corner_overlays.json"


def _read(path: Path) -> CornerChoices:
    data = read_json(path)  # JsonFileError: damaged
    fields = data.get("fields") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("shown"), bool)
        or not isinstance(fields, dict)
        or not all(isinstance(v, bool) for v in fields.values())
    ):
        raise JsonFileError(path, "not a list of corner overlay choices")
    return CornerChoices(data["shown"], frozenset(f for f in FIELD_IDS if fields.get(f, True)))


def load_choices() -> Loaded[CornerChoices]:
    """The saved choices, or the defaults (with the reason and the kept copy when it was damaged)."""
    return load_store(_store(), _read, CornerChoices, JsonFileError)


def save_choices(choices: CornerChoices) -> None:
    fields = {f.id: f.id in choices.fields for f in FIELDS}
    write_json_atomic(_store(), {"shown": choices.shown, "fields": fields})
