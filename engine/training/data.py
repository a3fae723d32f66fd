"""Med-GRIT conversations -> chat samples (image, question/answer turns) in Qwen2-VL's dialect.

Why one reader for every layout: Med-GRIT circulates in three shapes (BiRD's lists of
``[question, answer]`` pairs, ClinKD's intermediate ``{"from", "value"}`` turns, and the ShareGPT
``{"messages", "images"}`` records LLaMA-Factory reads), its questions carry Qwen-VL debris
(``<img>path</img>``, ``Picture 1:``, ``<image>``, ChatML tags), and its boxes are written
``<box>(x1,y1),(x2,y2)</box>``. Every record is reduced here to the same clean turns with box
markup rewritten into the ``<|box_start|>`` tokens the model reads and writes (the cleaning is
engine.evaluation's ``clean_question``, applied to answers too), so training, distillation,
reflective correction and evaluation see identical questions.

A record that cannot be used (no turns, unpaired roles, image file missing) is skipped with a
reason instead of stopping a 240k-sample run; the reasons are returned to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.evaluation.medgrit import clean_question, modality_of
from engine.files import write_json_atomic
from engine.imaging import ImageLoadError, open_image, render_rgb
from engine.training.errors import TrainingDataError

USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant", "model"}
SYSTEM_ROLES = {"system"}


@dataclass(frozen=True)
class Turn:
    """One question and its reference answer, both with Qwen2-VL box markup."""

    question: str
    answer: str


@dataclass(frozen=True)
class Conversation:
    """One image with one or more question/answer turns (Med-GRIT training dialogues are multi-turn)."""

    sample_id: str
    image: Path
    turns: tuple[Turn, ...]

    @property
    def modality(self) -> str:
        """Med-GRIT's modality key: the file-name prefix before the first underscore ('ct', 'x', ...)."""
        return modality_of(self.sample_id)


@dataclass(frozen=True)
class DataSet:
    """Conversations read from one or more files, and why records were left out."""

    conversations: tuple[Conversation, ...]
    skipped: tuple[str, ...]

    @property
    def turns(self) -> int:
        return sum(len(c.turns) for c in self.conversations)


def _role_turns(items: Sequence[dict]) -> list[tuple[str, object]]:
    """(role, text) of {"from", "value"} or {"role", "content"} turns (both spellings seen in the wild)."""
    roles = []
    for item in items:
        role = str(item.get("from", item.get("role", ""))).lower()
        text = item.get("value", item.get("content"))
        if role in SYSTEM_ROLES:
            continue
        if role in USER_ROLES:
            roles.append(("user", text))
        elif role in ASSISTANT_ROLES:
            roles.append(("assistant", text))
        else:
            raise ValueError(f"unknown role {role!r}")
    return roles


def _turn_pairs(record: dict) -> list[tuple[object, object]]:
    """(question, answer) pairs of a record in any of the three layouts."""
    if "messages" in record:  # ShareGPT, as LLaMA-Factory reads it
        roles = _role_turns(record["messages"])
    else:
        conversations = record.get("conversations")
        if not isinstance(conversations, list) or not conversations:
            raise ValueError("no 'conversations' or 'messages' list")
        if all(isinstance(c, (list, tuple)) for c in conversations):  # BiRD: [[question, answer], ...]
            if any(len(c) != 2 for c in conversations):
                raise ValueError("a conversation pair does not hold exactly [question, answer]")
            return [(c[0], c[1]) for c in conversations]
        roles = _role_turns(conversations)
    if len(roles) % 2 or any(roles[i][0] != "user" or roles[i + 1][0] != "assistant" for i in range(0, len(roles), 2)):
        raise ValueError("turns do not alternate user, assistant")
    return [(roles[i][1], roles[i + 1][1]) for i in range(0, len(roles), 2)]


