"""Model-assisted pre-annotation: ClinKD (or KPL) over a whole image set, proposals for review.

``spec`` (light, no torch) says what a run does and checks the label list; ``job`` runs it
through a ``dispatch``er (batches on the local model, or requests in flight on server replicas)
and turns answers into proposals with provenance; ``log`` remembers what is done for a resumed
run; ``kpl`` does the same for KPL labels. The GUI worker and ``main.py annotate`` share them.
"""

from typing import TYPE_CHECKING

from engine.lazy import lazy_attributes
from engine.preannotate.log import append_log, done_images, load_log, log_path, log_record, read_log, repair_log
from engine.preannotate.outcome import (
    DONE,
    FAILED,
    ImageOutcome,
    RunProgress,
    RunStats,
    apply_outcome,
    new_run_id,
    review_first,
    stale_proposals,
)
from engine.preannotate.spec import (
    MIA_LABEL,
    LabelListError,
    PreannotateSpec,
    PreTask,
    check_labels,
    split_labels,
    window_text,
)

_LAZY = {
    "engine.preannotate.dispatch": ("Dispatcher", "LocalDispatcher", "PairedDispatcher", "ReplicaDispatcher"),
    "engine.preannotate.job": ("ImageWork", "proposed_label", "run_preannotation"),
    "engine.preannotate.kpl": ("run_kpl_labels",),
    "engine.preannotate.seg": ("with_segmenter",),
}

if TYPE_CHECKING:
    from engine.preannotate.dispatch import Dispatcher, LocalDispatcher, PairedDispatcher, ReplicaDispatcher
    from engine.preannotate.job import ImageWork, proposed_label, run_preannotation
    from engine.preannotate.kpl import run_kpl_labels
    from engine.preannotate.seg import with_segmenter

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "DONE",
    "FAILED",
    "MIA_LABEL",
    "Dispatcher",
    "ImageOutcome",
    "ImageWork",
    "LabelListError",
    "LocalDispatcher",
    "PairedDispatcher",
    "PreTask",
    "PreannotateSpec",
    "ReplicaDispatcher",
    "RunProgress",
    "RunStats",
    "append_log",
    "apply_outcome",
    "check_labels",
    "done_images",
    "load_log",
    "log_path",
    "log_record",
    "new_run_id",
    "proposed_label",
    "read_log",
    "repair_log",
    "review_first",
    "run_kpl_labels",
    "run_preannotation",
    "split_labels",
    "stale_proposals",
    "window_text",
    "with_segmenter",
]
