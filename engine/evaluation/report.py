"""Evaluation outputs: JSON for programs, CSV for spreadsheets, Markdown for people and papers.

Values are stored as fractions (JSON, CSV) and shown as percentages with two decimals (Markdown),
the way the papers print their tables. A metric that could not be computed is null / empty /
"absent", with the reason next to the table: never a zero that looks like a score.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.evaluation.scores import METRIC_NOTES, TaskReport
from engine.files import write_text_atomic

MEAN_PAPERS = "mean (8 modalities, papers)"
MEAN_PRESENT = "mean (modalities present)"


def percent(value: float | None) -> str:
    return "absent" if value is None else f"{100 * value:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; the first column left-aligned, the others right."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _rows(report: TaskReport) -> list[tuple[str, str, list[float | None]]]:
    """(label, sample count, values) for each modality, then the two means."""
    rows = [
        (m, str(report.counts.get(m, 0)), [report.rows[m].get(k) for k in report.metrics]) for m in report.modalities
    ]
    rows.append((MEAN_PAPERS, str(sum(report.counts.values())), [report.mean_papers[k] for k in report.metrics]))
    rows.append((MEAN_PRESENT, "", [report.mean_present[k] for k in report.metrics]))
    return rows


def task_markdown(report: TaskReport, title: str) -> str:
    header = ["modality", "n", *(f"{k} (%)" for k in report.metrics)]
    table = markdown_table(header, [[label, n, *(percent(v) for v in values)] for label, n, values in _rows(report)])
    lines = [
        f"## {title}",
        "",
        (
            f"Headline: **{report.headline}** = {percent(report.mean_papers[report.headline])} "
            "(mean over the papers' eight modalities)."
        ),
        "",
        table,
        "",
    ]
    lines += [f"- {metric} absent: {why}" for metric, why in report.absent.items()]
    lines += [f"- {note}" for note in report.notes]
    lines += [f"- {metric}: {METRIC_NOTES[metric]}" for metric in report.metrics if metric in METRIC_NOTES]
    return "\n".join(lines) + "\n"


def task_csv(report: TaskReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["modality", "n", *report.metrics])
    for label, n, values in _rows(report):
        writer.writerow([label, n, *("" if v is None else f"{v:.6f}" for v in values)])
    return buffer.getvalue()


def write_task_report(
    report: TaskReport, out_dir: str | os.PathLike[str], title: str, about: Mapping[str, object]
) -> list[Path]:
    """Write metrics.json (with ``about``: data, model, settings), metrics.csv and metrics.md."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics.json": json.dumps({**about, **report.to_json()}, indent=2, ensure_ascii=False) + "\n",
        "metrics.csv": task_csv(report),
        "metrics.md": task_markdown(report, title),
    }
    for name, text in files.items():
        write_text_atomic(folder / name, text)
    return [folder / name for name in files]
