"""Second opinion: how far two models' boxes for the same question agree (Qt-free, no torch).

Two answers to one question give two box sets. ``match_boxes`` pairs them one-to-one, best IoU
first (greedy: with the handful of boxes an answer holds it finds the same pairs as an optimal
assignment, and the GUI thread can run it between two frames), and leaves the boxes only one model
found unpaired. ``label_agreement`` reduces that to what a reviewer needs per label: the models
agree when each found the label and their best pair overlaps with IoU above 0.5 (the papers' rule
for "found", so "disagree" means "would not count as the same finding").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.grounding.grid import iou

AGREE_IOU = 0.5
"""Two boxes show the same finding when their IoU is strictly above this (IoU <= 0.5: disagree)."""


@dataclass(frozen=True)
class BoxPair:
    """Box ``first`` of the first answer matched with box ``second`` of the other, and their IoU."""

    first: int
    second: int
    iou: float

    @property
    def agree(self) -> bool:
        return self.iou > AGREE_IOU


@dataclass(frozen=True)
class BoxMatch:
    """Both answers' boxes, paired: what only one model found is listed by index."""

    pairs: tuple[BoxPair, ...]
    only_first: tuple[int, ...]
    only_second: tuple[int, ...]


def match_boxes(first: Sequence[Sequence[float]], second: Sequence[Sequence[float]]) -> BoxMatch:
    """Pair (x1, y1, x2, y2) boxes one-to-one by IoU, highest first; boxes that overlap nothing left
    of the other set stay unpaired (found by one model only)."""
    candidates = sorted(
        ((iou(a, b), i, j) for i, a in enumerate(first) for j, b in enumerate(second)),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    used_first: set[int] = set()
    used_second: set[int] = set()
    pairs = []
    for overlap, i, j in candidates:
        if overlap <= 0 or i in used_first or j in used_second:
            continue
        used_first.add(i)
        used_second.add(j)
        pairs.append(BoxPair(i, j, overlap))
    return BoxMatch(
        tuple(sorted(pairs, key=lambda p: p.first)),
        tuple(i for i in range(len(first)) if i not in used_first),
        tuple(j for j in range(len(second)) if j not in used_second),
    )


@dataclass(frozen=True)
class LabelAgreement:
    """One label asked of both models: how many boxes each found and the IoU of their best pair."""

    label: str
    first_boxes: int
    second_boxes: int
    best_iou: float  # 0 when either found nothing

    @property
    def disagree(self) -> bool:
        """Only one model found the label, or their best pair overlaps with IoU <= 0.5 (neither
        finding it is agreement: both say it is not there)."""
        if not self.first_boxes and not self.second_boxes:
            return False
        return self.best_iou <= AGREE_IOU

    def sentence(self, first_name: str, second_name: str) -> str:
        """The outcome for a reviewer, e.g. "heart: IoU 0.31" or "heart: found by A only"."""
        if self.first_boxes and not self.second_boxes:
            return f"{self.label}: found by {first_name} only"
        if self.second_boxes and not self.first_boxes:
            return f"{self.label}: found by {second_name} only"
        if not self.first_boxes:
            return f"{self.label}: found by neither"
        return f"{self.label}: IoU {self.best_iou:.2f}"


def label_agreement(label: str, first: Sequence[Sequence[float]], second: Sequence[Sequence[float]]) -> LabelAgreement:
    best = max((iou(a, b) for a in first for b in second), default=0.0)
    return LabelAgreement(label, len(first), len(second), best)
