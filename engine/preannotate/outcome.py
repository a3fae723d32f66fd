"""What a pre-annotation run reports, and how it lands in a document (light: no torch).

The GUI thread receives ``ImageOutcome``s from the inference worker and applies them with
``apply_outcome``; the CLI does the same. Both must not pay for torch to do it, hence this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.annotations import AnnotationDocument, ApplyProposals, Box, ImageLabel, Mask, Source
from engine.annotations.model import Annotation
from engine.grounding.agreement import LabelAgreement
from engine.preannotate.spec import PreTask

DONE = "done"
FAILED = "failed"


def new_run_id() -> str:
    return "run-" + uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class ImageOutcome:
    image_id: str
    title: str
    status: str  # DONE or FAILED
    reason: str = ""
    questions: int = 0
    annotations: tuple[Annotation, ...] = ()  # proposals: new ones, or existing ones relabelled (same id)
    new_tokens: int = 0
    seconds: float = 0.0
    key: str = ""  # the settings key of the run (a rerun with the same key replaces these proposals)
    notes: tuple[str, ...] = ()  # for the reviewer, on a done image (seg: a label without a box or mask)
    agreement: tuple[LabelAgreement, ...] = ()  # second opinion: per label, how far the two models agree

    @property
    def disagree(self) -> bool:
        """The two models disagree on some label: the image goes first in the review order."""
        return any(a.disagree for a in self.agreement)

    @property
    def boxes(self) -> int:
        return sum(isinstance(a, Box) for a in self.annotations)

    @property
    def labels(self) -> int:
        return sum(isinstance(a, ImageLabel) for a in self.annotations)

    @property
    def masks(self) -> int:
        return sum(isinstance(a, Mask) for a in self.annotations)


@dataclass(frozen=True)
class RunProgress:
    """Where a run is, for progress bars: images done of total, and the decode rate."""

    images_done: int
    images_total: int
    questions_done: int
    failures: int
    new_tokens: int
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        if self.images_done == 0 or self.images_done >= self.images_total:
            return None
        return self.elapsed_s / self.images_done * (self.images_total - self.images_done)

    @property
    def tokens_per_second(self) -> float | None:
        return self.new_tokens / self.elapsed_s if self.elapsed_s > 0 and self.new_tokens else None


@dataclass
class RunStats:
    run_id: str
    images: int = 0  # given to this run
    done: int = 0
    failed: int = 0
    questions: int = 0
    boxes: int = 0
    labels: int = 0
    masks: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)  # (title, reason)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (title, note)
    disagreeing: list[str] = field(default_factory=list)  # second opinion: titles of images to review first

    def add(self, outcome: ImageOutcome) -> None:
        self.done += outcome.status == DONE
        self.failed += outcome.status == FAILED
        self.questions += outcome.questions
        self.boxes += outcome.boxes
        self.labels += outcome.labels
        self.masks += outcome.masks
        self.notes.extend((outcome.title, note) for note in outcome.notes)
        self.new_tokens += outcome.new_tokens
        if outcome.disagree:
            self.disagreeing.append(outcome.title)
        if outcome.status == FAILED:
            self.failures.append((outcome.title, outcome.reason))


def review_first(image_ids: Iterable[str], disagreeing: Iterable[str]) -> list[str]:
    """``image_ids`` reordered for review: the images where the two models disagree first, each group
    in its own order (a stable sort, so the reviewer still walks series in the order they were in)."""
    flagged = set(disagreeing)
    ids = list(image_ids)
    return [i for i in ids if i in flagged] + [i for i in ids if i not in flagged]


def stale_proposals(doc: AnnotationDocument, image_id: str, key: str, keep: Iterable[str]) -> list[str]:
    """Ids of proposals an interrupted earlier attempt with the same settings left on this image:
    a rerun replaces them instead of adding duplicates (relabelled boxes keep their ids and stay)."""
    keep = set(keep)
    return [
        a.id
        for a in doc.annotations(image_id)
        if a.provenance is not None
        and a.provenance.key == key
        and a.id not in keep
        and a.source is not Source.USER
        and a.provenance.task != PreTask.ROC.value
    ]


def apply_outcome(doc: AnnotationDocument, outcome: ImageOutcome, run_id: str) -> bool:
    """Put an image's proposals into the document as one command of the run's undo group."""
    keep = [a.id for a in outcome.annotations]
    stale = stale_proposals(doc, outcome.image_id, outcome.key, keep) if outcome.key else []
    text = f"Pre-annotation ({len(outcome.annotations)} proposal{'s' if len(outcome.annotations) != 1 else ''})"
    return doc.execute(ApplyProposals(outcome.image_id, outcome.annotations, remove=stale, group=run_id, text=text))
