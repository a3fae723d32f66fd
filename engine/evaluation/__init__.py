"""Evaluation with the papers' protocols: Med-GRIT for ClinKD, labelled folders for KPL.

Med-GRIT: ``load_medgrit`` reads a test file and finds its images, ``run_medgrit`` answers it with
any ClinKD backend (local or server; resumable, cancellable), ``score_task`` computes the papers'
metrics per modality, and ``write_task_report`` writes JSON, CSV and Markdown. Nothing here
imports Qt.
"""

from engine.evaluation.captions import CAPTION_METRICS, CaptionScores, java_problem, score_captions, spice_problem
from engine.evaluation.medgrit import (
    MODALITIES,
    DatasetError,
    MedGritData,
    MedGritSample,
    clean_question,
    load_medgrit,
    modality_of,
    task_from_name,
)
from engine.evaluation.protocol import (
    GroundingScore,
    classification_correct,
    extract_information,
    iou,
    score_grounding,
)
from engine.evaluation.report import markdown_table, task_csv, task_markdown, write_task_report
from engine.evaluation.runner import (
    PREDICTIONS_FILE,
    RunSummary,
    answered_samples,
    pending,
    read_predictions,
    run_medgrit,
)
from engine.evaluation.scores import HEADLINE, TASK_METRICS, TASK_TITLES, Answered, TaskReport, score_task

__all__ = [
    "CAPTION_METRICS",
    "HEADLINE",
    "MODALITIES",
    "PREDICTIONS_FILE",
    "TASK_METRICS",
    "TASK_TITLES",
    "Answered",
    "CaptionScores",
    "DatasetError",
    "GroundingScore",
    "MedGritData",
    "MedGritSample",
    "RunSummary",
    "TaskReport",
    "answered_samples",
    "classification_correct",
    "clean_question",
    "extract_information",
    "iou",
    "java_problem",
    "load_medgrit",
    "markdown_table",
    "modality_of",
    "pending",
    "read_predictions",
    "run_medgrit",
    "score_captions",
    "score_grounding",
    "score_task",
    "spice_problem",
    "task_csv",
    "task_from_name",
    "task_markdown",
    "write_task_report",
]
