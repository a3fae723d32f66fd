"""Task prompts for ClinKD / Qwen2-VL and the other grounded families: Med-GRIT tasks and free questions.

Why fixed phrasings: a fine-tuned checkpoint answers best in the wording it was trained on, so the
task templates follow the Med-GRIT (BiRD) and ClinKD demo phrasings, with boxes written in the
model's own dialect and numbers: ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` on the 0-1000 grid of
the original image for Qwen2-VL, JSON ``bbox_2d`` / ``box_2d`` for the others (engine.grounding
does the conversion). The Prompt keeps the dialect and frame, so its answer is read the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from engine.grounding import GRID_FRAME, Frame, box_to_text, normalize_box_markup, parse_answer

SYSTEM_PROMPT = "You are a helpful assistant."

BOX_PLACEHOLDER = "{box}"
"""Where a free question wants the user's box; without it the box is appended to the question."""

# The chat template that Qwen2-VL-*-Instruct ships (chat_template.json); used when a checkpoint
# folder (for example a bare fine-tune export) carries none, so every folder gets the same prompt.
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class Task(enum.Enum):
    """Med-GRIT task codes (as the CLI spells them) plus free questions."""

    FREE = "free"
    VG = "vg"  # visual grounding: phrase -> box
    ROC = "roc"  # referring object classification: box -> label
    RC = "rc"  # region captioning: box -> description
    MIA = "mia"  # medical image analysis: whole image -> description

    @property
    def needs_box(self) -> bool:
        return self in (Task.ROC, Task.RC)

    @property
    def grounds(self) -> bool:
        """True when a good answer contains boxes (SASG penalises candidates without them)."""
        return self is Task.VG


_TEMPLATES = {
    # Med-GRIT's test-set wording (what trained models saw); ClinKD's demo asks "What is located at {box}?"
    Task.ROC: "What anatomical structure is present at the {box}?",
    Task.RC: "Can you describe the content within the {box}?",
    Task.MIA: "What can you interpret from the overall image?",
}


def default_question(task: Task) -> str:
    """The Med-GRIT wording of a task ("{box}" marks where the box goes); empty for VG and free
    questions, which start from the user's words. The GUI shows it as an editable template."""
    return _TEMPLATES.get(task, "")


@dataclass(frozen=True)
class Prompt:
    """The question as the model read it, the phrase a VG answer's boxes ground, and how the
    answer's boxes are read: the family's dialect and the frame of its numbers."""

    task: Task
    question: str
    phrase: str | None = None
    dialect: str = "qwen2vl"
    frame: Frame = GRID_FRAME


def _in_dialect(text: str, width: float | None, height: float | None, dialect: str, frame: Frame) -> str:
    """Rewrite the grid boxes typed in a question (or a dataset's ``<box>``) into ``dialect``, so a
    Med-GRIT question reaches a Qwen2.5-VL or MedGemma model in the numbers it reads."""
    if dialect == "qwen2vl" or width is None or height is None:
        return text
    by_span: dict[tuple[int, int], list[str]] = {}
    for box in parse_answer(text, width, height).boxes:
        by_span.setdefault(box.span, []).append(box_to_text(box.pixels, width, height, dialect, frame))
    for (start, end), boxes in sorted(by_span.items(), reverse=True):
        text = f"{text[:start]}{', '.join(boxes)}{text[end:]}"
    return text


def _target_phrase(text: str) -> str:
    words = text.strip().rstrip("?.").strip()
    lowered = words.lower()
    return words if lowered.startswith(("the ", "a ", "an ")) else f"the {words}"


def build_prompt(
    task: Task,
    text: str = "",
    box: Sequence[float] | None = None,
    width: float | None = None,
    height: float | None = None,
    *,
    dialect: str = "qwen2vl",
    frame: Frame = GRID_FRAME,
) -> Prompt:
    """Build the question for ``task``.

    - VG: ``text`` is the structure to find ("left lung"); a full question ending in "?" is kept.
    - ROC / RC: need ``box`` (pixels of the original ``width`` x ``height`` image); ``text``, when
      given, replaces the template and may place the box with ``{box}``.
    - MIA: the Med-GRIT whole-image question unless ``text`` is given.
    - FREE: ``text`` as typed; a box goes where ``{box}`` is, or after the question.
    Dataset markup (``<box>``, ``<ref>``) in ``text`` is rewritten into Qwen2-VL tokens. The box
    is written in ``dialect``, in ``frame``'s numbers (the family's; see engine.clinkd.families).
    """
    text = _in_dialect(normalize_box_markup(text.strip()), width, height, dialect, frame)
    box_text = None
    if box is not None:
        if width is None or height is None:
            raise ValueError("a box needs the original image width and height")
        box_text = box_to_text(box, width, height, dialect, frame)
    if task.needs_box and box_text is None:
        raise ValueError(f"task {task.value} needs a box")

    if task is Task.VG:
        if not text:
            raise ValueError("visual grounding needs the structure to find, e.g. 'left lung'")
        if text.endswith("?"):
            return Prompt(task, text, None, dialect, frame)
        phrase = _target_phrase(text)
        return Prompt(task, f"Where is {phrase} located in the image?", phrase.split(" ", 1)[1], dialect, frame)

    template = text or _TEMPLATES.get(task, "")
    if not template:
        raise ValueError("a free question needs text")
    if box_text is None:
        if BOX_PLACEHOLDER in template:
            raise ValueError("the question has a {box} placeholder but no box was given")
        return Prompt(task, template, None, dialect, frame)
    if BOX_PLACEHOLDER in template:
        return Prompt(task, template.replace(BOX_PLACEHOLDER, box_text), None, dialect, frame)
    return Prompt(task, f"{template} {box_text}", None, dialect, frame)
