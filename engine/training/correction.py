"""Reflective correction (ClinKD stage 3, our reading): find the training questions the model gets
wrong, let it produce N answers with the reference in view, keep the best by the SASG scorer, and
write them as new training samples for a further round.

ClinKD releases no code for this step. Its framework figure says: "No/Wrong groundings -> VLLMs +
GT -> N Samples -> Perfect answer with highest scores", fed back as "True Description + True
Groundings"; the abstract says answers "with low semantic similarity or incorrect groundings" are
reused. What we do, every threshold a setting:

1. Each turn of each conversation is asked on its own (single-turn, greedy, as evaluated).
2. The answer is flagged when the reference has boxes and the answer has none ("missing_box"),
   when a reference box has no answer box with IoU > iou_threshold ("wrong_box"; extra boxes are
   not penalised, as in Med-GRIT's recall), or when the MiniLM cosine similarity of the clean
   texts is below similarity_threshold ("low_similarity").
3. For a flagged turn the model samples N candidates; with ``hint`` the question carries the
   reference answer (the figure's "VLLMs + GT"). Candidates are scored by engine.clinkd's SASG
   scorer against the reference (similarity minus its missing/invalid-box penalty), minus
   ``box_penalty`` times the fraction of reference boxes the candidate misses.
4. The best candidate becomes a new sample when it would itself pass step 2; otherwise the
   reference answer is written ("reference" fallback) or the turn is dropped ("skip").

New samples are single-turn records in ClinKD's layout with absolute image paths, so ``train``
reads them next to the original data; a ``reflect`` key per record says why and how it was made.

Any grounded family can be reflected on: the references are Med-GRIT's (Qwen2-VL markup on the
0-1000 grid), while the model's answers and candidates are read in its family's dialect and frame
(engine.clinkd.families); a candidate kept as a sample is written back in Qwen2-VL markup, the
dialect of the training data.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.clinkd.generation import AskRequest, GenerationSettings, ask, ask_batch
from engine.clinkd.loader import LoadSettings, load_model
from engine.clinkd.sasg import Embed, SentenceEmbedder, score_candidates, semantic_similarity
from engine.evaluation.medgrit import clean_question
from engine.evaluation.protocol import box_found, iou
from engine.grounding import GRID_FRAME, Frame, GroundedBox, ParsedAnswer, box_to_text, parse_answer
from engine.training.data import (
    Conversation,
    Turn,
    conversation_record,
    load_rgb,
    read_conversations,
    write_records,
)
from engine.training.settings import ReflectSettings

HINT_TEMPLATE = "{question}\nA correct answer is: {reference}\nAnswer the question in your own words."
"""How a candidate sees the reference (``hint``): the question, then the ground truth."""

REASONS = ("missing_box", "wrong_box", "low_similarity")


def matched_boxes(reference: Sequence[GroundedBox], answer: Sequence[GroundedBox], iou_threshold: float) -> int:
    """How many reference boxes some answer box overlaps with IoU > threshold (on the 0-1000 grid):
    the metric's rule (``box_found``), so "corrected" and "counted as found" never disagree."""
    return sum(any(box_found(iou(r.grid, a.grid), iou_threshold) for a in answer) for r in reference)


@dataclass(frozen=True)
class Judgement:
    """Why an answer needs correcting (no reasons: it is fine)."""

    reasons: tuple[str, ...]
    similarity: float
    matched: int
    reference_boxes: int

    @property
    def ok(self) -> bool:
        return not self.reasons


def judge(
    reference: ParsedAnswer,
    answer: ParsedAnswer,
    similarity: float,
    *,
    iou_threshold: float,
    similarity_threshold: float,
) -> Judgement:
    """Flag missing or wrong boxes and low semantic similarity of an answer to its reference."""
    matched = matched_boxes(reference.boxes, answer.boxes, iou_threshold)
    reasons = []
    if reference.boxes and not answer.boxes:
        reasons.append("missing_box")
    elif matched < len(reference.boxes):
        reasons.append("wrong_box")
    if similarity < similarity_threshold:
        reasons.append("low_similarity")
    return Judgement(tuple(reasons), float(similarity), matched, len(reference.boxes))


