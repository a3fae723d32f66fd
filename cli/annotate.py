"""`annotate` sub-command: pre-annotate a whole image set for review, locally or on server replicas.

    python main.py annotate scans/ --task vg --labels "left lung,right lung,heart" \\
        --server http://gpu1:8000 --server http://gpu2:8000 --concurrency 8 --out project.json

    python main.py annotate scans/ --task vg --labels "heart" --model ~/models/clinkd \\
        --second-model ~/models/Qwen2-VL-7B-Instruct --out project.json

    python main.py annotate scans/ --task seg --labels "liver,spleen" --model ~/models/clinkd \\
        --segmentation-model ~/models/medsam-vit-base --out project.json

Every proposal is a model- or classifier-source box, mask or label in review state "needs review"
(pending) with its provenance, written to a ClinLens project file the window opens. The run is
resumable: a rerun skips the images already done with the same model and settings (the run log
``PROJECT.json.preannotation.jsonl`` remembers them) and retries the failed ones. Ctrl-C keeps
what is done (exit 130). With a second opinion (--second-model or --second-server, vg only) both
models answer every question, both models' boxes are proposed (each with its model in the
provenance), and the images where they disagree (a label only one found, or its best pair of
boxes with IoU <= 0.5) go first in the project's image order and the summary. A bad label list
or option exits with 2 before anything runs; a run in which no server answers exits with 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from cli.evaluation import ProgressPrinter
from cli.help import examples
from cli.options import (
    add_model_options,
    add_ray_options,
    add_window_option,
    check_ray,
    fail,
    load_settings,
    ray_session_of,
    require_model,
    server_settings,
    window_arg,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
SAVE_EVERY_S = 2.0


def register(subparsers: Any) -> None:
    """Add the `annotate` sub-command to a main.py argparse sub-parser set."""
    parser = subparsers.add_parser(
        "annotate",
        help="pre-annotate images with ClinKD or KPL into a project file for review",
        description="Run ClinKD (vg: one grounding question per label; roc: 'what is here?' over the existing "
        "boxes; mia: a whole-image analysis note; seg: each label's grounding box handed to a SAM-family "
        "segmenter as its prompt, a mask per label) or KPL (kpl: a label per image from a knowledge base) over "
        "PATHS and write the proposals, pending review, into a ClinLens project file. A rerun skips images done "
        "with the same settings. Several --server URLs spread the questions over replicas.",
        epilog=examples(
            'scans/ --task vg --labels "left lung,heart" --model ~/models/Qwen2-VL-2B-Instruct --out project.json',
            "scans/ --task mia --server http://gpu1:8000 --server http://gpu2:8000 --concurrency 8 --out project.json",
            'ct/ --task seg --labels "liver,spleen" --model ~/models/clinkd --segmentation-model ~/models/medsam '
            "--out project.json",
            'scans/ --task vg --labels "heart" --model ~/models/clinkd --second-model ~/models/Qwen2-VL-7B-Instruct '
            "--out project.json",
            "fundus/ --task kpl --knowledge diabetic-retinopathy --clip ViT-L-14:openai --out project.json",
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images, DICOM files or folders")
    parser.add_argument("--task", required=True, choices=["vg", "roc", "mia", "kpl", "seg"], help="what to propose")
    parser.add_argument("--labels", metavar="A,B,...", help="structures to find (vg, seg), comma-separated")
    parser.add_argument("--knowledge", metavar="NAME", help="knowledge base for kpl (name or JSON file)")
    parser.add_argument("--out", required=True, metavar="PROJECT.json", help="the project file (created or updated)")
    parser.add_argument("--concurrency", type=int, default=8, metavar="N", help="requests in flight per server (8)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="questions per local batch (8)")
    parser.add_argument("--limit", type=int, metavar="N", help="annotate at most N images this time")
    parser.add_argument("--max-new-tokens", type=int, default=80, metavar="N", help="answer length limit (80)")
    add_window_option(parser, "window the model sees (default: as displayed)")
    parser.add_argument(
        "--segmentation-model",
        metavar="DIR",
        help="seg: folder of a SAM-family checkpoint (SAM, MedSAM) that turns each answer box into a mask",
    )
    second = parser.add_mutually_exclusive_group()
    second.add_argument(
        "--second-model",
        metavar="DIR",
        help="vg: a second opinion: another checkpoint folder answers every question too; the images where the "
        "two models disagree are reviewed first",
    )
    second.add_argument(
        "--second-server", metavar="URL", help="vg: the second opinion from an OpenAI-compatible server instead"
    )
    parser.add_argument(
        "--second-server-model", metavar="NAME", help="the second server's model name (default: the only one served)"
    )
    parser.add_argument("--clip", metavar="MODEL", help="CLIP model for kpl (as for `classify --clip`)")
    parser.add_argument("--k", type=int, default=8, help="kpl: descriptions kept per class (8)")
    parser.add_argument(
        "--kpl-iterations", type=int, default=2000, metavar="N", help="kpl: proxy-learning iterations (2000)"
    )
    add_model_options(parser, several_servers=True)
    add_ray_options(
        parser,
        "with --ray: model actors; each opens the --server replicas (--concurrency requests in flight per server) "
        "or loads --model (1)",
    )
    parser.set_defaults(func=run_annotate)


def _spec(args: argparse.Namespace) -> Any:
    from engine.preannotate import PreannotateSpec, PreTask, split_labels

    task = PreTask(args.task)
    labels: list[str] = []
    if task.asks_per_label:
        if args.labels is None:
            raise ValueError(f'--task {task.value} needs --labels "left lung,heart,..."')
        labels = split_labels(args.labels)
    return PreannotateSpec(task, tuple(labels), args.knowledge or "", window_arg(args), args.max_new_tokens)


def _open_replicas(args: argparse.Namespace) -> list[Any]:
    """Every --server that answers; one warning for each that does not."""
    from engine.clinkd import ServerError, open_server

    opened = []
    for url in args.server:
        try:
            opened.append(open_server(server_settings(args, url=url, concurrency=args.concurrency)))
        except ServerError as error:
            print(f"warning: {error} This server is left out.", file=sys.stderr)
    if not opened:
        raise _NoServer("No inference server answers; nothing was run.")
    return opened


class _NoServer(Exception):
    pass


def run_annotate(args: argparse.Namespace) -> int:
    from engine.annotations import AnnotationDocument, DocumentError, load_document, save_document
    from engine.annotations.model import utc_now
    from engine.clinkd import (
        ClinKDError,
        GenerationSettings,
        LocalBackend,
        ModelFolderError,
        QuantizationUnavailable,
        load_model,
    )
    from engine.cluster import ClusterError, ModelRecipe, RayUnavailable, VllmUnavailable
    from engine.imaging import ImageLoadError, open_paths
    from engine.kpl import ClipLoadError, KnowledgeError, resolve_knowledge
    from engine.preannotate import (
        FAILED,
        ImageOutcome,
        ImageWork,
        LabelListError,
        PreTask,
        RunStats,
        append_log,
        apply_outcome,
        done_images,
        load_log,
        log_path,
        log_record,
        new_run_id,
        repair_log,
        review_first,
    )
    from engine.segmentation import SegmenterError, read_segmenter_config

    # --- everything that can be wrong with the input, before an image is decoded or a model loaded
    try:
        spec = _spec(args)
        if args.limit is not None and args.limit < 1:
            raise ValueError("--limit must be at least 1")
        if spec.task is PreTask.KPL:
            if not args.clip:
                raise ValueError("--task kpl needs --clip MODEL (a CLIP model for KPL)")
            resolve_knowledge(spec.knowledge)
        else:
            require_model(args)
        if spec.task is PreTask.SEG:
            if not args.segmentation_model:
                raise ValueError("--task seg needs --segmentation-model DIR (a SAM or MedSAM folder)")
            read_segmenter_config(args.segmentation_model)
        elif args.segmentation_model:
            raise ValueError("--segmentation-model is for --task seg")
        if (args.second_model or args.second_server) and spec.task is not PreTask.VG:
            raise ValueError("--second-model / --second-server compare grounding boxes: they are for --task vg")
        check_ray(args)
        if args.ray is not None and (spec.task is PreTask.SEG or args.second_model or args.second_server):
            raise ValueError("--task seg and a second opinion run locally only: leave out --ray for them")
        out = Path(args.out)
        doc = load_document(out) if out.exists() else AnnotationDocument()
        log = log_path(out)
        history = load_log(log)  # read before the model loads: a damaged log is reported, not a crash
    except LabelListError as error:
        return fail(str(error))
    except (
        ValueError,
        KnowledgeError,
        DocumentError,
        OSError,
        SegmenterError,
        RayUnavailable,
        VllmUnavailable,
    ) as error:
        return fail(str(error))

    opened = open_paths(args.paths)
    started_at = time.perf_counter()
    stats = RunStats(run_id=new_run_id())
    failures_at_open = [
        ImageOutcome(e.path, Path(e.path).name, FAILED, f"cannot be opened: {e.message}") for e in opened.errors
    ]
    works = []
    for stack in opened.stacks:
        work = ImageWork.of(stack)
        image_id = doc.add_image(work.ref)
        work = dataclasses.replace(
            work, ref=dataclasses.replace(work.ref, image_id=image_id), boxes=tuple(doc.boxes(image_id))
        )
        works.append(work)
    if not works and not failures_at_open:
        return fail("no images found in " + ", ".join(args.paths))

    # --- the model
    try:
        if spec.task is PreTask.KPL:
            from engine.kpl import load_clip

            clip = load_clip(args.clip, device=args.device)
            model_id = str(clip.spec)
        elif args.server:
            backends = _open_replicas(args)
            model_id = backends[0].info.model_id
            recipe = ModelRecipe(servers=tuple(b.settings for b in backends), concurrency=args.concurrency)
        elif args.ray is not None:  # each actor loads the checkpoint; the driver only names it
            recipe = ModelRecipe(load=load_settings(args), batch_size=args.batch_size, vllm=args.ray_vllm)
            model_id = recipe.local_model_id
        else:
            backends = [LocalBackend(load_model(load_settings(args)))]
            model_id = backends[0].info.model_id
        second, second_id = _open_second(args)
        if second is not None:
            spec = dataclasses.replace(spec, second_model=second_id)
        segmenter = None
        if spec.task is PreTask.SEG:
            from engine.preannotate import with_segmenter
            from engine.segmentation import load_segmenter

            segmenter = load_segmenter(args.segmentation_model, device=args.device)
            spec = with_segmenter(spec, segmenter)
    except (ModelFolderError, QuantizationUnavailable, ClipLoadError, ValueError, SegmenterError) as error:
        return fail(str(error))
    except (ClinKDError, _NoServer) as error:
        return fail(str(error), EXIT_FAILED)

    repaired = repair_log(log, history)
    if repaired:
        print(f"note: {repaired}", file=sys.stderr)
    key = spec.key(model_id)
    done = done_images(history.records, key)
    todo = [w for w in works if w.ref.image_id not in done]
    skipped = len(works) - len(todo)
    if args.limit is not None:
        todo = todo[: args.limit]
    stats.images = len(todo) + len(failures_at_open)
    print(
        f"{len(todo)} image(s) to annotate ({spec.task.value}) with {model_id}"
        + (f" and a second opinion from {second_id}" if second is not None else "")
        + (f"; {skipped} already done with these settings are skipped" if skipped else ""),
        file=sys.stderr,
    )

    pending_log: list[dict] = []
    last_save = time.perf_counter()
    disagreeing: list[str] = []

    def save() -> None:
        if disagreeing:  # the project lists the images to review first at its top
            doc.order_images(review_first([ref.image_id for ref in doc.images], disagreeing))
        save_document(doc, out)
        append_log(log, pending_log)
        pending_log.clear()

    def on_image(outcome: ImageOutcome) -> None:
        nonlocal last_save
        stats.add(outcome)
        if outcome.disagree:
            disagreeing.append(outcome.image_id)
        if outcome.annotations or outcome.status != FAILED:
            apply_outcome(doc, outcome, stats.run_id)
        pending_log.append(log_record(outcome, key, stats.run_id, model_id, utc_now()))
        if time.perf_counter() - last_save >= SAVE_EVERY_S:
            save()
            last_save = time.perf_counter()

    printer = ProgressPrinter()
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        print(message, file=sys.stderr, flush=True)

    code = EXIT_OK
    try:
        for outcome in failures_at_open:
            on_image(outcome)
        if todo:
            progress = lambda p: printer("annotating", p.images_done, p.images_total)  # noqa: E731
            with ray_session_of(args):
                if spec.task is PreTask.KPL:
                    _run_kpl(args, todo, spec, clip, on_image, stats.run_id, model_id, progress)
                elif args.ray is not None:
                    from engine.preannotate.ray_run import run_preannotation_ray

                    run_preannotation_ray(
                        todo,
                        spec,
                        recipe,
                        model_id=model_id,
                        on_image=on_image,
                        run_id=stats.run_id,
                        progress=progress,
                        actors=args.ray_actors,
                        on_warning=warn,
                    )
                else:
                    from engine.preannotate import LocalDispatcher, ReplicaDispatcher, run_preannotation

                    settings = GenerationSettings(max_new_tokens=spec.max_new_tokens)

                    def dispatcher_of(backends: list[Any]) -> Any:
                        if isinstance(backends[0], LocalBackend):
                            return LocalDispatcher(backends[0], settings, args.batch_size)
                        return ReplicaDispatcher(backends, settings, args.concurrency, on_warning=warn)

                    run_preannotation(
                        todo,
                        spec,
                        dispatcher_of(backends),
                        model_id=model_id,
                        on_image=on_image,
                        run_id=stats.run_id,
                        progress=progress,
                        segmenter=segmenter,
                        second=None if second is None else dispatcher_of([second]),
                        second_model_id=second_id,
                    )
    except KeyboardInterrupt:
        print("\ninterrupted: what is done is kept; rerun the same command to continue.", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except (ClinKDError, ClusterError) as error:  # no replica answers any more, or the Ray run failed
        print(f"error: {error} What is done is kept; rerun to continue.", file=sys.stderr)
        code = EXIT_FAILED
    except (ImageLoadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        code = EXIT_FAILED
    finally:
        try:
            save()
        except OSError as error:
            print(f"error: could not write {out}: {error.strerror or error}", file=sys.stderr)
            code = EXIT_FAILED
    stats.seconds = time.perf_counter() - started_at
    _summary(stats, skipped, model_id, out, log)
    if second is not None:
        _review_first(stats, second_id)
    if code == EXIT_OK and stats.images and stats.failed == stats.images and not skipped:
        code = EXIT_FAILED
    return code


def _run_kpl(
    args: argparse.Namespace, todo: list, spec: Any, clip: Any, on_image: Any, run_id: str, model_id: str, progress: Any
) -> None:
    """kpl labels: every image encoded (in Ray tasks and actors with --ray), KPL learned on this machine."""
    from engine.kpl import FeatureCache, KplSettings, ProxyParams
    from engine.preannotate import run_kpl_labels

    run_kpl_labels(
        todo,
        spec,
        clip,
        KplSettings(k=args.k, params=ProxyParams(iterations=args.kpl_iterations)),
        on_image=on_image,
        run_id=run_id,
        model_id=model_id,
        progress=progress,
        cache=FeatureCache(),
        encoder=_ray_encoder(args),
    )


def _ray_encoder(args: argparse.Namespace) -> Any:
    """With --ray, the pool encoder that spreads CLIP encoding over the cluster; None: local threads."""
    if args.ray is None:
        return None
    from engine.kpl.ray_encode import RayEncoder

    return RayEncoder(args.clip, args.device, args.ray_actors)


def _open_second(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The second opinion's backend and model id (None, None without one): a folder loaded with the
    first model's loading options, or a server with the first server's options but its own URL."""
    from engine.clinkd import LocalBackend, load_model, open_server

    if args.second_model:
        backend = LocalBackend(load_model(dataclasses.replace(load_settings(args), model_dir=args.second_model)))
    elif args.second_server:
        settings = server_settings(args, url=args.second_server, concurrency=args.concurrency)
        backend = open_server(dataclasses.replace(settings, model=args.second_server_model))
    else:
        return None, None
    return backend, backend.info.model_id