def _image_name(record: dict) -> str:
    image = record.get("image")
    if image is None and isinstance(record.get("images"), list) and record["images"]:
        image = record["images"][0]
    if image is None and record.get("id") is not None:
        image = f"{record['id']}.png"  # BiRD / ClinKD: the image file is named after the sample id
    if not isinstance(image, str) or not image:
        raise ValueError("no image: give 'image', 'images' or an 'id' naming <id>.png")
    return image


def conversation_from_record(record: dict, image_root: Path) -> Conversation:
    """One record -> Conversation; raises ValueError with the reason when it cannot be used."""
    if not isinstance(record, dict):
        raise ValueError("a record must be a JSON object")  # noqa: TRY004 - callers report every bad record alike
    turns = []
    for question, answer in _turn_pairs(record):
        if not isinstance(question, str) or not isinstance(answer, str):
            raise ValueError("a question or answer is not text")  # noqa: TRY004 - as above
        # the evaluation's cleaner for both sides: no image tags or chat wrappers, Qwen2-VL boxes
        question, answer = clean_question(question), clean_question(answer)
        if not question or not answer:
            raise ValueError("an empty question or answer")
        turns.append(Turn(question, answer))
    name = _image_name(record)
    path = Path(name).expanduser()
    image = path if path.is_absolute() else image_root / path
    if not image.is_file():
        raise ValueError(f"image {image} not found")
    sample_id = str(record.get("id") or Path(name).stem)
    return Conversation(sample_id=sample_id, image=image, turns=tuple(turns))


def _records(path: Path) -> list[object]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TrainingDataError(f"Cannot read the training file {path}: {err}") from None
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except ValueError as err:
        raise TrainingDataError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise TrainingDataError(f"{path} must hold a JSON list of records (Med-GRIT layout), got {type(data).__name__}")
    return data


def read_conversations(
    paths: Iterable[str | Path], image_root: str | Path | None = None, max_samples: int | None = None
) -> DataSet:
    """Read Med-GRIT / ClinKD / ShareGPT files (.json lists or .jsonl) into conversations.

    Relative image names resolve against ``image_root`` (default: each file's own folder).
    ``max_samples`` keeps the first N usable conversations over all files.
    """
    files = [Path(p).expanduser() for p in paths]
    conversations: list[Conversation] = []
    skipped: list[str] = []
    for path in files:
        root = Path(image_root).expanduser() if image_root is not None else path.parent
        for index, record in enumerate(_records(path)):
            if max_samples is not None and len(conversations) >= max_samples:
                break
            try:
                conversations.append(conversation_from_record(record, root))
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                skipped.append(f"{path.name}[{index}]: {err}")
    if not conversations:
        first = f" (first problem: {skipped[0]})" if skipped else ""
        raise TrainingDataError(f"No usable training sample in {', '.join(map(str, files))}{first}.")
    return DataSet(tuple(conversations), tuple(skipped))


def conversation_record(conversation: Conversation) -> dict:
    """A record in ClinKD's intermediate layout, which read_conversations reads back unchanged.

    The image path is written absolute so the file can be mixed with the original data whatever
    image root that data needs.
    """
    turns = []
    for turn in conversation.turns:
        turns += [{"from": "human", "value": turn.question}, {"from": "gpt", "value": turn.answer}]
    return {"id": conversation.sample_id, "image": str(conversation.image.resolve()), "conversations": turns}


def write_records(path: str | Path, records: Sequence[dict]) -> None:
    """Write records (from conversation_record, possibly with extra keys) as one JSON list."""
    write_json_atomic(path, list(records))


def load_rgb(path: str | Path) -> np.ndarray:
    """The image as the model reads it everywhere: (H, W, 3) uint8 through the display pipeline.

    The same call as evaluation and the app make, so a model is trained on the pixels it is later
    asked about (an 8-bit PNG as stored; a DICOM in its header window).
    """
    try:
        return render_rgb(open_image(path).frame(0))
    except ImageLoadError as err:
        raise TrainingDataError(f"Cannot read the image {path}: {err}") from None
