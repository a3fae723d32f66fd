"""Text codecs of grounded answers: Qwen2-VL box markup <-> pixel boxes with their phrases.

Why one tolerant parser: models and datasets write boxes in three dialects (Qwen2-VL
``<|box_start|>``, Qwen-VL / Med-GRIT ``<box>``, and bare ``(x1,y1),(x2,y2)`` as users type them),
and a generated answer can be cut off or garbled at any point. Every caller (chat panel, CLI,
evaluation, SASG) must see the same boxes for the same text, so nothing else parses box markup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.grounding.grid import GRID, PixelBox, grid_to_pixels, ordered, pixels_to_grid

BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"
REF_START, REF_END = "<|object_ref_start|>", "<|object_ref_end|>"

_NUM = r"[-+]?\d+(?:\.\d+)?"
_PAIR = rf"\(\s*{_NUM}\s*,\s*{_NUM}\s*\)"
_TOKEN = re.compile(
    r"<\|object_ref_start\|>(?P<ref_q2>[^<]*)<\|object_ref_end\|>"
    r"|<ref>(?P<ref_q1>[^<]*)</ref>"
    r"|<\|box_start\|>(?P<box_q2>[^<]*)<\|box_end\|>"
    r"|<box>(?P<box_q1>[^<]*)</box>"
    rf"|(?P<bare>{_PAIR}\s*,\s*{_PAIR})"
    # unpaired tags; an opening box tag takes the coordinate debris after it (a cut-off answer)
    r"|(?P<stray>(?:<\|box_start\|>|<box>)[-+\d\s,().]*"
    r"|<\|object_ref_start\|>|<\|object_ref_end\|>|<\|box_end\|>|</?ref>|</box>)"
)
_NUMBERS = re.compile(_NUM)
_PAIRS_ONLY = re.compile(rf"^\s*{_PAIR}(?:\s*,\s*{_PAIR})*\s*$")
_PHRASE_GAP = re.compile(r"^[\s,;:]*$")  # what may separate a phrase from the boxes it grounds
_LEGACY = re.compile(r"<box>([^<]*)</box>|<ref>([^<]*)</ref>")


@dataclass(frozen=True)
class GroundedBox:
    """One box of an answer, in pixels of the original image, with the phrase it grounds.

    ``grid`` keeps the model's own numbers (after clamping and ordering) so evaluation can compare
    on the grid; ``clamped`` / ``reordered`` say the model wrote something outside the convention.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    grid: tuple[float, float, float, float]
    phrase: str | None
    markup: str  # "qwen2vl" (<|box_start|>), "qwenvl" (<box>) or "bare"
    span: tuple[int, int]  # character range of the box markup in the raw text
    clamped: bool = False
    reordered: bool = False

    @property
    def pixels(self) -> PixelBox:
        return self.x1, self.y1, self.x2, self.y2

    @property
    def valid(self) -> bool:
        """True when the model wrote an in-range box with a positive area."""
        gx1, gy1, gx2, gy2 = self.grid
        return not self.clamped and gx2 > gx1 and gy2 > gy1


@dataclass(frozen=True)
class ParsedAnswer:
    """An answer with its box markup removed, the boxes it carried, and what could not be read."""

    text: str
    boxes: tuple[GroundedBox, ...]
    issues: tuple[str, ...]


def box_to_text(box: Sequence[float], width: float, height: float) -> str:
    """Write a pixel box of the original image as Qwen2-VL markup on the 0-1000 grid."""
    x1, y1, x2, y2 = pixels_to_grid(box, width, height)
    return f"{BOX_START}({x1},{y1}),({x2},{y2}){BOX_END}"


def normalize_box_markup(text: str) -> str:
    """Rewrite Qwen-VL / Med-GRIT ``<box>`` and ``<ref>`` markup into Qwen2-VL tokens.

    This is the rewrite ClinKD applied to its training data, so dataset questions reach the model
    in the format it was trained on.
    """

    def rewrite(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return f"{BOX_START}{match.group(1)}{BOX_END}"
        return f"{REF_START}{match.group(2)}{REF_END}"

    return _LEGACY.sub(rewrite, text)


def _boxes_from(
    content: str, markup: str, span: tuple[int, int], phrase: str | None, width: float, height: float
) -> tuple[list[GroundedBox], list[str]]:
    """Read the boxes inside one markup fragment, with the issues found (malformed, out of range)."""
    numbers = [float(n) for n in _NUMBERS.findall(content)]
    if not numbers or len(numbers) % 4 or not _PAIRS_ONLY.match(content):
        return [], [f"ignored malformed box {content.strip()!r} at {span[0]}"]
    boxes, issues = [], []
    for i in range(0, len(numbers), 4):
        raw = numbers[i : i + 4]
        clamped_values = [min(float(GRID), max(0.0, v)) for v in raw]
        grid = ordered(*clamped_values)
        if clamped_values != raw:
            issues.append(f"clamped out-of-range box {content.strip()!r} at {span[0]}")
        boxes.append(
            GroundedBox(
                *grid_to_pixels(grid, width, height),
                grid=grid,
                phrase=phrase,
                markup=markup,
                span=span,
                clamped=clamped_values != raw,
                reordered=grid != tuple(clamped_values),
            )
        )
    return boxes, issues


def parse_answer(text: str, width: float, height: float) -> ParsedAnswer:
    """Parse every box dialect in ``text``; return clean text, pixel boxes with phrases, and issues.

    A ``<ref>`` / ``<|object_ref_start|>`` phrase stays in the clean text and labels the boxes that
    follow it directly (separated by nothing but spaces or commas). Out-of-range values are clamped
    and flagged; malformed or unpaired markup is dropped from the text and reported in ``issues``.
    """
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")
    pieces: list[str] = []
    boxes: list[GroundedBox] = []
    issues: list[str] = []
    phrase: str | None = None
    cursor = 0
    previous_was_box = False
    for match in _TOKEN.finditer(text):
        gap = text[cursor : match.start()]
        kind = match.lastgroup
        is_box = kind in ("box_q2", "box_q1", "bare")
        separator_only = bool(_PHRASE_GAP.match(gap))
        # the separator between two boxes of one list goes with them
        pieces.append("" if previous_was_box and is_box and separator_only else gap)
        if not separator_only:
            phrase = None
        cursor = match.end()
        previous_was_box = is_box
        if kind in ("ref_q2", "ref_q1"):
            words = match.group(kind).strip()
            pieces.append(words)
            phrase = words or None
        elif kind == "stray":
            issues.append(f"ignored unpaired markup {match.group(kind).strip()!r} at {match.start()}")
        else:
            markup = {"box_q2": "qwen2vl", "box_q1": "qwenvl", "bare": "bare"}[kind]
            found, found_issues = _boxes_from(match.group(kind), markup, match.span(), phrase, width, height)
            boxes.extend(found)
            issues.extend(found_issues)
    pieces.append(text[cursor:])
    clean = "".join(pieces)
    clean = re.sub(r"[ \t]{2,}", " ", clean)
    clean = re.sub(r"[ \t]+([.,;:!?])", r"\1", clean)
    return ParsedAnswer(text=clean.strip(), boxes=tuple(boxes), issues=tuple(issues))
