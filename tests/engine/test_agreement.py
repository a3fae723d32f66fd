"""Second opinion: two models' boxes paired by IoU, and the per-label disagreement rule."""

from __future__ import annotations

import pytest

from engine.evaluation import iou as evaluation_iou
from engine.grounding.agreement import label_agreement, match_boxes
from engine.grounding.grid import iou


def test_evaluation_and_agreement_share_one_iou() -> None:
    assert evaluation_iou is iou


def test_pairs_follow_the_best_overlap_not_the_order() -> None:
    first = [(0, 0, 10, 10), (100, 100, 140, 140)]
    second = [(102, 100, 140, 140), (0, 0, 10, 20), (500, 500, 510, 510)]
    match = match_boxes(first, second)
    assert [(p.first, p.second) for p in match.pairs] == [(0, 1), (1, 0)]
    assert match.pairs[0].iou == pytest.approx(100 / 200)  # 10x10 inside 10x20
    assert match.pairs[1].iou == pytest.approx(38 * 40 / (40 * 40))
    assert not match.pairs[0].agree  # IoU exactly 0.5 is a disagreement
    assert match.pairs[1].agree
    assert match.only_first == () and match.only_second == (2,)


def test_one_box_cannot_pair_twice() -> None:
    match = match_boxes([(0, 0, 10, 10)], [(0, 0, 10, 10), (1, 1, 10, 10)])
    assert [(p.first, p.second, p.iou) for p in match.pairs] == [(0, 0, 1.0)]
    assert match.only_second == (1,)


def test_boxes_that_do_not_overlap_stay_unpaired() -> None:
    match = match_boxes([(0, 0, 10, 10)], [(20, 20, 30, 30)])
    assert match.pairs == () and match.only_first == (0,) and match.only_second == (0,)


@pytest.mark.parametrize(
    ("first", "second", "disagree", "sentence"),
    [
        ([(0, 0, 10, 10)], [(0, 0, 10, 10)], False, "heart: IoU 1.00"),
        ([(0, 0, 10, 10)], [(5, 0, 15, 10)], True, "heart: IoU 0.33"),
        ([(0, 0, 10, 10)], [], True, "heart: found by A only"),
        ([], [(0, 0, 10, 10)], True, "heart: found by B only"),
        ([], [], False, "heart: found by neither"),
    ],
)
def test_label_agreement(first, second, disagree, sentence) -> None:
    outcome = label_agreement("heart", first, second)
    assert outcome.disagree is disagree
    assert outcome.sentence("A", "B") == sentence
