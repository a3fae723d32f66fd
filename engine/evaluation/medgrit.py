"""Med-GRIT-270k / BiRD test files: questions, reference answers, images and modalities.

The test files are JSON lists of ``{"id", "conversations"}`` (BiRD's ``infer.py``; the QA pairs are
not redistributable, so nothing here ships or downloads them). A question carries Qwen-VL
leftovers: an ``<img>path</img>`` segment, sometimes a ``Picture 1:`` label or ChatML wrappers, and
boxes as ``<box>(x1,y1),(x2,y2)</box>`` on the 0-1000 grid. The model must read the question the
way ClinKD was trained: those wrappers removed and boxes in Qwen2-VL markup. The reference answer
is kept exactly as written, because the papers' metrics read its ``<box>`` markup.

The image is ``<images>/<id>.png``; the modality is the id's prefix before the first "_", as the
papers' scripts take it (``ct_00--AbdomenCT1K--...`` is ct, ``x_ray...`` is x).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.clinkd.conversation import PriorTurn
from engine.clinkd.prompts import Task
from engine.grounding import normalize_box_markup

MODALITIES = ("ct", "mr", "x", "pet", "endoscopy", "dermoscopy", "fundus", "ultrasound")
"""The eight Med-GRIT modalities, in the order of the papers' tables (their ``modality_dict``)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")

_FILE_TASKS = {
    "vg": Task.VG,
    "ro": Task.ROC,
    "roc": Task.ROC,
    "gc": Task.RC,
    "rc": Task.RC,
    "mii": Task.MIA,
    "mia": Task.MIA,
}
"""File-name tokens of the test files (Test_VG, Test_RO, Test_GC, Test_MII) and our task codes."""

_WRAPPERS = re.compile(
    r"<\|im_start\|>system.*?<\|im_end\|>"  # a whole system turn
    r"|Picture\s*\d+\s*:\s*<img>.*?</img>"  # Qwen-VL image reference with its label
    r"|<img>.*?</img>"
    r"|<\|vision_start\|>.*?<\|vision_end\|>"
    r"|<\|im_start\|>(?:user|assistant)?\n?|<\|im_end\|>|<image>",
    re.DOTALL,
)


class DatasetError(ValueError):
    """The data file, the image folder or an earlier run's output cannot be used; says why."""


@dataclass(frozen=True)
class MedGritSample:
    index: int  # position in the data file: identifies the sample (ids repeat across questions)
    id: str
    task: Task
    modality: str  # the id prefix; may lie outside MODALITIES (then it is reported apart)
    question: str  # as the model reads it: wrappers removed, boxes in Qwen2-VL markup
    annotation: str  # the reference answer exactly as in the file
    image: Path
    turn: int = 0  # position of the question in its conversation (--all-turns evaluates every one)
    history: tuple[PriorTurn, ...] = ()  # the earlier turns with their reference answers

    @property
    def key(self) -> tuple[int, int]:
        """Identifies the question: the item's position in the file and the turn within it."""
        return (self.index, self.turn)


@dataclass(frozen=True)
class MedGritData:
    path: Path
    task: Task
    samples: tuple[MedGritSample, ...]
    warnings: tuple[str, ...]


def task_from_name(path: str | os.PathLike[str]) -> Task | None:
    """The task a test file's name announces (Test_VG.json -> vg), or None when it says none or several."""
    tokens = re.split(r"[^a-z0-9]+", Path(path).stem.lower())
    found = {_FILE_TASKS[t] for t in tokens if t in _FILE_TASKS}
    return found.pop() if len(found) == 1 else None


def modality_of(sample_id: str) -> str:
    """The papers' rule: the part of the image name before the first underscore, lower-cased."""
    return Path(sample_id).name.split("_")[0].lower()


def clean_question(text: str) -> str:
    """The dataset question as ClinKD reads it: no image tags or chat wrappers, Qwen2-VL boxes."""
    text = _WRAPPERS.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return normalize_box_markup(text)


