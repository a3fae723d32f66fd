"""A pre-annotation run: every image's questions, answered by a dispatcher, turned into proposals.

What comes out per image is an ``ImageOutcome`` of plain frozen data: the proposed boxes and
labels (model- or classifier-source, review state pending: "needs review"), each with its
provenance (run, settings key, model, question, raw answer, settings, window), or the reason the
image failed. The caller applies it to its document with ``apply_outcome`` (one undoable command
per image, grouped by run so one undo removes the whole run) and records it in the run log.

An image that cannot be opened or rendered, or a question that fails (timeout, out of memory,
a server error), makes that image a failure with the reason; the run goes on. Proposals of the
questions that did succeed are kept with it (a rerun redoes a failed image and replaces them).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from engine.annotations import (
    Box,
    ImageLabel,
    ImageRef,
    Provenance,
    Review,
    Source,
    image_ref_from_stack,
)
from engine.annotations.model import Annotation, new_id, utc_now
from engine.clinkd.generation import AskRequest, AskResult
from engine.clinkd.prompts import Task
from engine.grounding.agreement import LabelAgreement, label_agreement
from engine.imaging import ImageStack, render_rgb
from engine.preannotate.dispatch import PRIMARY, Dispatcher, PairedDispatcher
from engine.preannotate.outcome import DONE, FAILED, ImageOutcome, RunProgress, RunStats, new_run_id
from engine.preannotate.seg import MaskMaker, with_segmenter
from engine.preannotate.spec import MAX_LABEL_CHARS, MIA_LABEL, PreannotateSpec, PreTask, window_text


@dataclass(frozen=True)
class ImageWork:
    """One image to pre-annotate: its stack, its document description, and (for "what is here")
    the boxes it already has."""

    stack: ImageStack
    ref: ImageRef
    boxes: tuple[Box, ...] = ()

    @classmethod
    def of(cls, stack: ImageStack, boxes: Sequence[Box] = ()) -> ImageWork:
        return cls(stack, image_ref_from_stack(stack), tuple(boxes))

    @property
    def frame(self) -> int:
        """The frame asked about when the task has no box: the middle one (the only one of a 2-D image)."""
        return self.ref.n_frames // 2


def proposed_label(answer: str) -> str:
    """A "what is here" answer as a label: its first line, without the final full stop, capped."""
    line = next((part.strip() for part in answer.splitlines() if part.strip()), "")
    line = line.rstrip(".").strip()
    return line if len(line) <= MAX_LABEL_CHARS else line[: MAX_LABEL_CHARS - 1].rstrip() + "…"


def _message(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) < 400 else text[:400] + "…"


@dataclass
class PreparedImage:
    """One image decoded, rendered and turned into questions: what the decoding step hands the asking
    step. Plain picklable data apart from ``stack`` (which only the seg task's segmenter needs), so a
    Ray task can prepare it and a Ray actor answer it. ``outcome`` is set when nothing is to be asked
    (the image cannot be opened, or "what is here" on an image without boxes)."""

    index: int
    ref: ImageRef
    frame: int
    targets: dict[int, object]  # question number -> what its answer becomes (label, box, or None)
    requests: tuple[AskRequest, ...]
    started: float  # wall clock (time.time()): comparable between the processes of one run
    stack: ImageStack | None = None
    outcome: ImageOutcome | None = None

    @property
    def questions(self) -> int:
        return len(self.requests)


@dataclass
class _Pending:
    image: PreparedImage
    answers: dict[int, AskResult] = field(default_factory=dict)
    second_answers: dict[int, AskResult] = field(default_factory=dict)  # the second opinion's, by question
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def targets(self) -> dict[int, object]:
        return self.image.targets

    @property
    def questions(self) -> int:
        return self.image.questions


class ProposalBuilder:
    """Turns answers into proposals with their provenance."""

    def __init__(
        self, spec: PreannotateSpec, run_id: str, key: str, model_id: str, masks: MaskMaker | None = None
    ) -> None:
        self.spec = spec
        self.masks = masks
        self.run_id = run_id
        self.key = key
        self.model_id = model_id
        self.settings = spec.settings_text(model_id)
        self.window = window_text(spec.window) + (", inverted" if spec.invert else "")

    def provenance(self, question: str, answer: str, model: str | None = None) -> Provenance:
        return Provenance(
            run=self.run_id,
            key=self.key,
            model=model or self.model_id,
            task=self.spec.task.value,
            question=question,
            answer=answer,
            settings=self.settings,
            window=self.window,
        )

    def box(
        self, ref: ImageRef, frame: int, rect: Sequence[float], label: str, note: str, provenance: Provenance
    ) -> Box:
        source = ref.frame(frame)
        now = utc_now()
        return Box(
            id=new_id(),
            frame=frame,
            x1=rect[0],
            y1=rect[1],
            x2=rect[2],
            y2=rect[3],
            label=label,
            source=Source.MODEL,
            note=note,
            review=Review.PENDING,
            created=now,
            modified=now,
            sop_instance_uid=source.sop_instance_uid,
            frame_number=source.frame_number if source.sop_instance_uid else None,
            provenance=provenance,
        )

    def image_label(
        self,
        label: str,
        note: str,
        provenance: Provenance,
        *,
        source: Source = Source.MODEL,
        score: float | None = None,
    ) -> ImageLabel:
        now = utc_now()
        return ImageLabel(
            id=new_id(),
            label=label,
            source=source,
            score=score,
            note=note,
            review=Review.PENDING,
            created=now,
            modified=now,
            provenance=provenance,
        )

    def proposals(self, pending: _Pending, answers: dict[int, AskResult] | None = None) -> list[Annotation]:
        """Proposals from one model's answers (the first model's unless ``answers`` is given); each
        carries that model's id in its provenance."""
        out: list[Annotation] = []
        ref = pending.image.ref
        answers = pending.answers if answers is None else answers
        for number in sorted(answers):
            result, target = answers[number], pending.targets[number]
            provenance = self.provenance(result.question, result.raw_text, result.model.model_id)
            if self.spec.task is PreTask.VG:
                frame = pending.image.frame
                out.extend(
                    self.box(ref, frame, (b.x1, b.y1, b.x2, b.y2), str(target), result.text, provenance)
                    for b in result.boxes
                )
            elif self.spec.task is PreTask.ROC:
                label = proposed_label(result.text)
                if label:
                    box: Box = target  # type: ignore[assignment]
                    note = f"was: {box.label}" + (f" · {box.note}" if box.note else "")
                    out.append(
                        replace(
                            box,
                            label=label,
                            source=Source.MODEL,
                            review=Review.PENDING,
                            modified=utc_now(),
                            note=note,
                            provenance=provenance,
                        )
                    )
            elif self.spec.task is PreTask.SEG and self.masks is not None and pending.image.stack is not None:
                label, image = target  # type: ignore[misc]
                made = self.masks.proposals(
                    pending.image.stack, ref, pending.image.frame, image, label, result, provenance
                )
                out.extend(made.masks)
                pending.notes.extend(made.notes)
                pending.errors.extend(made.errors)
            elif self.spec.task is PreTask.MIA and result.text.strip():
                out.append(self.image_label(MIA_LABEL, result.text.strip(), provenance))
        return out


