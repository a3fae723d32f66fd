"""Reflective correction: box IoU and judgement, SASG selection of candidates against a reference
(real bundled MiniLM), and the whole pass on the tiny Qwen2-VL writing the expected samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.clinkd import SentenceEmbedder
from engine.evaluation.protocol import box_found, score_grounding
from engine.grounding import GRID_FRAME, parse_answer
from engine.training import ReflectSettings, judge, matched_boxes, read_conversations, reflect, select_candidate
from engine.training.correction import training_answer
from tests.engine.test_training_data import make_medgrit
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint

BOX = "<|box_start|>({},{}),({},{})<|box_end|>"


@pytest.fixture(scope="module")
def embed() -> SentenceEmbedder:
    return SentenceEmbedder()


def _settings(**changes: object) -> ReflectSettings:
    return ReflectSettings("unused", ("unused.json",), "unused.json", **changes)


def test_matched_boxes_counts_reference_boxes_found_at_the_threshold() -> None:
    reference = parse_answer(f"{BOX.format(0, 0, 100, 100)} and {BOX.format(500, 500, 600, 600)}", 50, 50).boxes
    half = parse_answer(BOX.format(50, 0, 150, 100), 50, 50).boxes  # IoU 1/3 with the first
    exact = parse_answer(f"{BOX.format(500, 500, 600, 600)} {BOX.format(0, 0, 100, 100)}", 50, 50).boxes
    assert matched_boxes(reference, exact, 0.5) == 2  # order does not matter
    assert matched_boxes(reference, half, 0.5) == 0 and matched_boxes(reference, half, 0.33) == 1
    assert matched_boxes(reference, half, 1 / 3) == 0  # IoU exactly at the threshold is not found
    assert matched_boxes(reference, (), 0.5) == 0 and matched_boxes((), exact, 0.5) == 0


def test_correction_and_the_metric_share_one_iou_rule() -> None:
    """IoU exactly 0.5 is a miss for the papers' recall, so reflective correction must flag it."""
    reference_text = f"The liver is at {BOX.format(0, 0, 100, 100)}."
    answer_text = f"Liver: {BOX.format(0, 0, 100, 50)}"  # IoU exactly 0.5
    score = score_grounding(
        reference_text.replace("<|box_start|>", "<box>").replace("<|box_end|>", "</box>"), answer_text
    )
    assert score.hits == 0 and score.tolerant_hits == 0 and score.best_ious == (0.5,)
    reference, answer = parse_answer(reference_text, 50, 50), parse_answer(answer_text, 50, 50)
    assert matched_boxes(reference.boxes, answer.boxes, 0.5) == 0
    assert judge(reference, answer, 0.99, iou_threshold=0.5, similarity_threshold=0.8).reasons == ("wrong_box",)
    assert not box_found(0.5) and box_found(0.5000001)


def test_judge_flags_missing_wrong_boxes_and_low_similarity() -> None:
    reference = parse_answer(f"The liver is at {BOX.format(100, 100, 500, 500)}.", 200, 200)
    right = parse_answer(f"Liver: {BOX.format(110, 100, 500, 520)}", 200, 200)
    wrong = parse_answer(f"Liver: {BOX.format(600, 600, 900, 900)}", 200, 200)
    none = parse_answer("The liver is on the left.", 200, 200)
    common = {"iou_threshold": 0.5, "similarity_threshold": 0.8}
    assert judge(reference, right, 0.9, **common).ok
    assert judge(reference, wrong, 0.9, **common).reasons == ("wrong_box",)
    assert judge(reference, none, 0.5, **common).reasons == ("missing_box", "low_similarity")
    plain = parse_answer("Sacrum.", 200, 200)
    assert judge(plain, right, 0.95, **common).ok  # no reference box: boxes are not judged
    assert judge(reference, right, 0.9, iou_threshold=0.99, similarity_threshold=0.8).matched == 0


def test_selection_prefers_the_right_box_and_the_right_meaning(embed: SentenceEmbedder) -> None:
    reference = f"The left lung is located at {BOX.format(520, 200, 850, 820)}."
    candidates = [
        "The left lung is located in the chest.",  # no box
        f"The left lung is located at {BOX.format(100, 100, 300, 300)}.",  # wrong box
        f"The left lung is located at {BOX.format(530, 190, 850, 800)}.",  # right box
        f"A fractured femur is seen at {BOX.format(530, 190, 850, 800)}.",  # right box, wrong words
    ]
    selection = select_candidate(reference, candidates, 96, 112, embed, _settings())
    assert selection.index == 2 and selection.accepted and selection.raw_text == candidates[2]
    scores = selection.scores
    assert scores[2] > scores[1] > scores[0] and scores[2] > scores[3]
    # nothing passes: the best is still named, but not accepted
    rejected = select_candidate(reference, candidates[:2], 96, 112, embed, _settings())
    assert rejected.index == 1 and not rejected.accepted and rejected.judgement.reasons == ("wrong_box",)
    # a classification answer is judged on meaning only
    roc = select_candidate("Sacrum.", ["Left kidney.", "The sacrum."], 96, 112, embed, _settings())
    assert roc.index == 1 and roc.accepted


