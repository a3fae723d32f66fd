"""What a pre-annotation run does: the task, its labels or knowledge base, the window, the length.

Light module (no torch): the GUI builds and checks a spec before anything is submitted, and the
CLI refuses a bad label list before it opens an image or loads a model. ``key`` hashes the
settings with the model id; a resumed run skips the images already done under the same key.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from engine.imaging import Window

MIA_LABEL = "image analysis"
"""The label of a whole-image analysis note (the text is in the note)."""

MAX_LABEL_CHARS = 80
"""A "what is here" answer longer than this is cut to make a label (the whole answer is in the note)."""


class PreTask(enum.Enum):
    """The pre-annotation tasks, as the CLI spells them."""

    VG = "vg"  # one grounding question per label -> model boxes
    ROC = "roc"  # "what is here?" over the existing boxes -> relabel proposals
    MIA = "mia"  # whole-image analysis -> an image-level note
    KPL = "kpl"  # KPL zero-shot classification with a knowledge base -> an image label
    SEG = "seg"  # grounding per label, then the segmenter on each answer box -> model masks

    @property
    def title(self) -> str:
        return {
            PreTask.VG: "Find structures (grounding, one question per label)",
            PreTask.ROC: "What is here? (relabel the existing boxes)",
            PreTask.MIA: "Whole-image analysis note",
            PreTask.KPL: "KPL labels with a knowledge base",
            PreTask.SEG: "Segment structures (grounding box, then a mask per label)",
        }[self]

    @property
    def uses_clinkd(self) -> bool:
        return self is not PreTask.KPL

    @property
    def asks_per_label(self) -> bool:
        """One grounding question per label: the tasks that need a checked label list."""
        return self in (PreTask.VG, PreTask.SEG)


class LabelListError(ValueError):
    """A label list with empty or duplicate names; the message names every problem at once."""


def split_labels(text: str) -> list[str]:
    """A typed label list: names separated by commas or new lines (empty entries kept, so that
    ``check_labels`` can point at them)."""
    return [part for line in text.splitlines() or [""] for part in line.split(",")]


def check_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """The trimmed names, or LabelListError naming every empty and duplicated entry.

    Duplicates are found regardless of case and spaces ("Heart" and " heart" are one structure).
    """
    names = [str(label).strip() for label in labels]
    problems = []
    empty = [str(i) for i, name in enumerate(names, 1) if not name]
    if not names:
        problems.append("it is empty")
    if empty:
        problems.append(f"entry {', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty")
    seen: dict[str, str] = {}
    duplicates = []
    for name in names:
        folded = " ".join(name.lower().split())
        if name and folded in seen and name not in duplicates:
            duplicates.append(name)
        seen.setdefault(folded, name)
    if duplicates:
        problems.append("duplicated: " + ", ".join(repr(d) for d in duplicates))
    if problems:
        raise LabelListError("The label list cannot be used: " + "; ".join(problems) + ". Nothing was run.")
    return tuple(names)


def window_text(window: Window | None) -> str:
    """How the model was shown the image, for provenance and summaries."""
    if window is None:
        return "as displayed by default (header window)"
    text = f"C {window.center:g} / W {window.width:g}"
    if window.function != "LINEAR":
        text += f" {window.function}"
    return f"{window.explanation}: {text}" if window.explanation else text


@dataclass(frozen=True)
class PreannotateSpec:
    """One run's settings; validated on construction (labels checked for VG and SEG)."""

    task: PreTask
    labels: tuple[str, ...] = ()
    knowledge: str = ""
    window: Window | None = None
    max_new_tokens: int = 80
    invert: bool = False  # the display was inverted (the model sees what the user sees)
    segmenter: str = ""  # seg: the segmentation model's id (part of the key: another model is another run)
    second_model: str = ""  # vg: the second opinion's model id (part of the key, as the segmenter)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", PreTask(self.task))
        if self.task.asks_per_label:
            object.__setattr__(self, "labels", check_labels(self.labels))
        else:
            object.__setattr__(self, "labels", ())
        if self.task is PreTask.KPL and not self.knowledge:
            raise ValueError("KPL labels need a knowledge base (--knowledge NAME)")
        if self.task is not PreTask.KPL:
            object.__setattr__(self, "knowledge", "")
        if self.task is not PreTask.SEG:
            object.__setattr__(self, "segmenter", "")
        if self.second_model and self.task is not PreTask.VG:
            raise ValueError(
                "A second opinion compares the two models' grounding boxes: it runs with the vg task "
                f"(find labels), not {self.task.value}."
            )
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")

    def settings_text(self, model_id: str) -> str:
        """The settings as canonical JSON (kept in every proposal's provenance)."""
        window = (
            None
            if self.window is None
            else {"center": self.window.center, "width": self.window.width, "function": self.window.function}
        )
        data = {
            "task": self.task.value,
            "labels": list(self.labels),
            "knowledge": self.knowledge,
            "window": window,
            "max_new_tokens": self.max_new_tokens,
            "model": model_id,
        }
        if self.invert:
            data["invert"] = True
        if self.segmenter:
            data["segmenter"] = self.segmenter
        if self.second_model:
            data["second_model"] = self.second_model
        return json.dumps(data, sort_keys=True)

    def key(self, model_id: str) -> str:
        """Same model and settings, same key: what a resumed run recognises as done."""
        return hashlib.sha256(self.settings_text(model_id).encode("utf-8")).hexdigest()[:16]

    def questions_per_image(self, boxes: int = 0) -> int:
        return {
            PreTask.VG: len(self.labels),
            PreTask.SEG: len(self.labels),
            PreTask.ROC: boxes,
            PreTask.MIA: 1,
            PreTask.KPL: 0,
        }[self.task]