def _agreement(pending: _Pending) -> tuple[LabelAgreement, ...]:
    """Second opinion (vg): per label both models answered, their boxes compared."""
    return tuple(
        label_agreement(
            str(target),
            [b.pixels for b in pending.answers[number].boxes],
            [b.pixels for b in pending.second_answers[number].boxes],
        )
        for number, target in sorted(pending.targets.items())
        if number in pending.answers and number in pending.second_answers
    )


def _flag_disagreements(
    proposals: list[Annotation], agreement: tuple[LabelAgreement, ...], first: str, second: str
) -> tuple[list[Annotation], list[str]]:
    """The boxes of labels the models disagree on say so in their note; the sentences for the reviewer."""
    sentences = {a.label: a.sentence(first, second) for a in agreement if a.disagree}
    flagged = [
        replace(p, note=f"{p.note} · second opinion: {sentences[p.label]}".lstrip(" ·"))
        if isinstance(p, Box) and p.label in sentences
        else p
        for p in proposals
    ]
    return flagged, [f"models disagree: {text}" for text in sentences.values()]


def _renderer(work: ImageWork, spec: PreannotateSpec) -> Callable[[int], np.ndarray]:
    frames: dict[int, np.ndarray] = {}

    def rgb(frame: int) -> np.ndarray:
        if frame not in frames:
            frames[frame] = render_rgb(work.stack.frame(frame), spec.window, invert=spec.invert)
        return frames[frame]

    return rgb