def test_a_medgemma_candidate_is_read_in_its_dialect_and_written_back_as_training_data(
    embed: SentenceEmbedder,
) -> None:
    """The reference is Med-GRIT's (Qwen2-VL markup, x first); MedGemma answers {"box_2d": [y0, x0,
    y1, x1]} after "Final Answer:". Read as Qwen2-VL, its right box would be no box at all."""
    reference = f"<|object_ref_start|>the left lung<|object_ref_end|>{BOX.format(520, 200, 850, 820)}"
    medgemma = 'Final Answer: ```json\n[{"box_2d": [190, 530, 800, 850], "label": "the left lung"}]\n```'
    wrong = 'Final Answer: ```json\n[{"box_2d": [530, 190, 850, 800], "label": "the left lung"}]\n```'  # x first
    read = select_candidate(reference, [wrong, medgemma], 96, 112, embed, _settings(), dialect="box_2d")
    assert read.index == 1 and read.accepted
    as_qwen = select_candidate(reference, [medgemma], 96, 112, embed, _settings())
    assert not as_qwen.accepted and as_qwen.judgement.reasons[0] == "missing_box"
    written = training_answer(medgemma, 96, 112, "box_2d", GRID_FRAME)
    assert written.endswith("<|object_ref_start|>the left lung<|object_ref_end|>" + BOX.format(530, 190, 850, 800))
    [box] = parse_answer(written, 96, 112).boxes  # the training data's dialect: x first, as Med-GRIT
    assert box.grid == (530, 190, 850, 800) and box.phrase == "the left lung" and '"box_2d"' not in written
    assert training_answer(f"{reference}<|im_end|>", 96, 112, "qwen2vl", GRID_FRAME) == reference


def test_reflect_pass_writes_corrections_for_the_flagged_questions(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, embed: SentenceEmbedder
) -> None:
    model = tiny_checkpoint(tmp_path_factory)
    data = make_medgrit(tmp_path / "data", n=2)
    out = tmp_path / "reflected.json"
    progress = []
    # similarity never flags here: only grounding turns whose random answer lacks the boxes are corrected
    report = reflect(
        ReflectSettings(
            str(model),
            (str(data),),
            str(out),
            candidates=2,
            max_new_tokens=8,
            batch_size=4,
            similarity_threshold=-1.0,
            min_pixels=TINY_MIN_PIXELS,
            max_pixels=TINY_MAX_PIXELS,
            device="cpu",
        ),
        on_progress=progress.append,
        embed=embed,
    )
    assert report.questions == 6 and [p.done for p in progress] == [4, 6]
    source = read_conversations([data]).conversations
    flagged = {(r.sample_id, r.turn) for r in report.records if r.origin != "kept"}
    assert flagged == {(c.sample_id, 0) for c in source}  # the VG turns; ROC and MIA answers carry no box
    assert set(report.reasons) <= {"missing_box", "wrong_box"} and sum(report.reasons.values()) == 2
    written = json.loads(out.read_text())
    assert len(written) == report.written == report.flagged == 2
    for record, conversation in zip(written, source, strict=True):
        assert record["id"] == conversation.sample_id and record["reflect"]["turn"] == 0
        assert record["conversations"][0] == {"from": "human", "value": conversation.turns[0].question}
        if record["reflect"]["origin"] == "reference":  # a random model's candidates do not pass
            assert record["conversations"][1]["value"] == conversation.turns[0].answer
    again = read_conversations([out])  # the new samples are training data as they are
    assert [len(c.turns) for c in again.conversations] == [1, 1]
    assert all(c.image.is_file() for c in again.conversations)

    skipped = reflect(
        ReflectSettings(
            str(model),
            (str(data),),
            str(tmp_path / "none.json"),
            candidates=1,
            max_new_tokens=4,
            max_samples=1,
            similarity_threshold=2.0,
            fallback="skip",
            min_pixels=TINY_MIN_PIXELS,
            max_pixels=TINY_MAX_PIXELS,
            device="cpu",
        ),
        embed=embed,
    )
    assert skipped.questions == 3 and skipped.flagged == 3 and skipped.skipped == 3 and skipped.written == 0
    assert skipped.reasons["low_similarity"] == 3
    assert json.loads((tmp_path / "none.json").read_text()) == []
