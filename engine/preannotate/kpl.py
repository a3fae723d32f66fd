"""KPL labels as proposals: the whole image set classified together (KPL is transductive), one
classifier-source image label per image, pending review, with the descriptions that decided it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from engine.annotations import Source
from engine.kpl import FeatureCache, KplSettings, Pool, classify_pool, resolve_knowledge
from engine.kpl.images import PoolEncoder
from engine.preannotate.job import ImageWork, ProposalBuilder
from engine.preannotate.outcome import DONE, FAILED, ImageOutcome, RunProgress, RunStats, new_run_id
from engine.preannotate.spec import PreannotateSpec, PreTask


def run_kpl_labels(
    works: Sequence[ImageWork],
    spec: PreannotateSpec,
    clip: object,
    settings: KplSettings = KplSettings(),
    *,
    on_image: Callable[[ImageOutcome], None],
    model_id: str | None = None,
    run_id: str | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    cancel: threading.Event | None = None,
    cache: FeatureCache | None = None,
    encoder: PoolEncoder | None = None,
) -> RunStats:
    """Classify each image's middle frame with ``spec.knowledge``; ``on_image`` gets each outcome.

    Raises ``engine.kpl.Cancelled`` when cancelled (KPL decides on the pool as a whole: nothing
    partial is proposed).
    """
    if spec.task is not PreTask.KPL:
        raise ValueError("run_kpl_labels runs the kpl task")
    started = time.perf_counter()
    stats = RunStats(run_id=run_id or new_run_id(), images=len(works))
    model_id = model_id or str(getattr(clip, "spec", "clip"))
    builder = ProposalBuilder(spec, stats.run_id, spec.key(model_id), model_id)
    kb = resolve_knowledge(spec.knowledge)
    pool = Pool.from_frames([(w.stack, w.frame) for w in works], window=spec.window)
    result = classify_pool(pool, kb, clip, settings, cache=cache, cancel=cancel, encoder=encoder)
    by_index = {r.image.index: r for r in result.images}
    failed = {error.path: error.message for error in result.errors}
    elapsed = time.perf_counter() - started
    for index, work in enumerate(works):
        found = by_index.get(index)
        if found is None:
            reason = next((m for p, m in failed.items() if p in work.ref.paths), "could not be classified")
            outcome = ImageOutcome(
                work.ref.image_id, work.ref.title, FAILED, f"cannot be opened: {reason}", key=builder.key
            )
        else:
            evidence = "; ".join(f"{e.description} ({e.relevance:.2f})" for e in found.evidence)
            scores = ", ".join(f"{c} {s:.2f}" for c, s in zip(result.classes, found.scores, strict=True))
            provenance = builder.provenance(
                f"KPL {result.method} over {len(result.images)} images, knowledge {result.knowledge}",
                f"{found.label} ({scores})",
            )
            label = builder.image_label(found.label, evidence, provenance, source=Source.CLASSIFIER, score=found.score)
            outcome = ImageOutcome(
                work.ref.image_id,
                work.ref.title,
                DONE,
                questions=1,
                annotations=(label,),
                seconds=elapsed / max(len(works), 1),
                key=builder.key,
            )
        stats.add(outcome)
        on_image(outcome)
        if progress is not None:
            progress(
                RunProgress(
                    stats.done + stats.failed,
                    stats.images,
                    stats.questions,
                    stats.failed,
                    0,
                    time.perf_counter() - started,
                )
            )
    stats.seconds = time.perf_counter() - started
    return stats