@dataclass(frozen=True)
class Selection:
    """The best of N candidates, its score among all, and whether it passes the judgement."""

    index: int
    raw_text: str
    scores: tuple[float, ...]
    judgement: Judgement

    @property
    def accepted(self) -> bool:
        return self.judgement.ok


def select_candidate(
    reference_text: str,
    candidates: Sequence[str],
    width: float,
    height: float,
    embed: Embed,
    settings: ReflectSettings,
    *,
    dialect: str = "qwen2vl",
    frame: Frame = GRID_FRAME,
) -> Selection:
    """Score candidates against the reference with the SASG scorer plus box correctness; keep the best.

    The reference is Med-GRIT's (Qwen2-VL markup); the candidates are read in the model's ``dialect``
    with its numbers in ``frame`` (its family's, see engine.clinkd.families).
    """
    if not candidates:
        raise ValueError("no candidates to select from")
    reference = parse_answer(reference_text, width, height)
    parsed = [parse_answer(c, width, height, dialect, frame) for c in candidates]
    grounding = bool(reference.boxes)
    sasg = score_candidates(
        parsed, embed, grounding=grounding, references=[reference.text], box_penalty=settings.box_penalty
    )
    scores = []
    for answer, score in zip(parsed, sasg, strict=True):
        missed = len(reference.boxes) - matched_boxes(reference.boxes, answer.boxes, settings.iou_threshold)
        scores.append(score.score - settings.box_penalty * missed / max(len(reference.boxes), 1))
    best = int(np.argmax(scores))
    judgement = judge(
        reference,
        parsed[best],
        sasg[best].similarity,
        iou_threshold=settings.iou_threshold,
        similarity_threshold=settings.similarity_threshold,
    )
    return Selection(best, candidates[best], tuple(scores), judgement)


@dataclass(frozen=True)
class QuestionRecord:
    """What happened to one training question."""

    sample_id: str
    turn: int
    reasons: tuple[str, ...]
    similarity: float
    origin: str  # "kept" (answer was fine), "candidate", "reference" or "skipped"
    candidate_score: float | None = None


@dataclass(frozen=True)
class ReflectProgress:
    done: int
    total: int
    flagged: int
    elapsed_s: float


@dataclass(frozen=True)
class ReflectReport:
    """Counts of the pass and one record per question; ``output`` holds the new samples."""

    output: str
    questions: int
    flagged: int
    from_candidates: int
    from_references: int
    skipped: int
    reasons: dict[str, int]
    records: tuple[QuestionRecord, ...]
    skipped_records: tuple[str, ...] = field(default=())

    @property
    def written(self) -> int:
        return self.from_candidates + self.from_references


def _candidates(clinkd: object, image: np.ndarray, question: str, settings: ReflectSettings, embed: Embed) -> list[str]:
    sampling = GenerationSettings(
        max_new_tokens=settings.max_new_tokens,
        do_sample=True,
        best_of=settings.candidates,
        temperature=settings.temperature,
        top_p=settings.top_p,
    )
    result = ask(clinkd, AskRequest(image, question), sampling, embed=embed)
    return [c.raw_text for c in result.candidates] if result.candidates else [result.raw_text]


def training_answer(raw: str, width: float, height: float, dialect: str, frame: Frame) -> str:
    """A kept candidate as the training data writes answers: Qwen2-VL markup on the 0-1000 grid.

    A Qwen2-VL answer is kept as written (its end tokens cleaned); another family's answer becomes
    its text followed by each box, named by its phrase, in Qwen2-VL markup.
    """
    if dialect == "qwen2vl":
        return clean_question(raw)
    parsed = parse_answer(raw, width, height, dialect, frame)
    boxes = "".join(
        (f"<|object_ref_start|>{b.phrase}<|object_ref_end|>" if b.phrase else "")
        + box_to_text(b.pixels, width, height, "qwen2vl")
        for b in parsed.boxes
    )
    return f"{parsed.text} {boxes}".strip()