def _questions(work: ImageWork, spec: PreannotateSpec) -> list[tuple[object, AskRequest]]:
    """(target, request) for every question of one image; raises when the image cannot be rendered."""
    rgb = _renderer(work, spec)
    size = {"width": work.ref.width, "height": work.ref.height}
    if spec.task is PreTask.VG:
        image = rgb(work.frame)
        return [(label, AskRequest(image, label, Task.VG, **size)) for label in spec.labels]
    if spec.task is PreTask.SEG:  # the segmenter gets the very pixels ClinKD saw
        image = rgb(work.frame)
        return [((label, image), AskRequest(image, label, Task.VG, **size)) for label in spec.labels]
    if spec.task is PreTask.ROC:
        return [(box, AskRequest(rgb(box.frame), "", Task.ROC, box.rect, **size)) for box in work.boxes]
    if spec.task is PreTask.MIA:
        return [(None, AskRequest(rgb(work.frame), "", Task.MIA, **size))]
    raise ValueError(f"task {spec.task.value} does not ask ClinKD")


def prepare_image(index: int, work: ImageWork, spec: PreannotateSpec, key: str) -> PreparedImage:
    """An image's first step, wherever it runs (this thread, or a Ray task): decode and render it
    with the spec's window and build its questions. Never raises: an image that cannot be decoded
    or rendered becomes a failed outcome, so it fails alone."""
    began = time.time()
    ref = work.ref
    try:
        questions = _questions(work, spec)
    except Exception as error:  # noqa: BLE001 - a file that cannot be decoded fails alone
        return unreadable_image(index, ref, key, error)
    nothing_to_ask = None if questions else ImageOutcome(ref.image_id, ref.title, DONE, key=key)
    return PreparedImage(
        index,
        ref,
        work.frame,
        {number: target for number, (target, _) in enumerate(questions)},
        tuple(request for _, request in questions),
        began,
        work.stack if spec.task is PreTask.SEG else None,
        nothing_to_ask,
    )


