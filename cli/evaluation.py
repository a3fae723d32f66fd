"""Evaluation sub-commands: `eval-medgrit` (ClinKD on a Med-GRIT test file) and `eval-kpl-sets`
(KPL on several labelled datasets, beside the authors' log).

`eval-medgrit` answers every question of a Med-GRIT / BiRD test file with a local checkpoint or an
inference server, appending each batch to OUT/predictions.jsonl (a rerun continues where the last
one stopped, and Ctrl-C loses at most one batch), then writes the papers' metrics per modality to
OUT/metrics.{json,csv,md} and prints the Markdown table. Progress goes to stderr. Bad input prints
one sentence on stderr and exits with code 2; a failure while answering exits with 1.

`eval-kpl-sets` runs `eval-kpl`'s evaluation (engine.kpl.evaluate_folder) on each NAME KNOWLEDGE
FOLDER triple with one CLIP model and prints a Markdown table of text-proxy and KPL accuracy per
dataset next to the authors' logged numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cli.help import examples
from cli.kpl import add_clip_options
from cli.options import (
    add_model_options,
    add_ray_options,
    check_ray,
    fail,
    load_settings,
    ray_session_of,
    require_model,
    server_settings,
)
from engine.grounding import DIALECTS

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def register(subparsers: Any) -> None:
    """Add the evaluation sub-commands to a main.py argparse sub-parser set."""
    medgrit = subparsers.add_parser(
        "eval-medgrit",
        help="evaluate ClinKD on a Med-GRIT test file with the papers' metrics",
        description="Answer the questions of a Med-GRIT-270k / BiRD test file (JSON list of {id, conversations}) "
        "and score them as the BiRD/ClinKD scripts do: VG recall@0.5, ROC accuracy, RC/MIA BLEU, METEOR, ROUGE-L, "
        "CIDEr, SPICE, per modality and averaged. Answers are appended to OUT/predictions.jsonl; a rerun skips "
        "what is answered.",
        epilog=examples(
            "--data Test_VG.json --images images/ --model ~/models/ClinKD-7B --out runs/vg",
            "--data Test_MII.json --images images/ --server http://gpu-server:8000 --limit 200",
        ),
    )
    medgrit.add_argument("--data", required=True, metavar="FILE", help="test file, e.g. Test_VG.json")
    medgrit.add_argument("--images", required=True, metavar="DIR", help="folder of the images (<id>.png)")
    medgrit.add_argument("--task", choices=["vg", "roc", "rc", "mia"], help="task (default: from the file name)")
    medgrit.add_argument(
        "--all-turns",
        action="store_true",
        help="evaluate every turn of multi-turn conversations, each after the earlier turns "
        "with their reference answers (default: the first turn only, as the papers do)",
    )
    medgrit.add_argument("--limit", type=int, metavar="N", help="only the first N questions (a quick look)")
    medgrit.add_argument("--out", metavar="DIR", help="output folder (default: eval-<data file name>)")
    medgrit.add_argument("--batch-size", type=int, default=8, metavar="N", help="questions per batch (8)")
    medgrit.add_argument("--concurrency", type=int, default=8, metavar="N", help="requests in flight with --server (8)")
    medgrit.add_argument("--max-new-tokens", type=int, default=80, metavar="N", help="answer length limit (80)")
    medgrit.add_argument(
        "--dialect",
        choices=("auto", *DIALECTS),
        default="auto",
        help="box dialect of answers whose records do not say it (files of other tools or older runs): "
        "auto reads it from the markup; qwen2vl, bbox_2d (Qwen2.5-VL / Qwen3-VL JSON) or box_2d (MedGemma)",
    )
    medgrit.add_argument(
        "--no-java",
        action="store_true",
        help="skip METEOR and SPICE and tokenize in Python (faster; not the papers' numbers)",
    )
    add_model_options(medgrit)
    add_ray_options(medgrit, "with --ray: model actors; each opens --server or loads --model (1)")
    medgrit.set_defaults(func=run_eval_medgrit)

    kpl_sets = subparsers.add_parser(
        "eval-kpl-sets",
        help="KPL accuracy on several labelled datasets, beside the authors' logged numbers",
        description="Each --set NAME KNOWLEDGE FOLDER is a folder with one sub-folder per class (as for eval-kpl) "
        "and its knowledge base. Prints a Markdown table of the text-proxy and KPL accuracy per dataset; "
        "datasets named Montgomery, Shenzhen, IDRiD, Cataract or Malaria get the authors' log numbers beside "
        "them when --clip is OpenAI's ViT-L-14 or ViT-L-14-336.",
        epilog=examples(
            "--clip ViT-L-14:openai --k 20 --set Montgomery tuberculosis-cxr /data/MontgomerySet/val "
            "--set IDRiD diabetic-retinopathy /data/IDRiD/val"
        ),
    )
    kpl_sets.add_argument(
        "--set",
        dest="datasets",
        action="append",
        nargs=3,
        required=True,
        metavar=("NAME", "KNOWLEDGE", "FOLDER"),
        help="one dataset (repeat)",
    )
    add_clip_options(kpl_sets)
    kpl_sets.add_argument("--json", action="store_true", help="print the results as JSON")
    kpl_sets.set_defaults(func=run_eval_kpl_sets)


class ProgressPrinter:
    """Progress on stderr: one rewritten line on a terminal, a line per tenth otherwise (logs)."""

    def __init__(self) -> None:
        self.stage = ""
        self.started = time.monotonic()
        self.first_done: int | None = None
        self.last_tenth = -1

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.stage, self.first_done, self.last_tenth = stage, None, -1
        if self.first_done is None:
            self.first_done, self.started = done, time.monotonic()
        rate = (done - self.first_done) / max(time.monotonic() - self.started, 1e-9)
        eta = f", {(total - done) / rate / 60:.1f} min left" if rate > 0 and done < total else ""
        line = f"{stage}: {done}/{total} ({100 * done / max(total, 1):.0f}%){eta}"
        if sys.stderr.isatty():
            print(f"\r{line}   ", end="\n" if done >= total else "", file=sys.stderr, flush=True)
            return
        tenth = 10 * done // max(total, 1)
        if tenth != self.last_tenth:
            self.last_tenth = tenth
            print(line, file=sys.stderr, flush=True)


def _open_backend(args: argparse.Namespace) -> Any:
    from engine.clinkd import LocalBackend, load_model, open_server

    if args.server:
        return open_server(server_settings(args, concurrency=args.concurrency))
    return LocalBackend(load_model(load_settings(args)))


def _model_on_ray(args: argparse.Namespace) -> tuple[Any, str]:
    """The model recipe the actors follow and the model id: the server is checked (and its model name
    resolved) here; a checkpoint is only named here, each actor loads it."""
    from engine.clinkd import open_server
    from engine.cluster import ModelRecipe

    if args.server:
        backend = open_server(server_settings(args, concurrency=args.concurrency))
        return ModelRecipe(servers=(backend.settings,), concurrency=args.concurrency), backend.info.model_id
    recipe = ModelRecipe(load=load_settings(args), batch_size=args.batch_size, vllm=args.ray_vllm)
    return recipe, recipe.local_model_id


def run_eval_medgrit(args: argparse.Namespace) -> int:
    from engine.clinkd import ClinKDError, GenerationSettings, ModelFolderError, QuantizationUnavailable, Task
    from engine.cluster import ClusterError, RayUnavailable, VllmUnavailable
    from engine.evaluation import (
        PREDICTIONS_FILE,
        TASK_TITLES,
        DatasetError,
        answered_samples,
        load_medgrit,
        pending,
        read_predictions,
        run_medgrit,
        score_task,
        task_markdown,
        write_task_report,
    )

    if args.limit is not None and args.limit < 1:
        return fail("--limit must be at least 1")
    try:
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
        data = load_medgrit(args.data, args.images, Task(args.task) if args.task else None, all_turns=args.all_turns)
        samples = data.samples[: args.limit]
        out = Path(args.out or f"eval-{data.path.stem}")
        todo = pending(samples, out)
    except (DatasetError, ValueError) as exc:
        return fail(str(exc))
    for warning in data.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if todo:
        try:
            require_model(args, f"{len(todo)} questions to answer and no model")
            check_ray(args)
            recipe, model_id = _model_on_ray(args) if args.ray is not None else (None, None)
            backend = _open_backend(args) if recipe is None else None
        except (ModelFolderError, QuantizationUnavailable, ValueError, RayUnavailable, VllmUnavailable) as exc:
            return fail(str(exc))
        except ClinKDError as exc:
            return fail(str(exc), EXIT_FAILED)
        model_id = model_id or backend.info.model_id
        print(f"{len(todo)} of {len(samples)} questions to answer with {model_id}", file=sys.stderr)
        try:
            with ray_session_of(args):
                if recipe is not None:
                    from engine.evaluation.ray_run import run_medgrit_ray

                    summary = run_medgrit_ray(
                        samples,
                        recipe,
                        model_id,
                        out,
                        settings,
                        batch_size=args.batch_size,
                        actors=args.ray_actors,
                        progress=ProgressPrinter(),
                    )
                else:
                    summary = run_medgrit(
                        samples, backend, out, settings, batch_size=args.batch_size, progress=ProgressPrinter()
                    )
        except DatasetError as exc:
            return fail(str(exc))
        except (ClinKDError, ClusterError) as exc:
            return fail(f"{exc} Answers so far are kept in {out / PREDICTIONS_FILE}; rerun to continue.", EXIT_FAILED)
        except KeyboardInterrupt:
            print(
                f"\ninterrupted: answers so far are kept in {out / PREDICTIONS_FILE}; rerun to continue.",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        if summary.repaired:
            print(f"note: {summary.repaired}", file=sys.stderr)
    answers = answered_samples(samples, out, args.dialect)
    records = read_predictions(out / PREDICTIONS_FILE, samples).values()
    models = sorted({str(r.get("model")) for r in records})
    report = score_task(data.task, answers, use_java=not args.no_java)
    title = f"{TASK_TITLES[data.task]}: {data.path.name}, {', '.join(models)}"
    about = {
        "data": str(data.path),
        "images": str(Path(args.images)),
        "samples": len(samples),
        "answered": len(answers),
        "model": models,
        "max_new_tokens": settings.max_new_tokens,
        "turns": "all" if args.all_turns else "first",
        "unreadable_images": sum(1 for r in records if r.get("error")),
    }
    files = write_task_report(report, out, title, about)
    print(task_markdown(report, title))
    if len(answers) < len(samples):
        print(f"note: partial result, {len(answers)} of {len(samples)} questions answered", file=sys.stderr)
    print("wrote " + ", ".join(str(f) for f in files), file=sys.stderr)
    return EXIT_OK


def run_eval_kpl_sets(args: argparse.Namespace) -> int:
    from cli.kpl import prepare_clip
    from engine.evaluation.kpl_sets import (
        KplDataset,
        check_kpl_sets,
        evaluate_kpl_sets,
        kpl_sets_json,
        kpl_sets_markdown,
    )
    from engine.kpl import ClipLoadError, KnowledgeError

    datasets = [KplDataset(name, knowledge, folder) for name, knowledge, folder in args.datasets]
    try:
        check_kpl_sets(datasets)  # every folder and knowledge base, before CLIP loads
        settings, clip, cache = prepare_clip(args)
        results = evaluate_kpl_sets(datasets, clip, settings, cache=cache, progress=ProgressPrinter())
    except (ClipLoadError, KnowledgeError, ValueError) as exc:
        return fail(str(exc))
    for result in results:
        for warning in result.warnings:
            print(f"warning: {result.name}: {warning}", file=sys.stderr)
    if args.json:
        data = {"model": str(clip.spec), "k": settings.k, "datasets": kpl_sets_json(results)}
        print(json.dumps(data, indent=2))
    else:
        print(kpl_sets_markdown(results, str(clip.spec), settings.k))
    return EXIT_OK