def _turns(conversations: object) -> list[tuple[str, str]] | None:
    """(question, answer) pairs from either conversation layout, None if unreadable."""
    if not isinstance(conversations, list) or not conversations:
        return None
    if isinstance(conversations[0], (list, tuple)):  # [[question, answer], ...]: BiRD's test files
        pairs = []
        for pair in conversations:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(v, str) for v in pair):
                return None
            pairs.append((pair[0], pair[1]))
        return pairs
    if not all(isinstance(m, dict) for m in conversations) or len(conversations) < 2:
        return None
    pairs = []  # [{"from": "human", "value": ...}, {"from": "gpt", ...}, ...]
    # strict=False: a last question without an answer is dropped
    for question, answer in zip(conversations[0::2], conversations[1::2], strict=False):
        q, a = question.get("value", question.get("content")), answer.get("value", answer.get("content"))
        if not isinstance(q, str) or not isinstance(a, str):
            return None
        pairs.append((q, a))
    return pairs


class _ImageFinder:
    """Finds ``<id>`` + a known suffix directly under the folder, else anywhere below it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._below: dict[str, Path] | None = None

    def _index(self) -> dict[str, Path]:
        if self._below is None:
            self._below = {}
            for root, _dirs, files in os.walk(self.folder):
                for name in files:
                    path = Path(root) / name
                    self._below.setdefault(name, path)
                    if path.suffix.lower() in IMAGE_SUFFIXES:
                        self._below.setdefault(path.stem, path)
        return self._below

    def find(self, name: str) -> Path | None:
        for candidate in (name, *(name + s for s in IMAGE_SUFFIXES)):
            path = self.folder / candidate
            if path.is_file():
                return path
        return self._index().get(Path(name).name)


def load_medgrit(
    path: str | os.PathLike[str],
    images: str | os.PathLike[str],
    task: Task | None = None,
    *,
    all_turns: bool = False,
) -> MedGritData:
    """Read a Med-GRIT test file and locate every image; raises DatasetError with what is wrong.

    ``task`` defaults to what the file name says (Test_VG.json is visual grounding). By default
    only the first question of a conversation is kept, as the papers evaluate (their test files
    are single-turn); ``all_turns`` makes every question a sample, asked after the earlier
    questions with their reference answers as chat history (teacher forcing).
    """
    path, folder = Path(path), Path(images)
    task = task or task_from_name(path)
    if task is None or task is Task.FREE:
        raise DatasetError(f"cannot tell the task of {path.name} from its name: give --task vg, roc, rc or mia")
    if not folder.is_dir():
        raise DatasetError(f"the image folder {folder} does not exist")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err.strerror or err}") from None
    except ValueError as err:
        raise DatasetError(f"{path.name} is not valid JSON: {err}") from None
    if not isinstance(items, list):
        raise DatasetError(f"{path.name} should hold a JSON list of {{'id', 'conversations'}} items")
    finder = _ImageFinder(folder)
    samples, missing, multi_turn = [], [], 0
    for index, item in enumerate(items):
        pairs = _turns(item.get("conversations")) if isinstance(item, dict) else None
        sample_id = item.get("id") if isinstance(item, dict) else None
        if pairs is None or not isinstance(sample_id, (str, int)):
            raise DatasetError(
                f"item {index} of {path.name} is not {{'id': ..., 'conversations': [[question, answer]]}}"
            )
        multi_turn += len(pairs) > 1
        name = str(item.get("image") or sample_id)
        image = finder.find(name)
        if image is None:
            missing.append(name)
            continue
        history: list[PriorTurn] = []
        for turn, (question, answer) in enumerate(pairs if all_turns else pairs[:1]):
            samples.append(
                MedGritSample(
                    index=index,
                    id=str(sample_id),
                    task=task,
                    modality=modality_of(name),
                    question=clean_question(question),
                    annotation=answer.strip(),
                    image=image,
                    turn=turn,
                    history=tuple(history),
                )
            )
            history.append(PriorTurn(clean_question(question), normalize_box_markup(answer.strip())))
    if missing:
        shown = ", ".join(missing[:3])
        raise DatasetError(
            f"{len(missing)} of {len(items)} images are not in {folder} (looked for <id>.png and other "
            f"image suffixes, also in sub-folders): {shown}{', ...' if len(missing) > 3 else ''}"
        )
    warnings = []
    if multi_turn and not all_turns:
        warnings.append(
            f"{multi_turn} conversations have several turns; only their first question is evaluated "
            "(--all-turns evaluates every turn)"
        )
    others = sorted({s.modality for s in samples} - set(MODALITIES))
    if others:
        warnings.append(f"modalities outside the papers' eight are reported apart: {', '.join(others)}")
    return MedGritData(path=path, task=task, samples=tuple(samples), warnings=tuple(warnings))
