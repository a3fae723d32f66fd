"""Grounded question answering with a loaded model of any supported family (engine.clinkd.families).

Built for a GUI worker thread: inputs and results are plain data (numpy image in, frozen
dataclasses out), partial text goes to a callback from inside ``generate`` (no extra thread, so
grad mode, cancellation and errors stay in the caller's thread), a ``threading.Event`` stops
generation between tokens, and a CUDA out-of-memory error frees memory and leaves the model usable.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList, TextStreamer

from engine.clinkd.conversation import DEFAULT_HISTORY_TOKENS, FittedHistory, PriorTurn, chat_messages, fit_history
from engine.clinkd.errors import GenerationOutOfMemory
from engine.clinkd.families import Family
from engine.clinkd.loader import ClinKDModel, ModelInfo
from engine.clinkd.prompts import Prompt, Task, build_prompt
from engine.grounding import GRID_FRAME, GroundedBox, parse_answer

TextCallback = Callable[[str], None]
StepCallback = Callable[[int], None]  # number of decoding steps so far (new tokens per sequence)


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings. Greedy with 80 new tokens by default, as ClinKD's evaluation."""

    max_new_tokens: int = 80
    do_sample: bool = False
    temperature: float = 0.7  # used when sampling (do_sample, or best_of > 1)
    top_p: float = 1.0  # used when sampling
    repetition_penalty: float | None = None  # None: the checkpoint's generation_config (1.05 for Qwen2-VL)
    best_of: int = 1  # SASG: > 1 samples this many candidates and keeps the consensus answer
    box_penalty: float = 0.5  # SASG: subtracted from a grounding candidate without valid boxes
    history_tokens: int = DEFAULT_HISTORY_TOKENS  # earlier turns sent within this budget, oldest dropped

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.best_of < 1:
            raise ValueError("max_new_tokens and best_of must be >= 1")
        if self.history_tokens < 0:
            raise ValueError("history_tokens must be >= 0")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be > 0 and top_p in (0, 1]")

    @property
    def samples(self) -> bool:
        return self.do_sample or self.best_of > 1


@dataclass(frozen=True, eq=False)
class AskRequest:
    """One question about one image, exactly as the user sees it.

    ``image`` is the displayed frame (H, W, 3) uint8 RGB (a 2-D grey image is accepted).
    ``box`` is in pixels of the ORIGINAL image, whose size is ``width`` x ``height`` (default: the
    image's own size; differs when the caller renders at reduced resolution).
    ``history`` holds the earlier turns of this image's conversation, oldest first (follow-up
    questions); they are sent within ``GenerationSettings.history_tokens``.
    """

    image: np.ndarray
    question: str = ""
    task: Task = Task.FREE
    box: tuple[float, float, float, float] | None = None
    width: int | None = None
    height: int | None = None
    history: tuple[PriorTurn, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        return (self.width or int(self.image.shape[1]), self.height or int(self.image.shape[0]))


@dataclass(frozen=True)
class Candidate:
    """One SASG candidate with its consensus similarity, box penalty and final score."""

    raw_text: str
    text: str
    boxes: tuple[GroundedBox, ...]
    similarity: float
    penalty: float
    score: float


@dataclass(frozen=True)
class AskResult:
    """Everything about one answer, as plain data (safe to hand to a GUI thread or to json)."""

    raw_text: str  # model output with box markup, special end tokens removed
    text: str  # clean answer text, box markup removed
    boxes: tuple[GroundedBox, ...]  # empty when cancelled
    issues: tuple[str, ...]  # malformed / clamped box markup the parser met
    question: str  # the question as the model read it (box in model format)
    task: Task
    model: ModelInfo
    settings: GenerationSettings  # as applied (repetition penalty resolved)
    cancelled: bool
    prompt_tokens: int  # including image tokens
    image_tokens: int
    new_tokens: int  # of this answer (the chosen candidate for best-of)
    generated_tokens: int  # all tokens generated for the request (every candidate)
    time_to_first_token_s: float | None  # from the call (preprocessing included) to the first token
    tokens_per_second: float | None  # decode rate: tokens after the first / time after the first
    total_s: float
    peak_gpu_memory_bytes: int | None
    candidates: tuple[Candidate, ...] = ()
    history_turns: int = 0  # earlier turns sent with the question
    history_dropped: int = 0  # older turns left out to stay within the history token budget
    dialect: str = "qwen2vl"  # the family's box dialect the answer was read in (engine.grounding)
    frame: tuple[float, float] = GRID_FRAME  # the space of its numbers (Qwen2.5-VL: the resized input)

    def to_dict(self) -> dict:
        """JSON-ready plain dict (CLI --json, saved histories)."""
        data = asdict(self)
        data["task"] = self.task.value
        return data


class _Progress(TextStreamer):
    """Records when tokens arrive and, for a single answer, streams decoded text to a callback."""

    def __init__(
        self,
        tokenizer: object,
        on_text: TextCallback | None,
        end_ids: Sequence[int],
        on_step: StepCallback | None = None,
    ) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=False)
        self.on_text = on_text
        self.on_step = on_step
        self.end_ids = torch.tensor(list(end_ids), dtype=torch.long)
        self.first_token_at: float | None = None
        self.steps = 0

    def put(self, value: torch.Tensor) -> None:
        if self.next_tokens_are_prompt:  # generate() first echoes the prompt
            self.next_tokens_are_prompt = False
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.steps += 1
        if self.on_step is not None:
            self.on_step(self.steps)
        if self.on_text is not None:
            tokens = value.reshape(-1)
            super().put(tokens[~torch.isin(tokens, self.end_ids)])

    def end(self) -> None:
        if self.on_text is not None:
            super().end()

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text and self.on_text is not None:
            self.on_text(text)


