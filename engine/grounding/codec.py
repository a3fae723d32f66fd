"""Text codecs of grounded answers: each model family's box markup <-> pixel boxes with their phrases.

Why one tolerant parser per dialect: the grounded models people can download write boxes
differently, and a generated answer can be cut off or garbled at any point. Every caller (chat
panel, CLI, evaluation, SASG, pre-annotation) must see the same boxes for the same text, so
nothing else parses box markup. The dialects:

- ``qwen2vl`` (Qwen2-VL, ClinKD): ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` on the 0-1000 grid;
  the same parser reads Qwen-VL / Med-GRIT ``<box>`` and bare ``(x1,y1),(x2,y2)`` as users type them.
- ``bbox_2d`` (Qwen2.5-VL, Qwen3-VL): JSON objects ``{"bbox_2d": [x1, y1, x2, y2], "label": ...}``,
  usually a list in a ```json fence; Qwen3-VL writes the 0-1000 grid, Qwen2.5-VL absolute pixels
  of the processor's resized input (the caller passes that size as ``frame``).
- ``box_2d`` (MedGemma 1.5): JSON ``{"box_2d": [y0, x0, y1, x1], "label": ...}`` on the 0-1000
  grid, y first, after the answer's "Final Answer:".

Whatever the dialect, a GroundedBox is in pixels of the ORIGINAL image, and its ``grid`` is the
same box on the 0-1000 grid of the original image, x first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.grounding.grid import GRID, GRID_FRAME, Frame, PixelBox, frame_to_pixels, ordered, pixels_to_frame

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

DIALECTS = ("qwen2vl", "bbox_2d", "box_2d")
"""Box dialects, by the name GroundedBox.markup gives the boxes read in them (see the module doc)."""
_JSON_KEYS = {"bbox_2d": "bbox_2d", "box_2d": "box_2d"}
_OBJECT = r"\{{[^{{}}]*?\"{key}\"\s*:\s*\["
_LABEL = re.compile(r'"label"\s*:\s*"((?:[^"\\]|\\.)*)"?')
_LIST_OPEN = re.compile(r"(?:```(?:json)?\s*)?\[?\s*$")  # what opens a list of box objects
_LIST_CLOSE = re.compile(r"^\s*\]?\s*(?:```)?")  # what closes it


@dataclass(frozen=True)
class GroundedBox:
    """One box of an answer, in pixels of the original image, with the phrase it grounds.

    ``grid`` is the box on the 0-1000 grid of the original image, x first (for the grid dialects
    the model's own numbers after clamping and ordering), so evaluation compares every family on
    one scale; ``clamped`` / ``reordered`` say the model wrote something outside the convention.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    grid: tuple[float, float, float, float]
    phrase: str | None
    markup: str  # "qwen2vl" (<|box_start|>), "qwenvl" (<box>), "bare", "bbox_2d" or "box_2d" (JSON)
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


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"box dialect must be one of {', '.join(DIALECTS)}, got {dialect!r}")


def box_to_text(
    box: Sequence[float], width: float, height: float, dialect: str = "qwen2vl", frame: Frame = GRID_FRAME
) -> str:
    """Write a pixel box of the original image as the family's own markup, in its own numbers.

    ``frame`` is the space the model's numbers live in (see engine.grounding.grid.Frame):
    Qwen2-VL markup is always on the grid; a JSON box is written in ``frame``.
    """
    _check_dialect(dialect)
    if dialect == "qwen2vl":
        x1, y1, x2, y2 = pixels_to_frame(box, width, height, GRID_FRAME)
        return f"{BOX_START}({x1},{y1}),({x2},{y2}){BOX_END}"
    x1, y1, x2, y2 = pixels_to_frame(box, width, height, frame)
    values = [x1, y1, x2, y2] if dialect == "bbox_2d" else [y1, x1, y2, x2]
    return json.dumps({_JSON_KEYS[dialect]: values})


def detect_dialect(text: str) -> str:
    """The dialect an answer is written in, from its markup (``qwen2vl`` when it has no JSON box).

    For predictions files that do not say which family wrote them.
    """
    for dialect in ("box_2d", "bbox_2d"):
        if re.search(rf'"{dialect}"\s*:', text):
            return dialect
    return "qwen2vl"


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


def _box(
    raw: Sequence[float],
    *,
    content: str,
    markup: str,
    span: tuple[int, int],
    phrase: str | None,
    size: tuple[float, float],
    frame: Frame,
) -> tuple[GroundedBox, str | None]:
    """One box from the model's four numbers (x1, y1, x2, y2 in ``frame``): clamped, ordered,
    mapped to pixels of the original ``size`` and to the grid; with the issue found, if any."""
    fw, fh = frame
    clamped_values = [min(float(limit), max(0.0, v)) for v, limit in zip(raw, (fw, fh, fw, fh), strict=True)]
    values = ordered(*clamped_values)
    pixels = frame_to_pixels(values, *size, frame)
    grid = values if frame == GRID_FRAME else frame_to_pixels(values, GRID, GRID, frame)
    clamped = clamped_values != list(raw)
    box = GroundedBox(
        *pixels,
        grid=grid,
        phrase=phrase,
        markup=markup,
        span=span,
        clamped=clamped,
        reordered=values != tuple(clamped_values),
    )
    return box, f"clamped out-of-range box {content.strip()!r} at {span[0]}" if clamped else None


