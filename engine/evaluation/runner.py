"""Answer Med-GRIT samples with a ClinKD backend: batches, progress, resume and cancel.

Why a JSON-lines file: an evaluation of 30k questions runs for hours, so every finished batch is
appended and flushed at once; a rerun reads the file, skips what is answered and goes on. The file
is read with ``read_jsonl``: a line cut off by a crash or damaged on disk costs only its question
(asked again); before appending, a damaged file is set aside and its readable lines written back.
A file written for another data file or by another model is refused rather than mixed in. The
lines carry the fields of the papers' prediction files (``id``, ``image``, ``question``,
``annotation``, ``response``), so their scripts can read them too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.clinkd.generation import AskRequest, GenerationSettings
from engine.clinkd.prompts import Task
from engine.clinkd.server import Backend
from engine.evaluation.medgrit import DatasetError, MedGritSample
from engine.evaluation.scores import Answered
from engine.files import append_jsonl, read_jsonl, rewrite_jsonl
from engine.grounding import DIALECTS, GRID_FRAME, detect_dialect
from engine.imaging import ImageLoadError, open_image, render_rgb

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called from the running thread after each batch."""

PREDICTIONS_FILE = "predictions.jsonl"


@dataclass(frozen=True)
class RunSummary:
    total: int  # samples in this run
    already: int  # answered by an earlier run and skipped
    answered: int  # answered now
    unreadable: int  # images that could not be decoded (recorded with an empty answer)
    cancelled: bool
    predictions: Path
    seconds: float
    repaired: str | None = None  # a sentence when a damaged predictions file was set aside and rewritten


