"""Pre-annotation on a Ray cluster: the local run's per-image steps, scheduled by Ray Data.

Stage 1 runs as Ray tasks on every CPU of the cluster: each image is re-opened from its paths
(the images live on a filesystem every node mounts at the same path), decoded, rendered with the
run's window and turned into questions (``prepare_image``). Stage 2 runs in a pool of actors,
each holding the model the way the local run does (``ModelRecipe``: the replicas with failover, a
checkpoint in batches): the questions are answered and the answers become proposals
(``answer_images``). The driver receives each image's outcome as it arrives and hands it to
``on_image``, which writes the same run log, project and summary as locally: a run stopped halfway
(Ctrl-C, a lost node) resumes from the log either way, and redoes nothing already done.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

from engine.annotations import ImageRef
from engine.clinkd.generation import GenerationSettings
from engine.cluster import ModelRecipe, pack, require_ray, streamed, unpack
from engine.imaging import ImageStack, open_paths
from engine.preannotate.job import (
    ImageWork,
    ProposalBuilder,
    RunReporter,
    answer_images,
    prepare_image,
    unreadable_image,
)
from engine.preannotate.outcome import ImageOutcome, RunProgress, RunStats, new_run_id
from engine.preannotate.spec import PreannotateSpec, PreTask

CALL_WINDOWS = 8
DECODE_CPUS = 0.5  # a decoding task; the actors reserve a different share, so Ray keeps the stages apart


def reopen(ref: ImageRef) -> ImageStack:
    """The image a ref describes, opened again from its paths (on whichever node runs the task)."""
    opened = open_paths(list(ref.paths))
    if opened.stacks:
        return opened.stacks[0]
    raise OSError(opened.errors[0].message if opened.errors else f"{ref.title}: no image at {ref.paths[0]}")


def _prepare(row: dict[str, Any], spec: PreannotateSpec, key: str) -> dict[str, bytes]:
    """Stage 1, one image (a Ray task)."""
    index, ref, boxes = unpack(row)
    try:
        work = ImageWork(reopen(ref), ref, boxes)
    except Exception as error:  # noqa: BLE001 - an image that cannot be opened fails alone
        return pack(unreadable_image(index, ref, key, error))
    return pack(prepare_image(index, work, spec, key))


class _Answer:
    """Stage 2 (an actor): the model reached once per actor, then a batch of prepared images per call."""

    def __init__(self, recipe: ModelRecipe, spec: PreannotateSpec, run_id: str, model_id: str) -> None:
        self.warnings: list[str] = []
        settings = GenerationSettings(max_new_tokens=spec.max_new_tokens)
        self.dispatcher = recipe.dispatcher(settings, on_warning=self.warnings.append)
        self.builder = ProposalBuilder(spec, run_id, spec.key(model_id), model_id)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        outcomes = list(answer_images((unpack({"item": b}) for b in batch["item"]), self.dispatcher, self.builder))
        warnings = [tuple(self.warnings)] + [()] * (len(outcomes) - 1)  # the replicas taken out meanwhile
        self.warnings.clear()
        return {"item": [pack(pair)["item"] for pair in zip(outcomes, warnings, strict=True)]}


def run_preannotation_ray(
    works: Sequence[ImageWork],
    spec: PreannotateSpec,
    recipe: ModelRecipe,
    *,
    model_id: str,
    on_image: Callable[[ImageOutcome], None],
    run_id: str | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    cancel: threading.Event | None = None,
    actors: int = 1,
    images_per_call: int | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> RunStats:
    """``run_preannotation`` on the Ray cluster this process is connected to (``ray_session``).

    ``actors`` model actors answer (each opens the servers, or loads the checkpoint, once), taking
    ``images_per_call`` images per call (by default about eight times the questions it keeps in
    flight). Images finish in the order their outcomes arrive; a set ``cancel`` stops the run between outcomes
    (the images already reported are kept; the others are done by a rerun).
    """
    if spec.task is PreTask.SEG or spec.second_model:
        raise ValueError(
            "The seg task and a second opinion run locally only: leave out --ray for them (the vg, roc and mia "
            "tasks and kpl labels run on Ray)."
        )
    if not spec.task.uses_clinkd:
        raise ValueError("KPL labels run through run_kpl_labels")
    if actors < 1:
        raise ValueError("actors must be >= 1")
    ray = require_ray()
    stats = RunStats(run_id=run_id or new_run_id(), images=len(works))
    report = RunReporter(stats, on_image, progress)
    key = spec.key(model_id)
    if not works:
        report.close(cancel)
        return stats
    in_flight = recipe.batch_size if recipe.load is not None else recipe.concurrency * len(recipe.servers)
    questions = max(1, spec.questions_per_image(max((len(w.boxes) for w in works), default=1)))
    # Each actor call fills its window of requests in flight and drains it at the end: a call of about
    # eight windows keeps the servers busy most of the time, at the cost of outcomes arriving in steps.
    per_call = images_per_call or max(1, math.ceil(CALL_WINDOWS * in_flight / questions))
    rows = [pack((index, work.ref, tuple(work.boxes))) for index, work in enumerate(works)]
    dataset = (
        ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / per_call))
        .map(_prepare, fn_kwargs={"spec": spec, "key": key}, num_cpus=DECODE_CPUS)
        .map_batches(
            _Answer,
            fn_constructor_kwargs={"recipe": recipe, "spec": spec, "run_id": stats.run_id, "model_id": model_id},
            batch_size=per_call,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1 if recipe.load is not None else 0.25,
            num_gpus=recipe.actor_gpus(ray.cluster_resources().get("GPU", 0)),
        )
    )
    try:
        with streamed(dataset) as outcomes:
            for outcome, warnings in outcomes:
                for warning in warnings if on_warning is not None else ():
                    on_warning(warning)
                report(outcome)
                if cancel is not None and cancel.is_set():
                    break
    finally:
        report.close(cancel)
    return stats
