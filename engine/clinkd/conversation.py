"""Follow-up questions: earlier turns of a conversation as chat messages, within a budget.

Why the image goes once, in the first kept user turn: that is how Qwen2-VL's chat template and
Med-GRIT's multi-turn conversations lay a conversation out (``<image>`` before the first question
only), so a follow-up reads exactly like the training data. Earlier answers go back verbatim, box
markup included (``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``), so "what is in that box?" can refer
to a box the model itself gave.

The history has a token budget: when the earlier turns would not fit, the oldest are dropped and
the caller is told how many (the Ask panel shows it). Counting uses the checkpoint's tokenizer
locally; against a server, whose tokenizer is not here, a byte-based estimate that errs on the
high side (no BPE token of Qwen2's vocabulary is shorter than one byte; most are 3-4).

Light module (no torch): the GUI, the CLI and both backends share it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.clinkd.prompts import SYSTEM_PROMPT, Task, build_prompt
from engine.files import JsonFileError, read_json
from engine.grounding import DIALECTS, GRID_FRAME

TokenCounter = Callable[[str], int]
"""Tokens a piece of text takes in the prompt."""

DEFAULT_HISTORY_TOKENS = 1024
"""Earlier turns kept within this many tokens (text only: the image is counted once, anyway)."""

TURN_OVERHEAD_TOKENS = 10
"""Chat-template tokens around one question and answer (``<|im_start|>user\\n``, ``<|im_end|>\\n``...)."""


@dataclass(frozen=True)
class PriorTurn:
    """One earlier question and answer, exactly as the model read and wrote them.

    ``question`` is the prompt the model read (boxes already on the 0-1000 grid in Qwen2-VL
    markup, ``AskResult.question``); ``answer`` is the raw answer with its box markup
    (``AskResult.raw_text``).
    """

    question: str
    answer: str


@dataclass(frozen=True)
class FittedHistory:
    """The turns that fit the budget, oldest first, and how many older ones were left out."""

    turns: tuple[PriorTurn, ...]
    dropped: int


def estimate_tokens(text: str) -> int:
    """A high estimate of Qwen2 tokens for ``text`` when its tokenizer is not at hand (servers)."""
    return len(text.encode("utf-8"))


def fit_history(history: Sequence[PriorTurn], budget: int, count: TokenCounter = estimate_tokens) -> FittedHistory:
    """Keep the newest turns whose text fits within ``budget`` tokens; drop the oldest first.

    A budget of 0 sends no history. Turns are kept whole (a cut answer would teach the model a
    half sentence) and in order: once one turn does not fit, nothing older is kept either.
    """
    if budget < 0:
        raise ValueError("the history token budget must be >= 0")
    kept: list[PriorTurn] = []
    used = 0
    for turn in reversed(history):
        cost = count(turn.question) + count(turn.answer) + TURN_OVERHEAD_TOKENS
        if used + cost > budget:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    return FittedHistory(tuple(kept), len(history) - len(kept))


def chat_messages(
    question: str, history: Sequence[PriorTurn] = (), image: Mapping[str, Any] | None = None
) -> list[dict]:
    """Chat messages as ClinKD was trained: the system prompt, then the image before the first
    question, then every earlier question and answer, then ``question``.

    ``image`` is the content part standing for the image: ``{"type": "image"}`` for the local
    processor (the default), an ``image_url`` part for an OpenAI-compatible server.
    """
    image_part = dict(image) if image is not None else {"type": "image"}
    messages: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
    questions = [turn.question for turn in history] + [question]
    for i, text in enumerate(questions):
        content = [{"type": "text", "text": text}]
        if i == 0:
            content.insert(0, image_part)
        messages.append({"role": "user", "content": content})
        if i < len(history):
            messages.append({"role": "assistant", "content": history[i].answer})
    return messages


class HistoryFileError(ValueError):
    """A conversation file that cannot serve as history; says what is wrong."""


def history_from_conversation(
    data: Any, width: int, height: int, *, where: str = "the conversation"
) -> tuple[PriorTurn, ...]:
    """Earlier turns from a conversation exported by the window (``clinlens-conversation``).

    Only answered turns count (cancelled or failed ones are skipped, as the window does). The
    question as the model read it is taken from ``prompt`` when the file has it; older exports
    get it rebuilt from the task, question and box prompt on the ``width`` x ``height`` image, in
    the turn's ``dialect`` (and ``frame``) when it records one: the family that answered it writes
    boxes its own way (engine.clinkd.families). Exports from before families were recorded came
    from Qwen2-VL (ClinKD), so a turn without a dialect is read as Qwen2-VL.
    """
    if not isinstance(data, dict) or data.get("format") != "clinlens-conversation":
        raise HistoryFileError(f'{where} is not a ClinLens conversation (no "format": "clinlens-conversation")')
    turns = data.get("turns")
    if not isinstance(turns, list):
        raise HistoryFileError(f"{where} has no list of turns")
    history = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise HistoryFileError(f"{where}: turn {i + 1} is not an object")
        if turn.get("status", "done") != "done":
            continue
        answer = turn.get("raw_answer", turn.get("answer"))
        prompt = turn.get("prompt")
        if not isinstance(answer, str):
            raise HistoryFileError(f"{where}: turn {i + 1} has no answer text")
        if not isinstance(prompt, str):
            dialect = str(turn.get("dialect", "qwen2vl"))
            if dialect not in DIALECTS:
                raise HistoryFileError(f"{where}: turn {i + 1} names an unknown box dialect {dialect!r}")
            try:
                box = turn.get("box_prompt")
                frame = turn.get("frame")
                prompt = build_prompt(
                    Task(turn.get("task", "free")),
                    str(turn.get("question", "")),
                    tuple(box) if box else None,
                    width,
                    height,
                    dialect=dialect,
                    frame=(float(frame[0]), float(frame[1])) if frame else GRID_FRAME,
                ).question
            except (ValueError, TypeError, IndexError) as err:
                raise HistoryFileError(f"{where}: turn {i + 1} cannot be rebuilt: {err}") from None
        history.append(PriorTurn(prompt, answer))
    return tuple(history)


def read_history_file(path: str | os.PathLike[str], width: int, height: int) -> tuple[PriorTurn, ...]:
    """``history_from_conversation`` on a file; HistoryFileError names the file and the problem."""
    path = Path(path)
    try:
        data = read_json(path)  # bad UTF-8, bad JSON and unreadable files are one sentence, not a traceback
    except JsonFileError as err:
        raise HistoryFileError(str(err)) from None
    return history_from_conversation(data, width, height, where=path.name)
