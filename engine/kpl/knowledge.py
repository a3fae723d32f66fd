"""Knowledge bases: per task, the classes and short visual descriptions KPL retrieves from.

One JSON file per task (bundled in resources/knowledge/, user files in the user data folder or
anywhere on disk). The format is documented in docs/reference/knowledge-base.md; ``parse_knowledge`` validates it and
names the exact place of every problem, because users write these files by hand.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.files import JsonFileError, read_json, write_json_atomic
from engine.paths import config_dir, resources_dir

FORMAT = "clinlens-knowledge/1"
DEFAULT_TEMPLATE = "a photo of a {class}, which has {description}"
MAX_DESCRIPTION_CHARS = 200


class KnowledgeError(ValueError):
    """A knowledge base that cannot be used; ``str(err)`` names the file and the place."""


@dataclass(frozen=True)
class KnowledgeClass:
    name: str  # the class label shown to users and matched to folder names
    descriptions: tuple[str, ...]
    prompt_name: str = ""  # what goes into the prompt's {class}; the name when empty
    aliases: tuple[str, ...] = ()  # other folder names that mean this class

    @property
    def text(self) -> str:
        return self.prompt_name or self.name

    def matches(self, folder_name: str) -> bool:
        wanted = _norm(folder_name)
        return any(_norm(n) == wanted for n in (self.name, *self.aliases))


@dataclass(frozen=True)
class KnowledgeBase:
    name: str  # identifier: the file name without .json
    task: str
    modality: str
    classes: tuple[KnowledgeClass, ...]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def prompts(self, template: str = DEFAULT_TEMPLATE) -> list[list[str]]:
        """The prompt of every description, grouped by class, in class order."""
        check_template(template)
        return [
            [template.replace("{class}", c.text).replace("{description}", d) for d in c.descriptions]
            for c in self.classes
        ]

    def to_json(self) -> dict[str, Any]:
        classes = []
        for c in self.classes:
            entry: dict[str, Any] = {"name": c.name}
            if c.prompt_name:
                entry["prompt_name"] = c.prompt_name
            if c.aliases:
                entry["aliases"] = list(c.aliases)
            entry["descriptions"] = list(c.descriptions)
            classes.append(entry)
        return {
            "format": FORMAT,
            "task": self.task,
            "modality": self.modality,
            "classes": classes,
            "provenance": dict(self.provenance),
        }


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text).strip().casefold()


def check_template(template: str) -> None:
    for slot in ("{class}", "{description}"):
        if slot not in template:
            raise KnowledgeError(f"prompt template {template!r} lacks {slot}")


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise KnowledgeError(f"{where}: expected {what}, got {type(value).__name__} {value!r:.60}")
    return value


def _text(value: Any, where: str) -> str:
    text = _expect(value, str, where, "a string").strip()
    if not text:
        raise KnowledgeError(f"{where}: empty string")
    return text


def parse_knowledge(data: Any, name: str, source: str = "") -> KnowledgeBase:
    """Validate a decoded JSON document; every error message starts with ``source``."""
    at = source or name
    _expect(data, dict, at, "a JSON object")
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise KnowledgeError(f"{at}: format {fmt!r} is not {FORMAT!r}")
    for key in ("task", "modality", "classes", "provenance"):
        if key not in data:
            raise KnowledgeError(f"{at}: missing {key!r}")
    unknown = set(data) - {"format", "task", "modality", "classes", "provenance"}
    if unknown:
        raise KnowledgeError(f"{at}: unknown keys {sorted(unknown)}")
    task = _text(data["task"], f"{at}: task")
    modality = _text(data["modality"], f"{at}: modality")
    provenance = _expect(data["provenance"], dict, f"{at}: provenance", "an object")
    _text(provenance.get("source"), f"{at}: provenance.source")
    raw_classes = _expect(data["classes"], list, f"{at}: classes", "a list of classes")
    if len(raw_classes) < 2:
        raise KnowledgeError(f"{at}: classes: need at least two classes, found {len(raw_classes)}")
    classes: list[KnowledgeClass] = []
    seen_names: dict[str, str] = {}
    for i, raw in enumerate(raw_classes):
        where = f"{at}: classes[{i}]"
        _expect(raw, dict, where, "an object with name and descriptions")
        if "name" not in raw:
            raise KnowledgeError(f"{where}: missing 'name'")
        if "descriptions" not in raw:
            raise KnowledgeError(f"{where}: missing 'descriptions'")
        unknown = set(raw) - {"name", "prompt_name", "aliases", "descriptions"}
        if unknown:
            raise KnowledgeError(f"{where}: unknown keys {sorted(unknown)}")
        cname = _text(raw["name"], f"{where}.name")
        where = f"{at}: class {cname!r}"
        prompt_name = _text(raw["prompt_name"], f"{where}.prompt_name") if "prompt_name" in raw else ""
        aliases = tuple(
            _text(a, f"{where}.aliases[{j}]")
            for j, a in enumerate(_expect(raw.get("aliases", []), list, f"{where}.aliases", "a list of strings"))
        )
        if _norm(cname) in seen_names:
            raise KnowledgeError(f"{where}: duplicates class {seen_names[_norm(cname)]!r}")
        for label in (cname, *aliases):
            owner = seen_names.setdefault(_norm(label), cname)
            if owner != cname:
                raise KnowledgeError(f"{where}: alias {label!r} already names class {owner!r}")
        raw_desc = _expect(raw["descriptions"], list, f"{where}.descriptions", "a list of strings")
        if not raw_desc:
            raise KnowledgeError(f"{where}.descriptions: empty list; give at least one visual description")
        descriptions: list[str] = []
        seen_desc: dict[str, int] = {}
        for j, d in enumerate(raw_desc):
            text = _text(d, f"{where}.descriptions[{j}]")
            if len(text) > MAX_DESCRIPTION_CHARS:
                raise KnowledgeError(
                    f"{where}.descriptions[{j}]: {len(text)} characters; keep descriptions under"
                    f" {MAX_DESCRIPTION_CHARS} (CLIP reads 77 tokens)"
                )
            key = _norm(text).rstrip(".")
            if key in seen_desc:
                raise KnowledgeError(f"{where}.descriptions[{j}]: duplicates descriptions[{seen_desc[key]}] {text!r}")
            seen_desc[key] = j
            descriptions.append(text)
        classes.append(KnowledgeClass(cname, tuple(descriptions), prompt_name, aliases))
    return KnowledgeBase(name, task, modality, tuple(classes), dict(provenance), source)


def load_knowledge(path: str | os.PathLike) -> KnowledgeBase:
    """Read and validate a knowledge base file; ``KnowledgeError`` (naming it) for any problem."""
    p = Path(path)
    if not p.exists():
        raise KnowledgeError(f"{p}: no such knowledge base file")
    try:
        data = read_json(p)
    except JsonFileError as err:
        raise KnowledgeError(str(err)) from None
    return parse_knowledge(data, p.stem, str(p))


def save_knowledge(kb: KnowledgeBase, path: str | os.PathLike) -> None:
    write_json_atomic(path, kb.to_json())


def bundled_knowledge_dir() -> Path:
    return resources_dir() / "knowledge"


def user_knowledge_dir() -> Path:
    """Where users drop their own knowledge bases (listed next to the bundled ones)."""
    return config_dir() / "knowledge"


def knowledge_dirs() -> list[Path]:
    return [bundled_knowledge_dir(), user_knowledge_dir()]


def available_knowledge(dirs: Sequence[Path] | None = None) -> list[Path]:
    """Knowledge base files by name; a user file shadows a bundled one of the same name."""
    found: dict[str, Path] = {}
    for d in dirs if dirs is not None else knowledge_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.json")):
                found[p.stem] = p
    return [found[k] for k in sorted(found)]


def resolve_knowledge(name_or_file: str | os.PathLike, dirs: Sequence[Path] | None = None) -> KnowledgeBase:
    """A knowledge base by file path, or by name among the bundled and user bases."""
    text = os.fspath(name_or_file)
    if text.endswith(".json") or "/" in text or os.sep in text or Path(text).is_file():
        return load_knowledge(text)
    known = {p.stem: p for p in available_knowledge(dirs)}
    if text in known:
        return load_knowledge(known[text])
    names = ", ".join(known) or "none"
    raise KnowledgeError(f"no knowledge base named {text!r}; available: {names} (or give a .json file)")