class _Cancelled(StoppingCriteria):
    """Stops every row as soon as the caller sets the event (checked once per generated token)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def rgb_image(image: np.ndarray) -> Image.Image:
    """The request's displayed frame as a PIL RGB image, checked as both backends need it.

    A local answer and a served one must accept and refuse the same frames: uint8 display
    pixels, grayscale repeated into three channels.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"the image must be uint8 (the displayed pixels), got {array.dtype}")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"the image must be (H, W, 3) RGB, got shape {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def _generation_config(clinkd: ClinKDModel, settings: GenerationSettings, n: int) -> GenerationConfig:
    # Every field is set explicitly: generate() fills unset ones from the checkpoint's
    # generation_config, whose top_k=1 / top_p=0.001 would silently turn sampling into greedy.
    # Greedy gets transformers' neutral values (1.0, 1.0, 50) so it warns about nothing.
    sample = settings.samples
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=sample,
        num_beams=1,
        temperature=settings.temperature if sample else 1.0,
        top_p=settings.top_p if sample else 1.0,
        top_k=0 if sample else 50,  # 0 disables top-k when sampling
        repetition_penalty=settings.repetition_penalty,
        num_return_sequences=n,
        eos_token_id=list(clinkd.eos_token_ids),
        pad_token_id=clinkd.pad_token_id,
    )


def resolve_settings(clinkd: ClinKDModel, settings: GenerationSettings) -> GenerationSettings:
    """Fill the settings that default to the checkpoint's own values."""
    if settings.repetition_penalty is not None:
        return settings
    penalty = getattr(clinkd.model.generation_config, "repetition_penalty", None) or 1.0
    return replace(settings, repetition_penalty=float(penalty))


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class _Generated:
    prompts: list[Prompt]
    histories: list[FittedHistory]
    rows: list[list[int]]  # new tokens per returned sequence, cut at the first end token
    prompt_tokens: list[int]
    image_tokens: list[int]
    first_token_at: float | None
    finished_at: float
    peak_gpu_memory_bytes: int | None


def _run(
    clinkd: ClinKDModel,
    requests: Sequence[AskRequest],
    settings: GenerationSettings,
    n: int,
    on_text: TextCallback | None,
    cancel: threading.Event | None,
    on_step: StepCallback | None = None,
) -> _Generated:
    processor, model = clinkd.processor, clinkd.model
    info = clinkd.info
    prompts = [request_prompt(clinkd.family, r, info.min_pixels, info.max_pixels) for r in requests]
    histories = [fit_history(r.history, settings.history_tokens, token_counter(clinkd)) for r in requests]
    texts = [
        processor.apply_chat_template(chat_messages(p.question, h.turns), add_generation_prompt=True, tokenize=False)
        for p, h in zip(prompts, histories, strict=True)
    ]
    images = [rgb_image(r.image) for r in requests]
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    oom = False
    try:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        # one list of images per prompt: the form every family's processor reads (Gemma 3 needs it)
        inputs = processor(text=texts, images=[[image] for image in images], return_tensors="pt", padding=True)
        inputs = inputs.to(device)
        progress = _Progress(processor.tokenizer, on_text, clinkd.eos_token_ids, on_step)
        stopping = StoppingCriteriaList([_Cancelled(cancel)] if cancel is not None else [])
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                generation_config=_generation_config(clinkd, settings, n),
                streamer=progress,
                stopping_criteria=stopping,
            )
        finished_at = time.perf_counter()
        peak = int(torch.cuda.max_memory_allocated(device)) if cuda else None
    except torch.OutOfMemoryError:
        oom = True
    if oom:
        # the raised error's traceback keeps this frame alive: drop the tensors before raising
        inputs = output = None
        _free_memory()
        raise GenerationOutOfMemory(
            f"The GPU ran out of memory answering this question at max_pixels={clinkd.info.max_pixels}. "
            f"Memory was freed; lower max_pixels (for example to {max(28 * 28, clinkd.info.max_pixels // 2)}) "
            "or max_new_tokens, or load the model in 8-bit / 4-bit."
        )
    attention = inputs["attention_mask"]
    image_token_id = model.config.image_token_id
    new = output[:, inputs["input_ids"].shape[1] :].tolist()
    end_ids = set(clinkd.eos_token_ids)
    rows = []
    for tokens in new:
        cut = next((i for i, t in enumerate(tokens) if t in end_ids), len(tokens))
        rows.append(tokens[:cut])
    return _Generated(
        prompts=prompts,
        histories=histories,
        rows=rows,
        prompt_tokens=attention.sum(dim=1).tolist(),
        image_tokens=(inputs["input_ids"] == image_token_id).sum(dim=1).tolist(),
        first_token_at=progress.first_token_at,
        finished_at=finished_at,
        peak_gpu_memory_bytes=peak,
    )


