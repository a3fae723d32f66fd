"""The papers' per-answer rules for Med-GRIT, as their evaluation scripts compute them.

BiRD's ``tests/models/BiRD/eval_*_score_modality.py`` and ``regularization.py`` (copied unchanged
into ClinKD's ``test_metric/``) define how the published numbers were counted. Their quirks are
part of the protocol and are reproduced on purpose, so our numbers compare with theirs:

- the response is first cut by ``extract_information`` (text before ``.<|im_end|>``, and only the
  first inner line when the answer spans three or more lines);
- grounding reads ``<box>...</box>``, falling back to bare ``(x1,y1),(x2,y2)`` with integers and no
  spaces (which is what catches Qwen2-VL's ``<|box_start|>`` answers); a reference box counts as
  found when ANY predicted box overlaps it with IoU strictly above 0.5; IoU is computed on the raw
  numbers (a reversed box has IoU 0) and is 0 when either box does not have exactly four numbers;
  references without a box are skipped;
- classification is correct when every space-separated word of the lower-cased reference is a
  substring of the lower-cased response (so "sacrum." needs the full stop, and an empty reference
  is always matched).

Our own additions sit beside them and are named as such: the mean IoU of each reference box with
its best prediction, and a tolerant recall that reads every box dialect engine.grounding reads in
the whole response (spaces, decimals, clamped to the grid).

Answers of the other families (Qwen2.5-VL / Qwen3-VL ``bbox_2d``, MedGemma ``box_2d`` JSON) have no
``<box>`` for the papers' reader to find: their boxes are read by their own dialect's parser,
mapped to the 0-1000 grid of the original image, and both recalls count those (IoU > 0.5), so a
dialect is only a parser and the metrics compare the same boxes. Both recalls, and reflective correction
(engine.training.correction), decide "found" with the one rule ``box_found``: IoU > 0.5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.grounding import GRID, GRID_FRAME, Frame, parse_answer
from engine.grounding.grid import iou  # one IoU for evaluation, training and the second opinion

PAPER_BOX = re.compile(r"<box>(.*?)</box>")
PAPER_BARE_BOX = re.compile(r"\(\d+,\d+\),\(\d+,\d+\)")
IOU_THRESHOLD = 0.5  # the papers' rule: a box is found at IoU strictly above this


def extract_information(response: str) -> str:
    """The papers' response clean-up (``regularization.extract_information``), unchanged."""
    if ".<|im_end|>" in response:
        response = response.split(".<|im_end|>")[0] + "."
    response = response.replace("<|im_end|>\n", "")
    match = re.search(r"\n(.*?)\n", response, re.DOTALL)
    if match:
        response = match.group(1)
    return response.replace("<|endoftext|>", "").strip()


def paper_box_strings(text: str, *, fallback: bool) -> list[str]:
    """Box strings as the papers find them: ``<box>`` contents, else (``fallback``) bare integer pairs."""
    found = PAPER_BOX.findall(text)
    if not found and fallback:
        found = PAPER_BARE_BOX.findall(text)
    return found


def box_numbers(box: str) -> list[float] | None:
    """The papers' parse: drop parentheses, split on commas, float each; None when a part is no number."""
    try:
        return [float(part) for part in box.replace("(", "").replace(")", "").split(",")]
    except ValueError:
        return None


def box_found(overlap: float, threshold: float = IOU_THRESHOLD) -> bool:
    """The one rule for "this reference box was found": IoU strictly above ``threshold``, as the
    papers' scripts count it (``iou > 0.5``). Metrics and reflective correction both use it."""
    return overlap > threshold


@dataclass(frozen=True)
class GroundingScore:
    """One grounding answer against its reference boxes."""

    targets: int  # reference boxes (the papers' denominator)
    hits: int  # found under the papers' rule
    best_ious: tuple[float, ...]  # per reference box, its best IoU with any paper-read prediction
    tolerant_hits: int  # found (IoU > 0.5) among every box our codec reads
    predicted: int  # boxes the papers' rule read in the response
    bad_targets: int  # reference boxes that are not four numbers (the papers' script would crash)


def _grid_boxes(text: str, dialect: str = "qwen2vl", frame: Frame = GRID_FRAME) -> list[tuple[float, ...]]:
    return [box.grid for box in parse_answer(text, GRID, GRID, dialect, frame).boxes]


def score_grounding(
    annotation: str, response: str, dialect: str = "qwen2vl", frame: Frame = GRID_FRAME
) -> GroundingScore | None:
    """Score one visual-grounding answer (``response`` raw, written in ``dialect`` with its numbers
    in ``frame``); None when the reference has no box."""
    target_strings = paper_box_strings(annotation, fallback=False)
    if not target_strings:
        return None
    cleaned = extract_information(response)
    targets = [box_numbers(s) for s in target_strings]
    if dialect == "qwen2vl":
        predictions = [box_numbers(s) for s in paper_box_strings(cleaned, fallback=True)]
    else:  # JSON boxes: the family's own parser, on the grid of the original image
        predictions = [list(b) for b in _grid_boxes(response, dialect, frame)]
    best = [max((iou(p, t) for p in predictions), default=0.0) for t in targets]
    hits = sum(any(box_found(iou(p, t)) for p in predictions) for t in targets)
    ours = _grid_boxes(response, dialect, frame)
    reference = _grid_boxes(annotation)
    tolerant = sum(any(box_found(iou(p, t)) for p in ours) for t in reference)
    return GroundingScore(
        targets=len(targets),
        hits=hits,
        best_ious=tuple(best),
        tolerant_hits=tolerant,
        predicted=len(predictions),
        bad_targets=sum(t is None or len(t) != 4 for t in targets),
    )


def classification_correct(annotation: str, response: str) -> bool:
    """The papers' referring-object-classification rule on the raw response."""
    cleaned = extract_information(response).lower()
    return all(token in cleaned for token in annotation.lower().split(" "))