def _boxes_from(
    content: str, markup: str, span: tuple[int, int], phrase: str | None, width: float, height: float
) -> tuple[list[GroundedBox], list[str]]:
    """Read the boxes inside one markup fragment, with the issues found (malformed, out of range)."""
    numbers = [float(n) for n in _NUMBERS.findall(content)]
    if not numbers or len(numbers) % 4 or not _PAIRS_ONLY.match(content):
        return [], [f"ignored malformed box {content.strip()!r} at {span[0]}"]
    boxes, issues = [], []
    for i in range(0, len(numbers), 4):
        box, issue = _box(
            numbers[i : i + 4],
            content=content,
            markup=markup,
            span=span,
            phrase=phrase,
            size=(width, height),
            frame=GRID_FRAME,
        )
        boxes.append(box)
        issues += [issue] if issue else []
    return boxes, issues


def _tidy(pieces: Sequence[str]) -> str:
    clean = "".join(pieces)
    clean = re.sub(r"[ \t]{2,}", " ", clean)
    clean = re.sub(r"[ \t]+([.,;:!?])", r"\1", clean)
    return clean.strip()


def parse_answer(
    text: str, width: float, height: float, dialect: str = "qwen2vl", frame: Frame = GRID_FRAME
) -> ParsedAnswer:
    """Parse the boxes of ``dialect`` in ``text``; return clean text, pixel boxes of the original
    ``width`` x ``height`` image with their phrases, and issues.

    ``frame`` is the space of the model's numbers for the JSON dialects (the resized input for
    Qwen2.5-VL; the grid otherwise). Out-of-range values are clamped and flagged; malformed,
    unpaired or cut-off markup is dropped from the text and reported in ``issues``.
    """
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")
    _check_dialect(dialect)
    if dialect == "qwen2vl":
        return _parse_qwen2vl(text, width, height)
    return _parse_json_boxes(text, width, height, dialect, frame)


def _parse_json_boxes(text: str, width: float, height: float, dialect: str, frame: Frame) -> ParsedAnswer:
    """Qwen2.5-VL / Qwen3-VL / MedGemma JSON boxes: each object's box, its ``label`` as the phrase.

    Each object gives way to its label in the clean text, and the list and code fence around the
    objects go with them. An object cut off after its four numbers still gives its box (noted);
    one cut off before them gives none.
    """
    key = _JSON_KEYS[dialect]
    opening = re.compile(_OBJECT.format(key=re.escape(key)))
    pieces: list[str] = []
    boxes: list[GroundedBox] = []
    issues: list[str] = []
    cursor = 0
    in_list = False
    for match in opening.finditer(text):
        if match.start() < cursor:
            continue  # inside the previous object
        end = text.find("}", match.end())
        closed = end >= 0 and "{" not in text[match.end() : end]
        stop = end + 1 if closed else len(text)
        obj = text[match.start() : stop]
        gap = text[cursor : match.start()]
        label_match = _LABEL.search(obj)
        label = _json_string(label_match.group(1)).strip() if label_match else ""
        if in_list and re.fullmatch(r"[\s,]*", gap):
            gap = "; " if label else ""  # between two objects of one list
        else:
            if in_list:
                gap = gap[_LIST_CLOSE.match(gap).end() :]
            gap = gap[: _LIST_OPEN.search(gap).start()]
        pieces.append(gap)
        in_list = True
        cursor = stop
        pieces.append(label)
        numbers_text = obj[match.end() - match.start() :].split("]", 1)
        numbers = [float(n) for n in _NUMBERS.findall(numbers_text[0])]
        span = (match.start(), stop)
        if (
            len(numbers_text) < 2
            or len(numbers) != 4
            or not re.fullmatch(rf"\s*{_NUM}(?:\s*,\s*{_NUM}){{3}}\s*", numbers_text[0])
        ):
            issues.append(f"ignored malformed box {obj.strip()[:60]!r} at {span[0]}")
            continue
        if not closed:
            issues.append(f"read the box of a cut-off object {obj.strip()[:60]!r} at {span[0]}")
        raw = numbers if dialect == "bbox_2d" else [numbers[1], numbers[0], numbers[3], numbers[2]]
        box, issue = _box(
            raw,
            content=obj,
            markup=dialect,
            span=span,
            phrase=label or None,
            size=(width, height),
            frame=frame,
        )
        boxes.append(box)
        issues += [issue] if issue else []
    tail = text[cursor:]
    if in_list:
        tail = tail[_LIST_CLOSE.match(tail).end() :]
    pieces.append(tail)
    return ParsedAnswer(text=_tidy(pieces), boxes=tuple(boxes), issues=tuple(issues))


def _json_string(body: str) -> str:
    """A JSON string's text from its body between the quotes (escapes undone where they parse)."""
    try:
        return json.loads(f'"{body}"')
    except json.JSONDecodeError:
        return body


def _parse_qwen2vl(text: str, width: float, height: float) -> ParsedAnswer:
    """Qwen2-VL tokens, Qwen-VL ``<box>`` and bare pairs.

    A ``<ref>`` / ``<|object_ref_start|>`` phrase stays in the clean text and labels the boxes that
    follow it directly (separated by nothing but spaces or commas).
    """
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
    return ParsedAnswer(text=_tidy(pieces), boxes=tuple(boxes), issues=tuple(issues))