def unreadable_image(index: int, ref: ImageRef, key: str, error: BaseException) -> PreparedImage:
    """An image that could not be opened, decoded or rendered: nothing to ask, a failure to report."""
    outcome = ImageOutcome(ref.image_id, ref.title, FAILED, f"cannot be opened: {_message(error)}", key=key)
    return PreparedImage(index, ref, ref.n_frames // 2, {}, (), time.time(), outcome=outcome)


def finish_image(item: _Pending, builder: ProposalBuilder, second_model_id: str | None = None) -> ImageOutcome:
    """An image's last step: its answers become proposals with provenance (and, with a second
    opinion, the per-label agreement), or the image fails with the reasons of its failed questions."""
    tokens = sum(r.new_tokens for r in item.answers.values())
    seconds = max(time.time() - item.image.started, 0.0)
    proposals = builder.proposals(item)
    agreement: tuple[LabelAgreement, ...] = ()
    if second_model_id is not None:
        proposals += builder.proposals(item, item.second_answers)
        agreement = _agreement(item)
        proposals, disagreements = _flag_disagreements(proposals, agreement, builder.model_id, second_model_id)
        item.notes.extend(disagreements)
    status, reason = (FAILED, "; ".join(item.errors)) if item.errors else (DONE, "")
    return ImageOutcome(
        item.image.ref.image_id,
        item.image.ref.title,
        status,
        reason,
        item.questions,
        tuple(proposals),
        tokens,
        seconds,
        builder.key,
        tuple(item.notes),
        agreement,
    )


def answer_images(
    images: Iterable[PreparedImage],
    dispatcher: Dispatcher,
    builder: ProposalBuilder,
    *,
    second_model_id: str | None = None,
    cancel: threading.Event | None = None,
    pause: threading.Event | None = None,
) -> Iterator[ImageOutcome]:
    """Ask the prepared images' questions through ``dispatcher`` and yield each image's outcome as its
    last answer arrives (an image decided while preparing, as the next answer arrives or at the end).

    ``images`` is read lazily, as the dispatcher wants questions: locally an image is decoded only
    when its questions are about to be sent. With ``second_model_id`` the dispatcher is a
    ``PairedDispatcher`` (keys ``(key, slot)``). A set ``cancel`` ends it: images in flight are not
    yielded. The local run and a Ray actor both answer through this.
    """
    sides = 2 if second_model_id is not None else 1
    pending: dict[int, _Pending] = {}
    ready: deque[ImageOutcome] = deque()

    def requests() -> Iterator[tuple[Hashable, AskRequest]]:
        for image in images:
            if image.outcome is not None:
                ready.append(image.outcome)
                continue
            pending[image.index] = _Pending(image)
            for number, request in enumerate(image.requests):
                yield (image.index, number), request

    for key, answer in dispatcher.answers(requests(), cancel, pause):
        (index, number), slot = key if sides == 2 else (key, PRIMARY)
        while ready:
            yield ready.popleft()
        item = pending[index]
        if isinstance(answer, Exception):
            who = f" ({second_model_id})" if slot != PRIMARY else ""
            item.errors.append(f"question {number + 1} of {item.questions}{who}: {_message(answer)}")
        else:
            (item.answers if slot == PRIMARY else item.second_answers)[number] = answer
        answered = len(item.answers) + len(item.second_answers) + len(item.errors)
        if answered == item.questions * sides:
            yield finish_image(pending.pop(index), builder, second_model_id)
    if not (cancel is not None and cancel.is_set()):
        while ready:
            yield ready.popleft()


class RunReporter:
    """Counts each finished image into the run's stats, hands it to ``on_image`` and reports progress;
    the local run and the Ray run report through it alike."""

    def __init__(
        self,
        stats: RunStats,
        on_image: Callable[[ImageOutcome], None],
        progress: Callable[[RunProgress], None] | None = None,
    ) -> None:
        self.stats, self.on_image, self.progress = stats, on_image, progress
        self.started = time.perf_counter()

    def __call__(self, outcome: ImageOutcome) -> None:
        stats = self.stats
        stats.add(outcome)
        self.on_image(outcome)
        if self.progress is not None:
            self.progress(
                RunProgress(
                    stats.done + stats.failed,
                    stats.images,
                    stats.questions,
                    stats.failed,
                    stats.new_tokens,
                    time.perf_counter() - self.started,
                )
            )

    def close(self, cancel: threading.Event | None) -> None:
        self.stats.cancelled = cancel is not None and cancel.is_set()
        self.stats.seconds = time.perf_counter() - self.started


def run_preannotation(
    works: Sequence[ImageWork],
    spec: PreannotateSpec,
    dispatcher: Dispatcher,
    *,
    model_id: str,
    on_image: Callable[[ImageOutcome], None],
    run_id: str | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    cancel: threading.Event | None = None,
    pause: threading.Event | None = None,
    segmenter: object | None = None,
    second: Dispatcher | None = None,
    second_model_id: str | None = None,
) -> RunStats:
    """Ask every image's questions through ``dispatcher``; ``on_image`` gets each finished image.

    A ``second`` dispatcher (the second opinion, vg only) answers every question too: its boxes are
    proposed beside the first model's (each with its own model in the provenance), and each image's
    outcome carries the per-label agreement, so the images where the two disagree are reviewed first.

    The ``seg`` task needs a loaded ``segmenter`` (engine.segmentation.Segmenter): each label's
    answer boxes are segmented in this thread as the image's last answer arrives.
    Images finish in the order their last answer arrives. A set ``cancel`` stops the run: images
    already reported are kept, images in flight are not reported (a rerun does them).
    """
    if not spec.task.uses_clinkd:
        raise ValueError("KPL labels run through run_kpl_labels")
    if second is not None:
        second_model_id = second_model_id or "second model"
        spec = replace(spec, second_model=second_model_id)  # refused for a task other than vg
        dispatcher = PairedDispatcher(dispatcher, second)
    stats = RunStats(run_id=run_id or new_run_id(), images=len(works))
    if spec.task is PreTask.SEG:
        if segmenter is None:
            raise ValueError("the seg task needs a segmentation model")
        spec = with_segmenter(spec, segmenter)
    masks = MaskMaker(segmenter) if spec.task is PreTask.SEG else None
    builder = ProposalBuilder(spec, stats.run_id, spec.key(model_id), model_id, masks)
    report = RunReporter(stats, on_image, progress)
    prepared = (prepare_image(index, work, spec, builder.key) for index, work in enumerate(works))
    try:
        for outcome in answer_images(
            prepared,
            dispatcher,
            builder,
            second_model_id=second_model_id if second is not None else None,
            cancel=cancel,
            pause=pause,
        ):
            report(outcome)
    finally:
        report.close(cancel)
    return stats
