"""The run log beside a project: which images are done under which settings, and why some failed.

Why a JSON-lines file next to the project rather than fields in it: the project file is the
annotations (the window rewrites it), while this log is the run's memory, appended line by line
so that an interrupted run loses nothing. A rerun skips images whose last record under the same
settings key says done; failed ones are tried again. The log is read with ``read_jsonl``: a line
cut off by a crash, or damaged on disk, costs only its own image (done again), never the records
around it, and ``repair_log`` sets the damaged file aside so the next run reads a clean one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from engine.files import JsonLines, append_jsonl, read_jsonl, rewrite_jsonl
from engine.preannotate.outcome import DONE, ImageOutcome

LOG_SUFFIX = ".preannotation.jsonl"


def log_path(project: str | os.PathLike[str]) -> Path:
    project = Path(project)
    return project.with_name(project.name + LOG_SUFFIX)


def load_log(path: str | os.PathLike[str]) -> JsonLines:
    """The run records of a log, and every line that could not be used (``read_jsonl``'s reasons,
    plus valid JSON that is not a run record). Raises ``JsonFileError`` only for an unreadable file."""
    lines = read_jsonl(path)
    records, problems = [], list(lines.problems)
    for record in lines.records:
        if isinstance(record, dict) and "image_id" in record and "key" in record:
            records.append(record)
        else:
            problems.append("a line holds JSON that is not a run record")
    return JsonLines(records, problems)


def read_log(path: str | os.PathLike[str]) -> list[dict]:
    """The run records of a log (damaged lines left out; see ``load_log`` for why)."""
    return load_log(path).records


def repair_log(path: str | os.PathLike[str], lines: JsonLines) -> str | None:
    """When ``lines`` (from ``load_log``) found damage: set the log aside, write back what was
    recovered, and return one sentence saying so; None when the log was sound."""
    damage = lines.damage(path)
    if damage is None:
        return None
    try:
        kept = rewrite_jsonl(path, lines)
    except OSError as err:
        return f"The run log {damage}; it could not be repaired ({err.strerror or err}), so the run goes on after it."
    return f"The run log {damage}, the rest is kept as {kept.name}, and the run resumes from what was recovered."


def done_images(records: Iterable[dict], key: str) -> set[str]:
    """Images whose latest record under ``key`` says done."""
    latest: dict[str, str] = {}
    for record in records:
        if record["key"] == key:
            latest[record["image_id"]] = record.get("status", "")
    return {image for image, status in latest.items() if status == DONE}


def log_record(outcome: ImageOutcome, key: str, run_id: str, model: str, when: str) -> dict:
    record = {
        "image_id": outcome.image_id,
        "title": outcome.title,
        "key": key,
        "run": run_id,
        "model": model,
        "status": outcome.status,
        "reason": outcome.reason,
        "questions": outcome.questions,
        "boxes": outcome.boxes,
        "labels": outcome.labels,
        "masks": outcome.masks,
        "notes": list(outcome.notes),
        "new_tokens": outcome.new_tokens,
        "seconds": round(outcome.seconds, 3),
        "at": when,
    }
    if outcome.agreement:  # a second-opinion run: whether the image is reviewed first
        record["disagree"] = outcome.disagree
    return record


def append_log(path: str | os.PathLike[str], records: Iterable[dict]) -> None:
    """Append records (each on a line of its own, even after a torn last line; see ``append_jsonl``)."""
    append_jsonl(path, records)
