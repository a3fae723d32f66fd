"""Report templates: the text a new report starts from, one per modality, changeable by the user.

ClinLens ships ``resources/report_templates/{CT,MR,CR,DX,default}.json``; a user's own templates
live in ``<config dir>/report_templates/*.json`` and win over a bundled one of the same name or
modality (the most recently saved one, when the user has several of a modality), so the Report
panel's "Save as template…" changes what the next CT report starts from without touching the install.
A damaged user template is skipped with one sentence (``TemplateSet.problems``), never fatal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.files import JsonFileError, read_json, write_json_atomic
from engine.paths import config_dir, resources_dir
from engine.report.model import SECTIONS

DEFAULT = "default"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class TemplateError(ValueError):
    """A template file that is not one; ``str(err)`` is the reason."""


@dataclass(frozen=True)
class Template:
    name: str
    modality: str
    sections: dict[str, str]
    user: bool = False


@dataclass(frozen=True)
class TemplateSet:
    templates: tuple[Template, ...]
    problems: tuple[str, ...] = ()

    def named(self, name: str) -> Template | None:
        return next((t for t in self.templates if t.name == name), None)

    def for_modality(self, modality: str) -> Template:
        """The user's newest template for the modality, else the bundled one, else the default."""
        by_modality = [t for t in self.templates if modality and t.modality == modality]
        mine = [t for t in by_modality if t.user] or by_modality  # read oldest first: the last was saved last
        if mine:
            return mine[-1]
        return self.named(DEFAULT.title()) or self.templates[0]


def bundled_dir() -> Path:
    return resources_dir() / "report_templates"


def user_dir() -> Path:
    return config_dir() / "report_templates"


def template_from_dict(data: object, source: Path, user: bool) -> Template:
    """``TemplateError`` saying why when it is not a template."""
    if not isinstance(data, dict) or not isinstance(data.get("sections"), dict):
        raise TemplateError("expected an object with a 'sections' object")
    sections = data["sections"]
    unknown = set(sections) - set(SECTIONS)
    if unknown or not all(isinstance(v, str) for v in sections.values()):
        raise TemplateError(f"sections must be text under {', '.join(SECTIONS)}")
    name, modality = data.get("name", source.stem), data.get("modality", "")
    if not isinstance(name, str) or not isinstance(modality, str):
        raise TemplateError("name and modality must be text")
    return Template(name, modality, dict(sections), user)


def read_templates() -> TemplateSet:
    """Bundled templates, then the user's oldest first (a user template replaces the bundled one of its name)."""
    found: dict[str, Template] = {}
    problems = []
    for folder, user in ((bundled_dir(), False), (user_dir(), True)):
        for path in _oldest_first(folder):
            try:
                template = template_from_dict(read_json(path), path, user)
            except (JsonFileError, TemplateError) as err:
                problems.append(f"The report template {path.name} was skipped: {err}.")
                continue
            found.pop(template.name, None)  # a replaced bundled template moves to its replacement's place
            found[template.name] = template
    if not found:
        found[DEFAULT.title()] = Template(DEFAULT.title(), "", dict.fromkeys(SECTIONS, ""))
    return TemplateSet(tuple(found.values()), tuple(problems))


def _oldest_first(folder: Path) -> list[Path]:
    """Template files by time saved (then name), so ``for_modality`` can take the user's newest."""
    paths = list(folder.glob("*.json")) if folder.is_dir() else []
    return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name))


def save_user_template(name: str, modality: str, sections: dict[str, str]) -> Path:
    """Write (atomically) a user template; the next report of ``modality`` starts from it."""
    clean = _UNSAFE.sub("_", name.strip()) or DEFAULT
    path = user_dir() / f"{clean}.json"
    write_json_atomic(path, {"name": name.strip() or clean, "modality": modality, "sections": dict(sections)})
    return path
