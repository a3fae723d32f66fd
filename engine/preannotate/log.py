"""The run log beside a project: which images are done under which settings, and why some failed.

Why a JSON-lines file next to the project rather than fields in it: the project file is the
annotations (the window rewrites it), while this log is the run's memory, appended line by line
so that an interrupted run loses nothing. A rerun skips images whose last record under the same
settings key says done; failed ones are tried again. A line cut off by a crash is ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from engine.preannotate.outcome import DONE, ImageOutcome

LOG_SUFFIX = ".preannotation.jsonl"


def log_path(project: str | os.PathLike[str]) -> Path:
    project = Path(project)
    return project.with_name(project.name + LOG_SUFFIX)


def read_log(path: str | os.PathLike[str]) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the last line of a run that died while writing it
        if isinstance(record, dict) and "image_id" in record and "key" in record:
            records.append(record)
    return records


def done_images(records: Iterable[dict], key: str) -> set[str]:
    """Images whose latest record under ``key`` says done."""
    latest: dict[str, str] = {}
    for record in records:
        if record["key"] == key:
            latest[record["image_id"]] = record.get("status", "")
    return {image for image, status in latest.items() if status == DONE}


def log_record(outcome: ImageOutcome, key: str, run_id: str, model: str, when: str) -> dict:
    return {
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
        "new_tokens": outcome.new_tokens,
        "seconds": round(outcome.seconds, 3),
        "at": when,
    }


def append_log(path: str | os.PathLike[str], records: Iterable[dict]) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if lines:
        with Path(path).open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