def request_prompt(family: Family, request: AskRequest, min_pixels: int, max_pixels: int) -> Prompt:
    """The question as ``family`` reads it, the box in its dialect and numbers.

    Why the displayed frame's size: the processor resizes what it is given, so Qwen2.5-VL's
    absolute numbers are pixels of the displayed frame after ``smart_resize``; the Prompt keeps that
    frame, and the answer's boxes are mapped from it to the original ``request.size``.
    """
    height, width = request.image.shape[:2]
    frame = family.frame(width, height, min_pixels, max_pixels)
    return build_prompt(request.task, request.question, request.box, *request.size, dialect=family.dialect, frame=frame)


def token_counter(clinkd: ClinKDModel) -> Callable[[str], int]:
    """Tokens a text takes in this checkpoint's prompts (the history budget counts with it)."""
    tokenizer = clinkd.processor.tokenizer
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


def _rate(generated: _Generated, sequences: int) -> float | None:
    after_first = sum(len(r) for r in generated.rows) - sequences
    if generated.first_token_at is None or after_first <= 0:
        return None
    elapsed = generated.finished_at - generated.first_token_at
    return after_first / elapsed if elapsed > 0 else None


def answer_fields(raw: str, request: AskRequest, prompt: Prompt, cancelled: bool) -> dict[str, Any]:
    """The AskResult fields that come from the answer text, the same for every backend.

    Why shared: a local and a served answer must read alike (the same boxes on the same image,
    the prompt's phrase on boxes the answer leaves unnamed, no boxes from a cancelled answer);
    each backend adds its own figures (tokens, timing, memory).
    """
    parsed = parse_answer(raw, *request.size, prompt.dialect, prompt.frame)
    boxes = (
        ()
        if cancelled
        else tuple(b if b.phrase or prompt.phrase is None else replace(b, phrase=prompt.phrase) for b in parsed.boxes)
    )
    return {
        "raw_text": raw,
        "text": parsed.text,
        "boxes": boxes,
        "issues": parsed.issues,
        "question": prompt.question,
        "task": prompt.task,
        "cancelled": cancelled,
        "dialect": prompt.dialect,
        "frame": prompt.frame,
    }


def _result(
    clinkd: ClinKDModel,
    request: AskRequest,
    prompt: Prompt,
    tokens: list[int],
    *,
    settings: GenerationSettings,
    cancelled: bool,
    generated: _Generated,
    index: int,
    started_at: float,
    sequences: int,
    generated_tokens: int,
    candidates: tuple[Candidate, ...] = (),
) -> AskResult:
    raw = clinkd.processor.tokenizer.decode(tokens, skip_special_tokens=False)
    first = generated.first_token_at
    return AskResult(
        **answer_fields(raw, request, prompt, cancelled),
        model=clinkd.info,
        settings=settings,
        prompt_tokens=int(generated.prompt_tokens[index]),
        image_tokens=int(generated.image_tokens[index]),
        new_tokens=len(tokens),
        generated_tokens=generated_tokens,
        time_to_first_token_s=None if first is None else first - started_at,
        tokens_per_second=_rate(generated, sequences),
        total_s=generated.finished_at - started_at,
        peak_gpu_memory_bytes=generated.peak_gpu_memory_bytes,
        candidates=candidates,
        history_turns=len(generated.histories[index].turns),
        history_dropped=generated.histories[index].dropped,
    )


