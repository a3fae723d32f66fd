"""SASG best-of-N: the consensus scorer with the real bundled MiniLM embedder, and ask(best_of=N)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.clinkd import (
    AskRequest,
    GenerationSettings,
    LoadSettings,
    SentenceEmbedder,
    Task,
    ask,
    load_model,
    score_candidates,
    semantic_similarity,
)
from engine.grounding import parse_answer
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint


@pytest.fixture(scope="module")
def embed() -> SentenceEmbedder:
    return SentenceEmbedder()


def test_embedder_is_the_real_minilm(embed: SentenceEmbedder) -> None:
    vectors = embed(["The left lung is clear.", "The left lung looks clear.", "Fracture of the right femur."])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.8 > vectors[0] @ vectors[2]


def test_consensus_prefers_the_answer_the_others_agree_with(embed: SentenceEmbedder) -> None:
    texts = [
        "A pneumothorax is present in the left lung.",
        "There is a left-sided pneumothorax.",
        "The left lung shows a pneumothorax.",
        "The patient has a fractured femur.",
    ]
    similarity = semantic_similarity(texts, embed)
    assert int(np.argmin(similarity)) == 3
    assert similarity.shape == (4,) and np.all(similarity <= 1.0)


def test_references_mode_scores_against_a_ground_truth(embed: SentenceEmbedder) -> None:
    similarity = semantic_similarity(["Sacrum.", "Left kidney."], embed, references=["The sacrum."])
    assert similarity[0] > similarity[1]
    with pytest.raises(ValueError, match="references must not be empty"):
        semantic_similarity(["x"], embed, references=[])


def test_single_and_empty_candidate_lists(embed: SentenceEmbedder) -> None:
    assert semantic_similarity([], embed).shape == (0,)
    assert semantic_similarity(["only one"], embed).tolist() == [1.0]


def test_grounding_penalty_hits_missing_and_invalid_boxes(embed: SentenceEmbedder) -> None:
    answers = [
        parse_answer("The liver is at <|box_start|>(10,10),(400,400)<|box_end|>.", 100, 100),
        parse_answer("The liver is at the top.", 100, 100),
        parse_answer("The liver is at <|box_start|>(10,10),(1400,400)<|box_end|>.", 100, 100),
        parse_answer("The liver is at <|box_start|>(10,10)<|box_end|>.", 100, 100),
    ]
    scores = score_candidates(answers, embed, grounding=True, box_penalty=0.5)
    assert [s.penalty for s in scores] == [0.0, 0.5, 0.5, 0.5]
    assert all(abs(s.score - (s.similarity - s.penalty)) < 1e-9 for s in scores)
    assert max(range(4), key=lambda i: scores[i].score) == 0
    assert all(s.penalty == 0.0 for s in score_candidates(answers, embed, grounding=False))


def test_best_of_n_samples_scores_and_keeps_the_best(tmp_path_factory: pytest.TempPathFactory, embed) -> None:
    folder = tiny_checkpoint(tmp_path_factory)
    clinkd = load_model(LoadSettings(str(folder), device="cpu", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    torch.manual_seed(0)
    streamed: list[str] = []
    result = ask(
        clinkd,
        AskRequest(image, "left lung", Task.VG),
        GenerationSettings(max_new_tokens=12, best_of=4, temperature=1.0),
        embed=embed,
        on_text=streamed.append,
    )
    assert len(result.candidates) == 4 and streamed == []
    assert len({c.raw_text for c in result.candidates}) > 1, "candidates must be sampled, not greedy copies"
    best = max(result.candidates, key=lambda c: c.score)
    assert result.raw_text == best.raw_text and result.text == best.text
    assert all(c.penalty == 0.5 for c in result.candidates if not c.boxes)  # VG: no boxes is penalised
    assert result.settings.best_of == 4 and result.settings.samples
    assert result.new_tokens <= 12 and result.generated_tokens >= result.new_tokens
