"""Med-GRIT task metrics per modality and their means, from answered samples.

The papers report every metric per modality and as the unweighted mean over the eight modalities,
always dividing by eight (a modality missing from the run counts 0: their scripts divide by
``n + 1e-8``, and their caption means round each modality to 6 decimals first). We give that mean
as ``mean_papers`` and, for runs that cover only some modalities (``--limit``), the mean over the
modalities present as ``mean_present``. Modalities outside the eight are listed but in no mean.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.clinkd.prompts import Task
from engine.evaluation.captions import CAPTION_METRICS, score_captions
from engine.evaluation.medgrit import MODALITIES
from engine.evaluation.protocol import classification_correct, extract_information, score_grounding
from engine.grounding import GRID_FRAME

_EPS = 1e-8  # the papers' denominators: n + 1e-8
MBMR_PARTS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L")

TASK_METRICS = {
    Task.VG: ("recall@0.5", "mIoU", "recall@0.5 tolerant"),
    Task.ROC: ("accuracy",),
    Task.RC: CAPTION_METRICS,
    Task.MIA: (*CAPTION_METRICS, "mBMR"),
}
TASK_TITLES = {
    Task.VG: "Visual grounding (VG)",
    Task.ROC: "Referring object classification (ROC)",
    Task.RC: "Region captioning (RC)",
    Task.MIA: "Medical image analysis (MIA)",
}
HEADLINE = {Task.VG: "recall@0.5", Task.ROC: "accuracy", Task.RC: "SPICE", Task.MIA: "mBMR"}
"""The number each task is known by (BiRD's leaderboard: VG recall, ROC recall, RC SPICE, MIA mBMR)."""

METRIC_NOTES = {
    "recall@0.5": "papers' rule: a reference box is found when any predicted box has IoU > 0.5 "
    "(JSON-box families: their boxes read by their own parser)",
    "mIoU": "ours: mean over reference boxes of the best IoU with a predicted box",
    "recall@0.5 tolerant": "ours: every box dialect our parser reads, IoU > 0.5",
    "accuracy": "papers' rule: every word of the reference is a substring of the answer",
    "mBMR": "mean of BLEU-1..4, METEOR and ROUGE-L (ClinKD's image-analysis score)",
}


@dataclass(frozen=True)
class Answered:
    """One answered sample, as the runner stores it."""

    modality: str
    annotation: str
    response: str  # the model's raw answer (box markup kept)
    dialect: str = "qwen2vl"  # the box dialect the answer is written in (engine.grounding)
    frame: tuple[float, float] = GRID_FRAME  # the space of its numbers (Qwen2.5-VL: the resized input)


@dataclass(frozen=True)
class TaskReport:
    task: Task
    metrics: tuple[str, ...]  # column order
    headline: str
    rows: dict[str, dict[str, float]]  # modality -> metric -> value, for modalities with scored samples
    counts: dict[str, int]  # modality -> samples scored
    mean_papers: dict[str, float | None]  # over the papers' eight modalities; None: metric absent
    mean_present: dict[str, float | None]  # over those of the eight that were scored
    absent: dict[str, str]  # metric -> why it was not computed
    notes: tuple[str, ...]

    @property
    def modalities(self) -> list[str]:
        """Scored modalities: the papers' eight in their order, then any others."""
        ordered = [m for m in MODALITIES if m in self.rows]
        return ordered + sorted(m for m in self.rows if m not in MODALITIES)

    def to_json(self) -> dict:
        return {
            "task": self.task.value,
            "headline": self.headline,
            "metrics": list(self.metrics),
            "counts": self.counts,
            "modalities": {m: self.rows[m] for m in self.modalities},
            "mean_papers": self.mean_papers,
            "mean_present": self.mean_present,
            "absent": self.absent,
            "notes": list(self.notes),
            "metric_notes": {m: METRIC_NOTES[m] for m in self.metrics if m in METRIC_NOTES},
        }


def _by_modality(answers: Iterable[Answered]) -> dict[str, list[Answered]]:
    groups: dict[str, list[Answered]] = defaultdict(list)
    for answer in answers:
        groups[answer.modality].append(answer)
    return dict(groups)


def _grounding_rows(groups: Mapping[str, list[Answered]]) -> tuple[dict, dict, list[str]]:
    rows, counts, notes = {}, {}, []
    skipped = bad = 0
    for modality, answers in groups.items():
        scores = [score_grounding(a.annotation, a.response, a.dialect, a.frame) for a in answers]
        skipped += sum(s is None for s in scores)
        scores = [s for s in scores if s is not None]
        if not scores:
            continue
        targets = sum(s.targets for s in scores)
        ious = [v for s in scores for v in s.best_ious]
        bad += sum(s.bad_targets for s in scores)
        rows[modality] = {
            "recall@0.5": sum(s.hits for s in scores) / (targets + _EPS),
            "mIoU": sum(ious) / len(ious),
            "recall@0.5 tolerant": sum(s.tolerant_hits for s in scores) / targets,
        }
        counts[modality] = len(scores)
    if skipped:
        notes.append(f"{skipped} references without a <box> were skipped, as the papers do")
    if bad:
        notes.append(f"{bad} reference boxes are not four numbers and count as missed")
    return rows, counts, notes


def _caption_rows(
    groups: Mapping[str, list[Answered]], task: Task, use_java: bool
) -> tuple[dict, dict, list[str], dict[str, str]]:
    pairs = {m: [(a.annotation, extract_information(a.response)) for a in answers] for m, answers in groups.items()}
    result = score_captions(pairs, use_java=use_java)
    rows = {m: {k: round(v, 6) for k, v in row.items()} for m, row in result.scores.items()}  # as the papers
    if task is Task.MIA and "METEOR" not in result.absent:
        for row in rows.values():
            row["mBMR"] = sum(row[k] for k in MBMR_PARTS) / len(MBMR_PARTS)
    counts = {m: len(p) for m, p in pairs.items() if p}
    return rows, counts, [f"tokenizer: {result.tokenizer}"], result.absent


def _means(
    rows: Mapping[str, Mapping[str, float]], metrics: tuple[str, ...], absent: Mapping[str, str], task: Task
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    papers: dict[str, float | None] = {}
    present: dict[str, float | None] = {}
    scored = [m for m in MODALITIES if m in rows]
    for metric in metrics:
        if metric in absent or metric == "mBMR":
            papers[metric] = present[metric] = None
            continue
        total = sum(rows[m][metric] for m in scored)
        papers[metric] = total / len(MODALITIES)
        present[metric] = total / len(scored) if scored else None
        if task in (Task.RC, Task.MIA):
            papers[metric] = round(papers[metric], 6)
    if "mBMR" in metrics and "mBMR" not in absent:  # from the means, as ClinKD's eval_MII.py
        papers["mBMR"] = sum(papers[k] for k in MBMR_PARTS) / len(MBMR_PARTS)
        present["mBMR"] = sum(present[k] for k in MBMR_PARTS) / len(MBMR_PARTS) if scored else None
    return papers, present


def score_task(task: Task, answers: Iterable[Answered], *, use_java: bool = True) -> TaskReport:
    """Metrics of one Med-GRIT task over answered samples, per modality and averaged."""
    groups = _by_modality(answers)
    metrics = TASK_METRICS[task]
    absent: dict[str, str] = {}
    if task is Task.VG:
        rows, counts, notes = _grounding_rows(groups)
    elif task is Task.ROC:
        correct = {
            m: sum(classification_correct(a.annotation, a.response) for a in answers) for m, answers in groups.items()
        }
        rows = {m: {"accuracy": correct[m] / (len(groups[m]) + _EPS)} for m in groups}
        counts, notes = {m: len(a) for m, a in groups.items()}, []
    elif task in (Task.RC, Task.MIA):
        rows, counts, notes, absent = _caption_rows(groups, task, use_java)
        absent = dict(absent)
        if task is Task.MIA and "METEOR" in absent:
            absent["mBMR"] = "needs METEOR"
    else:
        raise ValueError(f"no Med-GRIT metric for task {task.value!r}")
    others = sorted(set(rows) - set(MODALITIES))
    if others:
        notes.append(f"outside the papers' eight modalities, in no mean: {', '.join(others)}")
    papers, present = _means(rows, metrics, absent, task)
    return TaskReport(
        task=task,
        metrics=metrics,
        headline=HEADLINE[task],
        rows=rows,
        counts=counts,
        mean_papers=papers,
        mean_present=present,
        absent=absent,
        notes=tuple(notes),
    )
