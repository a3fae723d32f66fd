"""A conversation per image: every question, the box and window it was asked with, and the answer.

Plain data kept on the GUI thread. ``export`` writes what a reader needs to reproduce or audit an
answer (task, box prompt, frame, window, model, settings, timings, candidates) and nothing that
identifies the patient: images are named by file name only, never by patient name, ID or date.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.clinkd.conversation import PriorTurn
from engine.imaging import Window


@dataclass
class Turn:
    question: str
    task: str
    box: tuple[float, float, float, float] | None
    frame: int
    window: Window | None
    asked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    job_id: int | None = None
    status: str = "running"  # running | done | cancelled | error
    streamed: str = ""  # text as it arrived
    result: Any = None  # engine.clinkd.AskResult once done
    error: str = ""
    history_sent: int = 0  # earlier turns sent with the question (known once answered)
    history_dropped: int = 0  # older turns the token budget left out
    model: str = "primary"  # which configured model answers: "primary", or "second" (the second opinion)
    model_name: str = ""  # how the answer is labelled until the result names the model
    second_of: int | None = None  # a second opinion: the index of the first model's turn it answers beside

    @property
    def name(self) -> str:
        return self.result.model.model_id if self.result is not None else self.model_name

    @property
    def answer(self) -> str:
        return self.result.text if self.result is not None else self.streamed

    @property
    def boxes(self) -> tuple:
        return self.result.boxes if self.result is not None and not self.result.cancelled else ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "question": self.question,
            "task": self.task,
            "box_prompt": list(self.box) if self.box else None,
            "frame": self.frame,
            "window": None
            if self.window is None
            else {"center": self.window.center, "width": self.window.width, "function": self.window.function},
            "asked_at": self.asked_at,
            "status": self.status,
            "answer": self.answer,
            "error": self.error or None,
        }
        if self.model != "primary":
            data["second_opinion"] = True  # the same question asked of the second model
        if self.result is not None:
            result = self.result.to_dict()
            data["prompt"] = result["question"]  # as the model read it: `ask --history` replays it
            data["raw_answer"] = result["raw_text"]
            data["dialect"] = result["dialect"]  # how its boxes are written (engine.grounding), for replaying it
            data["frame"] = list(result["frame"])  # the space of the boxes' numbers in that dialect
            data["boxes"] = [{"x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2, "phrase": b.phrase} for b in self.boxes]
            data["model"] = {
                k: result["model"][k]
                for k in ("model_id", "dtype", "device", "quantization", "min_pixels", "max_pixels", "mcg_rope")
            }
            data["settings"] = result["settings"]
            data["timings"] = {k: result[k] for k in ("time_to_first_token_s", "tokens_per_second", "total_s")}
            data["tokens"] = {k: result[k] for k in ("prompt_tokens", "image_tokens", "new_tokens")}
            data["candidates"] = [{"text": c["text"], "score": c["score"]} for c in result["candidates"]]
        return data


@dataclass
class Conversations:
    by_image: dict[str, list[Turn]] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)  # image -> first turn of the current conversation

    def turns(self, image_key: str) -> list[Turn]:
        return self.by_image.setdefault(image_key, [])

    def start_new(self, image_key: str) -> None:
        """ "New conversation": later questions carry none of the turns so far (they stay visible)."""
        self.starts[image_key] = len(self.turns(image_key))

    def start(self, image_key: str) -> int:
        return self.starts.get(image_key, 0)

    def history(self, image_key: str, frame: int, before: int | None = None) -> tuple[PriorTurn, ...]:
        """The answered turns of the current conversation about ``frame`` (those before turn
        number ``before``, when regenerating it), as the model read and wrote them: what a
        follow-up question carries (the engine keeps the newest that fit its budget). Second opinions
        are left out: the conversation is the one with the first model."""
        turns = self.turns(image_key)[self.start(image_key) : before]
        return tuple(
            PriorTurn(t.result.question, t.result.raw_text)
            for t in turns
            if t.status == "done" and t.result is not None and t.frame == frame and t.model == "primary"
        )

    def clear(self, image_key: str) -> None:
        self.by_image.pop(image_key, None)
        self.starts.pop(image_key, None)

    def find(self, job_id: int) -> Turn | None:
        return next((t for turns in self.by_image.values() for t in turns if t.job_id == job_id), None)

    def export(self, image_key: str, image_paths: list[str]) -> dict[str, Any]:
        return {
            "format": "clinlens-conversation",
            "version": 1,
            "images": [os.path.basename(p) for p in image_paths],
            "turns": [turn.to_dict() for turn in self.turns(image_key)],
        }