def rank_candidates(
    raws: Sequence[str],
    request: AskRequest,
    prompt: Prompt,
    settings: GenerationSettings,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> tuple[tuple[Candidate, ...], int]:
    """SASG's selection, shared by every backend: parse each sampled answer, score it by its mean
    semantic similarity to the others (minus the box penalty on grounding tasks), and return the
    candidates with the index of the best one."""
    from engine.clinkd.sasg import default_embedder, score_candidates

    parsed = [parse_answer(raw, *request.size, prompt.dialect, prompt.frame) for raw in raws]
    scores = score_candidates(
        parsed, embed or default_embedder(), grounding=prompt.task.grounds, box_penalty=settings.box_penalty
    )
    candidates = tuple(
        Candidate(raw_text=r, text=p.text, boxes=p.boxes, similarity=s.similarity, penalty=s.penalty, score=s.score)
        for r, p, s in zip(raws, parsed, scores, strict=True)
    )
    return candidates, max(range(len(candidates)), key=lambda i: scores[i].score)


def ask(
    clinkd: ClinKDModel,
    request: AskRequest,
    settings: GenerationSettings = GenerationSettings(),
    *,
    on_text: TextCallback | None = None,
    cancel: threading.Event | None = None,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
    on_step: StepCallback | None = None,
) -> AskResult:
    """Answer one question. Call from a worker thread; ``on_text`` receives text as it is decoded.

    With ``settings.best_of > 1`` (SASG), N candidates are sampled and the consensus one is
    returned with every candidate listed; ``embed`` is the sentence embedder (default: the bundled
    all-MiniLM-L6-v2) and nothing is streamed. A set ``cancel`` event stops between tokens; the
    result is then marked cancelled and carries no boxes. ``on_step`` gets the number of
    decoding steps so far (live tokens/s in a status bar).
    """
    started_at = time.perf_counter()
    settings = resolve_settings(clinkd, settings)
    n = settings.best_of
    generated = _run(clinkd, [request], settings, n, on_text if n == 1 else None, cancel, on_step)
    cancelled = cancel is not None and cancel.is_set()
    prompt = generated.prompts[0]
    best = 0
    candidates: tuple[Candidate, ...] = ()
    if n > 1 and not cancelled:
        decode = clinkd.processor.tokenizer.decode
        raws = [decode(row, skip_special_tokens=False) for row in generated.rows]
        candidates, best = rank_candidates(raws, request, prompt, settings, embed)
    return _result(
        clinkd,
        request,
        prompt,
        generated.rows[best],
        settings=settings,
        cancelled=cancelled,
        generated=generated,
        index=0,
        started_at=started_at,
        sequences=n,
        generated_tokens=sum(len(r) for r in generated.rows),
        candidates=candidates,
    )


def ask_batch(
    clinkd: ClinKDModel,
    requests: Sequence[AskRequest],
    settings: GenerationSettings = GenerationSettings(),
    *,
    cancel: threading.Event | None = None,
) -> list[AskResult]:
    """Answer several questions in one left-padded batch (evaluation). No streaming, no best-of."""
    return answer_batch(requests, settings, lambda batch: _ask_padded(clinkd, batch, settings, cancel))


def answer_batch(
    requests: Sequence[AskRequest],
    settings: GenerationSettings,
    answer: Callable[[Sequence[AskRequest]], list[AskResult]],
) -> list[AskResult]:
    """The ``ask_batch`` contract every backend keeps, around its own way to ``answer`` the questions.

    Why shared: the evaluation runner and pre-annotation take either backend, so both must refuse
    best-of the same way (SASG ranks one question's candidates) and answer an empty batch without
    touching the model or the server. ``answer`` returns one result per request, in order.
    """
    if settings.best_of != 1:
        raise ValueError("best-of (SASG) answers one request at a time; use ask()")
    if not requests:
        return []
    return answer(requests)


def _ask_padded(
    clinkd: ClinKDModel,
    requests: Sequence[AskRequest],
    settings: GenerationSettings,
    cancel: threading.Event | None,
) -> list[AskResult]:
    """One ``generate`` over the left-padded batch; a set ``cancel`` marks every result cancelled."""
    started_at = time.perf_counter()
    settings = resolve_settings(clinkd, settings)
    generated = _run(clinkd, requests, settings, 1, None, cancel)
    cancelled = cancel is not None and cancel.is_set()
    return [
        _result(
            clinkd,
            request,
            generated.prompts[i],
            generated.rows[i],
            settings=settings,
            cancelled=cancelled,
            generated=generated,
            index=i,
            started_at=started_at,
            sequences=len(requests),
            generated_tokens=len(generated.rows[i]),
        )
        for i, request in enumerate(requests)
    ]