def read_predictions(path: Path, samples: Sequence[MedGritSample]) -> dict[tuple[int, int], dict]:
    """Records of an earlier run by sample key (index, turn); refuses a file of other data.

    Damaged lines (cut off by a crash, bad UTF-8, bad JSON) are left out: their questions are
    asked again. Valid JSON that is not a prediction record means the folder holds something else.
    """
    by_key = {s.key: s for s in samples}
    records: dict[tuple[int, int], dict] = {}
    for number, record in enumerate(read_jsonl(path).records, 1):
        try:
            index, sample_id, task = record["index"], record["id"], record["task"]
            key = (index, record.get("turn", 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DatasetError(f"{path} record {number} is not a prediction record; move the file away") from None
        sample = by_key.get(key)
        if sample is not None and (sample.id != sample_id or sample.task.value != task):
            raise DatasetError(
                f"{path} holds answers for another data file (record {number}: item {index} is {sample_id!r}, "
                f"the data says {sample.id!r}); choose another --out folder"
            )
        if sample is not None:
            records[key] = record
    return records


def _check_model(records: dict[int, dict], model_id: str, path: Path) -> None:
    others = sorted({r.get("model") for r in records.values()} - {model_id}, key=str)
    if others:
        raise DatasetError(
            f"{path} holds answers of model {others[0]!r}, and this run uses {model_id!r}; "
            "choose another --out folder to keep them apart"
        )


def sample_request(sample: MedGritSample) -> AskRequest:
    """The image exactly as displayed (8-bit PNGs as stored), the dataset question verbatim, and
    for a later turn the earlier ones with their reference answers. Raises ImageLoadError or OSError."""
    stack = open_image(sample.image)
    rgb = render_rgb(stack.frame(0))
    return AskRequest(rgb, sample.question, Task.FREE, width=stack.columns, height=stack.rows, history=sample.history)


def _record(sample: MedGritSample, model_id: str, **fields: object) -> dict:
    return {
        "index": sample.index,
        "turn": sample.turn,
        "id": sample.id,
        "task": sample.task.value,
        "modality": sample.modality,
        "image": sample.image.name,
        "question": sample.question,
        "annotation": sample.annotation,
        "model": model_id,
        **fields,
    }


def unreadable_record(sample: MedGritSample, model_id: str, error: BaseException) -> dict:
    """The record of a sample whose image cannot be decoded: an empty answer and the reason."""
    return _record(sample, model_id, response="", answer="", boxes=[], error=str(error))


def answer_records(
    backend: Backend,
    settings: GenerationSettings,
    asked: Sequence[tuple[MedGritSample, AskRequest]],
    model_id: str,
    cancel: threading.Event | None = None,
) -> list[dict]:
    """Ask a batch of questions and make each answer a prediction record (the local run and a Ray
    actor both answer through this)."""
    results = backend.ask_batch([r for _, r in asked], settings, cancel=cancel)
    return [
        _record(
            sample,
            model_id,
            response=result.raw_text,
            answer=result.text,
            boxes=[list(b.grid) for b in result.boxes],
            dialect=result.dialect,
            frame=list(result.frame),
            new_tokens=result.new_tokens,
            seconds=round(result.total_s, 3),
        )
        for (sample, _), result in zip(asked, results, strict=True)
    ]


AnswerBatches = Callable[[list[MedGritSample]], Iterator[list[dict]]]
"""Answers the samples given, yielding prediction records a batch at a time as they are done."""


def run_medgrit(
    samples: Sequence[MedGritSample],
    backend: Backend,
    out_dir: str | os.PathLike[str],
    settings: GenerationSettings = GenerationSettings(),
    *,
    batch_size: int = 8,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> RunSummary:
    """Answer every sample not yet in ``out_dir/predictions.jsonl``, one batch at a time.

    Stops between batches when ``cancel`` is set (a batch cut short is not written).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    model_id = backend.info.model_id

    def batches(todo: list[MedGritSample]) -> Iterator[list[dict]]:
        for start in range(0, len(todo), batch_size):
            if cancel is not None and cancel.is_set():
                return
            asked, lines = [], []
            for sample in todo[start : start + batch_size]:
                try:
                    asked.append((sample, sample_request(sample)))
                except (ImageLoadError, OSError) as err:
                    lines.append(unreadable_record(sample, model_id, err))
            answered = answer_records(backend, settings, asked, model_id, cancel)
            if cancel is not None and cancel.is_set():
                return
            yield lines + answered

    return record_predictions(samples, model_id, out_dir, batches, progress=progress, cancel=cancel)


def record_predictions(
    samples: Sequence[MedGritSample],
    model_id: str,
    out_dir: str | os.PathLike[str],
    batches: AnswerBatches,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> RunSummary:
    """What every run does around its answers, wherever they are computed: resume from the
    predictions file (refusing another model's), append each batch of records as it arrives
    (``append_jsonl``: a crash loses at most the batch being answered), report progress."""
    started = time.perf_counter()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PREDICTIONS_FILE
    done = read_predictions(path, samples)
    _check_model(done, model_id, path)
    repaired = _repair(path)
    todo = [s for s in samples if s.key not in done]
    answered = unreadable = 0
    if progress is not None:
        progress("answering", len(done), len(samples))
    for lines in batches(todo):
        append_jsonl(path, lines)
        answered += len(lines)
        unreadable += sum(1 for line in lines if line.get("error"))
        if progress is not None:
            progress("answering", len(done) + answered, len(samples))
    return RunSummary(
        total=len(samples),
        already=len(done),
        answered=answered,
        unreadable=unreadable,
        cancelled=cancel is not None and cancel.is_set() and answered < len(todo),
        predictions=path,
        seconds=time.perf_counter() - started,
        repaired=repaired,
    )


def _repair(path: Path) -> str | None:
    """Set a damaged predictions file aside and write its readable lines back, so a damaged line is
    reported once rather than on every later read; returns the sentence saying so."""
    lines = read_jsonl(path)
    damage = lines.damage(path)
    if damage is None:
        return None
    kept = rewrite_jsonl(path, lines)
    return f"{damage}; the original is kept as {kept.name} and the unanswered questions are asked again."


def pending(samples: Sequence[MedGritSample], out_dir: str | os.PathLike[str]) -> list[MedGritSample]:
    """The samples an earlier run in ``out_dir`` has not answered (all of them for a new folder)."""
    done = read_predictions(Path(out_dir) / PREDICTIONS_FILE, samples)
    return [s for s in samples if s.key not in done]


def record_dialect(record: dict, dialect: str = "auto") -> tuple[str, tuple[float, float]]:
    """How to read a record's response: the dialect and frame the run recorded; for records that do
    not say (older runs, other tools), ``dialect``, or on "auto" the one its markup shows (a JSON
    ``bbox_2d`` answer without a recorded frame is read on the 0-1000 grid, as Qwen3-VL writes it)."""
    said, frame = record.get("dialect"), record.get("frame")
    if said not in DIALECTS:
        said = detect_dialect(str(record.get("response", ""))) if dialect == "auto" else dialect
    ok_frame = (
        isinstance(frame, list)
        and len(frame) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in frame)
    )
    return said, (float(frame[0]), float(frame[1])) if ok_frame else GRID_FRAME


def answered_samples(
    samples: Sequence[MedGritSample], out_dir: str | os.PathLike[str], dialect: str = "auto"
) -> list[Answered]:
    """The answered ones among ``samples``, from the predictions file, ready for scoring.

    ``dialect`` reads the responses of records that do not say theirs (see ``record_dialect``).
    """
    records = read_predictions(Path(out_dir) / PREDICTIONS_FILE, samples)
    return [
        Answered(s.modality, s.annotation, records[s.key]["response"], *record_dialect(records[s.key], dialect))
        for s in samples
        if s.key in records
    ]
