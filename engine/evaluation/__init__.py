"""Evaluation with the papers' protocols: Med-GRIT for ClinKD, labelled folders for KPL.

Med-GRIT: ``load_medgrit`` reads a test file and finds its images, ``run_medgrit`` answers it with
any ClinKD backend (local or server; resumable, cancellable), ``score_task`` computes the papers'
metrics per modality, and ``write_task_report`` writes JSON, CSV and Markdown. KPL:
``evaluate_kpl_sets`` scores several labelled folders with engine.kpl's own evaluation and puts
the authors' logged numbers beside them. Nothing here imports Qt.
"""

from engine.evaluation.captions import CAPTION_METRICS, CaptionScores, java_problem, score_captions, spice_problem
from engine.evaluation.kpl_sets import (
    AUTHORS_LOG,
    AuthorsRun,
    KplDataset,
    KplSetResult,
    authors_run,
    check_kpl_sets,
    evaluate_kpl_sets,
    kpl_sets_json,
    kpl_sets_markdown,
)
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
    "AUTHORS_LOG",
    "CAPTION_METRICS",
    "HEADLINE",
    "MODALITIES",
    "PREDICTIONS_FILE",
    "TASK_METRICS",
    "TASK_TITLES",
    "Answered",
    "AuthorsRun",
    "CaptionScores",
    "DatasetError",
    "GroundingScore",
    "KplDataset",
    "KplSetResult",
    "MedGritData",
    "MedGritSample",
    "RunSummary",
    "TaskReport",
    "answered_samples",
    "authors_run",
    "check_kpl_sets",
    "classification_correct",
    "clean_question",
    "evaluate_kpl_sets",
    "extract_information",
    "iou",
    "java_problem",
    "kpl_sets_json",
    "kpl_sets_markdown",
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