def _review_first(stats: Any, second_id: str | None) -> None:
    if stats.disagreeing:
        print(
            f"second opinion ({second_id}): the models disagree on {len(stats.disagreeing)} image(s), listed first "
            "in the project for review: " + ", ".join(stats.disagreeing[:20])
        )
    else:
        print(f"second opinion ({second_id}): the models agree on every image")


def _summary(stats: Any, skipped: int, model_id: str, out: Path, log: Path) -> None:
    rate = f" · {stats.new_tokens / stats.seconds:.1f} tok/s" if stats.new_tokens and stats.seconds > 0 else ""
    print(
        f"images: {stats.done + stats.failed} of {stats.images} annotated"
        + (f" ({skipped} skipped, already done)" if skipped else "")
        + f" · questions: {stats.questions} · boxes proposed: {stats.boxes} · labels proposed: {stats.labels}"
        + (f" · masks proposed: {stats.masks}" if stats.masks or stats.notes else "")
        + f" · failures: {stats.failed} · time: {stats.seconds:.1f} s{rate} · model: {model_id}"
    )
    for title, note in stats.notes[:20]:
        print(f"note: {title}: {note}")
    for title, reason in stats.failures[:20]:
        print(f"failed: {title}: {reason}")
    if len(stats.failures) > 20:
        print(f"... and {len(stats.failures) - 20} more failures (see {log.name})")
    print(f"wrote {out} (open it in the window: python main.py {out}); run log {log.name}")
