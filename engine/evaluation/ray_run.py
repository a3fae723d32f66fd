"""A Med-GRIT evaluation on a Ray cluster: the local run's per-sample steps, scheduled by Ray Data.

Ray tasks open and render each sample's image (``sample_request``); actors holding the model (a
server client, or the checkpoint) answer batches of questions and make the prediction records
(``answer_records``); the driver appends each batch to the same predictions file as it arrives
(``record_predictions``), so a run stopped halfway resumes either way, and the metrics that
follow are computed from that file exactly as after a local run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from engine.clinkd.generation import GenerationSettings
from engine.cluster import ModelRecipe, pack, require_ray, streamed, unpack
from engine.evaluation.medgrit import MedGritSample
from engine.evaluation.runner import (
    ProgressFn,
    RunSummary,
    answer_records,
    record_predictions,
    sample_request,
    unreadable_record,
)

DECODE_CPUS = 0.5  # as for pre-annotation: a different share from the actors keeps the stages apart


def _prepare(row: dict[str, Any], model_id: str) -> dict[str, bytes]:
    """A Ray task: one sample's image opened and rendered, or its record when it cannot be."""
    sample = unpack(row)
    try:
        return pack((sample, sample_request(sample), None))
    except OSError as error:  # ImageLoadError is an OSError too
        return pack((sample, None, unreadable_record(sample, model_id, error)))


class _Answer:
    """An actor: the model reached once, then a batch of questions per call."""

    def __init__(self, recipe: ModelRecipe, settings: GenerationSettings, model_id: str) -> None:
        self.backend = recipe.backends()[0]
        self.settings, self.model_id = settings, model_id

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        items = [unpack({"item": b}) for b in batch["item"]]
        records = [record for _, request, record in items if request is None]
        asked = [(sample, request) for sample, request, _ in items if request is not None]
        records += answer_records(self.backend, self.settings, asked, self.model_id)
        return {"item": [pack(record)["item"] for record in records]}


def run_medgrit_ray(
    samples: Sequence[MedGritSample],
    recipe: ModelRecipe,
    model_id: str,
    out_dir: str | os.PathLike[str],
    settings: GenerationSettings = GenerationSettings(),
    *,
    batch_size: int = 8,
    actors: int = 1,
    progress: ProgressFn | None = None,
) -> RunSummary:
    """``run_medgrit`` on the Ray cluster this process is connected to (``ray_session``)."""
    if batch_size < 1 or actors < 1:
        raise ValueError("batch_size and actors must be >= 1")
    ray = require_ray()

    def batches(todo: list[MedGritSample]) -> Iterator[list[dict]]:
        if not todo:
            return
        cpus = ray.cluster_resources().get("CPU", 1)
        dataset = (
            ray.data.from_items([pack(s) for s in todo], override_num_blocks=min(len(todo), max(1, int(4 * cpus))))
            .map(_prepare, fn_kwargs={"model_id": model_id}, num_cpus=DECODE_CPUS)
            .map_batches(
                _Answer,
                fn_constructor_kwargs={"recipe": recipe, "settings": settings, "model_id": model_id},
                batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=1 if recipe.load is not None else 0.25,
                num_gpus=recipe.actor_gpus(ray.cluster_resources().get("GPU", 0)),
            )
        )
        lines: list[dict] = []
        with streamed(dataset) as records:
            for record in records:
                lines.append(record)
                if len(lines) == batch_size:
                    yield lines
                    lines = []
        if lines:
            yield lines

    return record_predictions(samples, model_id, out_dir, batches, progress=progress)