def _new_sample(conversation: Conversation, turn: Turn, answer: str, record: QuestionRecord) -> dict:
    single = Conversation(conversation.sample_id, conversation.image, (Turn(turn.question, answer),))
    return {
        **conversation_record(single),
        "reflect": {
            "turn": record.turn,
            "reasons": list(record.reasons),
            "similarity": round(record.similarity, 4),
            "origin": record.origin,
            "candidate_score": record.candidate_score,
        },
    }


def reflect(
    settings: ReflectSettings,
    on_progress: Callable[[ReflectProgress], None] | None = None,
    embed: Embed | None = None,
) -> ReflectReport:
    """Run the reflective-correction pass over ``settings.data``; write new samples to ``settings.output``.

    ``embed`` defaults to the bundled MiniLM (or ``settings.embedder_dir``).
    """
    data = read_conversations(settings.data, settings.image_root, settings.max_samples)
    clinkd = load_model(
        LoadSettings(
            settings.model_dir,
            dtype=settings.dtype,
            device=settings.device,
            min_pixels=settings.min_pixels,
            max_pixels=settings.max_pixels,
            mcg_rope=settings.mcg_rope,
        )
    )
    embed = embed or SentenceEmbedder(settings.embedder_dir)
    questions = [(c, i) for c in data.conversations for i in range(len(c.turns))]
    greedy = GenerationSettings(max_new_tokens=settings.max_new_tokens)
    torch.manual_seed(settings.seed)
    records: list[QuestionRecord] = []
    samples: list[dict] = []
    started = time.perf_counter()
    for start in range(0, len(questions), settings.batch_size):
        batch = questions[start : start + settings.batch_size]
        images = {c.image: load_rgb(c.image) for c, _ in batch}
        requests = [AskRequest(images[c.image], c.turns[i].question) for c, i in batch]
        for (conversation, index), result in zip(batch, ask_batch(clinkd, requests, greedy), strict=True):
            turn, image = conversation.turns[index], images[conversation.image]
            height, width = image.shape[:2]
            reference = parse_answer(turn.answer, width, height)  # Med-GRIT's: Qwen2-VL markup
            answer = ParsedAnswer(result.text, result.boxes, result.issues)  # read in the model's own dialect
            similarity = float(semantic_similarity([answer.text], embed, [reference.text])[0])
            judgement = judge(
                reference,
                answer,
                similarity,
                iou_threshold=settings.iou_threshold,
                similarity_threshold=settings.similarity_threshold,
            )
            if judgement.ok:
                records.append(QuestionRecord(conversation.sample_id, index, (), similarity, "kept"))
                continue
            hinted = HINT_TEMPLATE.format(question=turn.question, reference=turn.answer)
            candidates = _candidates(clinkd, image, hinted if settings.hint else turn.question, settings, embed)
            frame = clinkd.family.frame(width, height, clinkd.info.min_pixels, clinkd.info.max_pixels)
            dialect = clinkd.family.dialect
            selection = select_candidate(
                turn.answer, candidates, width, height, embed, settings, dialect=dialect, frame=frame
            )
            best_score = round(selection.scores[selection.index], 4)
            if selection.accepted:
                origin, text = "candidate", training_answer(selection.raw_text, width, height, dialect, frame)
            elif settings.fallback == "reference":
                origin, text = "reference", turn.answer
            else:
                origin, text = "skipped", ""
            record = QuestionRecord(conversation.sample_id, index, judgement.reasons, similarity, origin, best_score)
            records.append(record)
            if text:
                samples.append(_new_sample(conversation, turn, text, record))
        if on_progress is not None:
            flagged = sum(1 for r in records if r.origin != "kept")
            on_progress(ReflectProgress(len(records), len(questions), flagged, time.perf_counter() - started))
    write_records(settings.output, samples)
    origins = Counter(r.origin for r in records)
    return ReflectReport(
        output=str(settings.output),
        questions=len(records),
        flagged=len(records) - origins["kept"],
        from_candidates=origins["candidate"],
        from_references=origins["reference"],
        skipped=origins["skipped"],
        reasons=dict(Counter(reason for r in records for reason in r.reasons)),
        records=tuple(records),
        skipped_records=data.skipped,
    )
