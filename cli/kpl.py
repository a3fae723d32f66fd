"""KPL sub-commands: `classify`, `eval-kpl`, `knowledge` and `generate-knowledge`.

`classify` runs KPL over every image given (one pool: the paper's transductive setting; a single
image falls back to the text proxy and says so). `eval-kpl` scores a folder-per-class layout.
`knowledge` lists or checks knowledge bases; `generate-knowledge` writes one with a local LLM.
Bad input prints one sentence on stderr and exits with code 2; torch loads only when needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cli.help import examples
from cli.options import (
    add_device_option,
    add_ray_options,
    add_window_option,
    check_ray,
    fail,
    ray_session_of,
    window_arg,
)

EXIT_OK = 0
EXIT_FAILED = 1
CLIP_ENV = "CLINLENS_KPL_CLIP"


def register(subparsers: Any) -> None:
    """Add the KPL sub-commands to a main.py argparse sub-parser set."""
    classify = subparsers.add_parser(
        "classify",
        help="zero-shot KPL classification of images with a knowledge base",
        description="Classify every frame of the given files and folders together (KPL learns from the "
        "whole pool). Prints per image the label, its score and the knowledge descriptions that drove it. "
        "DICOM is windowed as displayed unless --window or --preset says otherwise.",
        epilog=examples(
            "/data/cxr --knowledge tuberculosis-cxr --clip ViT-L-14:openai",
            "/data/ct/series1 --knowledge my-task.json --clip local-dir:/models/clip --preset Lung --json",
        ),
    )
    classify.add_argument("paths", nargs="+", help="image files or folders (DICOM, PNG, JPEG, TIFF)")
    _model_options(classify)
    add_window_option(classify, "window for grayscale images (default: as displayed)")
    classify.add_argument("--top", type=int, default=3, metavar="N", help="descriptions shown per image (3)")
    classify.add_argument("--json", action="store_true", help="print the whole result as JSON")
    add_ray_options(
        classify,
        "with --ray: CLIP actors encoding the images (each loads --clip); KPL learns here, from the whole pool (1)",
        engine=False,
    )
    classify.set_defaults(func=run_classify)

    evaluate = subparsers.add_parser(
        "eval-kpl",
        help="KPL accuracy on a folder with one sub-folder per class",
        description="Sub-folder names are class names (or aliases) of the knowledge base. Prints the accuracy "
        "of the text proxy and of the chosen method, and confusion matrices (rows: truth).",
        epilog=examples("/data/shenzhen/val --knowledge tuberculosis-cxr --clip ViT-L-14-336:openai --k 35"),
    )
    evaluate.add_argument("folder", help="folder with one sub-folder of images per class")
    _model_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(func=run_eval)

    knowledge = subparsers.add_parser(
        "knowledge",
        help="list KPL knowledge bases, or check one",
        description="Without argument: list the bundled and user knowledge bases. With a name or a .json "
        "file: validate it and print its classes.",
        epilog=examples("", "tuberculosis-cxr", "my-task.json"),
    )
    knowledge.add_argument("name", nargs="?", help="knowledge base name or .json file to check")
    knowledge.set_defaults(func=run_knowledge)

    generate = subparsers.add_parser(
        "generate-knowledge",
        help="write a knowledge base with a local instruction-tuned language model",
        description="Asks the model, once per class, the KPL paper's question ('what are useful visual "
        "features for distinguishing ...'), parses the numbered lists and writes a knowledge base JSON "
        "with the raw replies in its provenance. Offline: the model must be a local transformers folder.",
        epilog=examples(
            "--llm /models/Qwen2.5-7B-Instruct --out my-cells.json --classes-from malaria-cells",
            "--llm /models/Qwen2.5-7B-Instruct --out cxr.json --class normal --class pneumonia "
            '--task "Pneumonia on chest X-ray" --modality "chest X-ray"',
        ),
    )
    generate.add_argument("--llm", required=True, metavar="FOLDER", help="local transformers causal LM folder")
    generate.add_argument("--out", required=True, metavar="FILE.json", help="knowledge base file to write")
    names = generate.add_mutually_exclusive_group(required=True)
    names.add_argument("--class", dest="classes", action="append", metavar="NAME", help="a class name (repeat)")
    names.add_argument("--classes-from", metavar="KNOWLEDGE", help="take the class names of an existing base")
    generate.add_argument("--task", help="task name (default: from --classes-from, else the file name)")
    generate.add_argument("--modality", default="medical image", help="imaging modality (default: medical image)")
    generate.add_argument("--max-new-tokens", type=int, default=1024, metavar="N", help="reply length limit (1024)")
    generate.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy (0)")
    add_device_option(generate)
    generate.set_defaults(func=run_generate)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--knowledge", required=True, metavar="NAME_OR_FILE", help="knowledge base name or .json file")
    add_clip_options(parser)


def add_clip_options(parser: argparse.ArgumentParser) -> None:
    """The CLIP model and KPL settings options (everything but --knowledge); also used by eval-kpl-sets."""
    parser.add_argument(
        "--clip",
        default=os.environ.get(CLIP_ENV),
        metavar="MODEL",
        help="NAME:TAG (ViT-L-14:openai), NAME:/path/checkpoint, local-dir:/path/folder or hf-hub:org/repo "
        f"(default: ${CLIP_ENV})",
    )
    parser.add_argument("--k", type=int, default=8, help="descriptions kept per class (8)")
    parser.add_argument(
        "--method",
        choices=["kpl", "text", "inmap"],
        default="kpl",
        help="kpl (default), text (text proxy only), inmap (balanced Sinkhorn)",
    )
    parser.add_argument("--template", help="prompt template with {class} and {description}")
    parser.add_argument("--iterations", type=int, default=2000, help="proxy-learning iterations (2000)")
    parser.add_argument("--ot-iterations", type=int, default=20, help="transport updates (20)")
    parser.add_argument("--lr", type=float, default=10.0, help="proxy learning rate (10)")
    parser.add_argument("--alpha", type=float, default=0.6, help="confidence for one-hot pseudo-labels (0.6)")
    parser.add_argument("--tau-text", type=float, default=0.01, help="text temperature (0.01)")
    parser.add_argument("--tau-image", type=float, default=0.04, help="proxy temperature (0.04)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per CLIP batch (32)")
    add_device_option(parser)
    parser.add_argument("--allow-download", action="store_true", help="let open_clip download missing weights")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")


def _progress(stage: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        end = "\n" if done >= total else ""
        print(f"\r{stage}: {done}/{total}", end=end, file=sys.stderr, flush=True)


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """(knowledge base, settings, clip, cache) from the shared options; raises on bad input."""
    from engine.kpl import resolve_knowledge

    _require_clip(args)
    kb = resolve_knowledge(args.knowledge)
    return (kb, *prepare_clip(args))


def _require_clip(args: argparse.Namespace) -> None:
    if not args.clip:
        raise ValueError(f"no CLIP model: give --clip (e.g. ViT-L-14:openai) or set ${CLIP_ENV}")


def prepare_clip(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(settings, clip, cache) from the add_clip_options options; raises on bad input."""
    from engine.kpl import DEFAULT_TEMPLATE, FeatureCache, KplSettings, ProxyParams, load_clip

    _require_clip(args)
    params = ProxyParams(
        tau_text=args.tau_text,
        tau_image=args.tau_image,
        alpha=args.alpha,
        lr=args.lr,
        iterations=args.iterations,
        ot_iterations=args.ot_iterations,
    )
    settings = KplSettings(
        k=args.k,
        method=args.method,
        template=args.template or DEFAULT_TEMPLATE,
        params=params,
        batch_size=args.batch_size,
    )
    clip = load_clip(args.clip, device=args.device, allow_download=args.allow_download)
    return settings, clip, None if args.no_cache else FeatureCache()


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    from engine.kpl import ClipLoadError, KnowledgeError

    return (ClipLoadError, KnowledgeError, ValueError)


def run_classify(args: argparse.Namespace) -> int:
    from engine.cluster import ClusterError, RayUnavailable
    from engine.kpl import Pool, classify_pool

    try:
        window = window_arg(args)
        check_ray(args)
        kb, settings, clip, cache = _prepare(args)
        pool = Pool.from_paths(args.paths, window)
        for error in pool.errors:
            print(f"warning: {error.message}", file=sys.stderr)
        if not len(pool):
            return fail("no images found in " + ", ".join(args.paths))
        encoder = None
        if args.ray is not None:
            from engine.kpl.ray_encode import RayEncoder

            encoder = RayEncoder(args.clip, args.device, args.ray_actors, args.allow_download)
        with ray_session_of(args):
            result = classify_pool(pool, kb, clip, settings, cache=cache, progress=_progress, encoder=encoder)
    except (*_bad_input_errors(), RayUnavailable) as exc:
        return fail(str(exc))
    except ClusterError as exc:
        return fail(str(exc), EXIT_FAILED)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return EXIT_OK
    print(f"{len(result.images)} image(s), {kb.task}; method {result.method}, k={settings.k}, CLIP {result.model}")
    if result.note:
        print(f"note: {result.note}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for r in result.images:
        print(f"{r.image.title}\t{r.label}\t{r.score:.3f}")
        for e in r.evidence[: max(args.top, 0)]:
            print(f"    {e.relevance:.3f}  {e.description}")
    print(f"features: {result.cache_hits} from cache, {result.cache_misses} encoded")
    return EXIT_OK


def _matrix(classes: tuple[str, ...], matrix: Any) -> str:
    width = max(len(c) for c in classes)
    cell = max(6, len(str(int(matrix.max()))) + 1)
    head = " " * (width + 2) + "".join(f"{i:>{cell}}" for i in range(len(classes)))
    rows = [
        f"{i:>2} {c:<{width}}" + "".join(f"{int(v):>{cell}}" for v in row)
        for i, (c, row) in enumerate(zip(classes, matrix, strict=True))
    ]
    return "\n".join([head, *rows])


def run_eval(args: argparse.Namespace) -> int:
    from engine.kpl import evaluate_folder

    try:
        kb, settings, clip, cache = _prepare(args)
        report = evaluate_folder(args.folder, kb, clip, settings, cache=cache, progress=_progress)
    except _bad_input_errors() as exc:
        return fail(str(exc))
    for error in report.result.errors:
        print(f"warning: {error.message}", file=sys.stderr)
    absent = [c for c in report.classes if c not in report.folders]
    if absent:
        print(
            f"warning: no folder for {', '.join(absent)}; KPL still spreads the pool over every class", file=sys.stderr
        )
    if args.json:
        print(
            json.dumps(
                {
                    "classes": report.classes,
                    "folders": report.folders,
                    "images": int(report.truth.size),
                    "method": report.result.method,
                    "text_accuracy": report.text_accuracy,
                    "accuracy": report.accuracy,
                    "text_confusion": report.text_confusion.tolist(),
                    "confusion": report.confusion.tolist(),
                    "settings": report.result.settings,
                    "model": report.result.model,
                },
                indent=2,
            )
        )
        return EXIT_OK
    print(
        f"{report.truth.size} images in {len(report.folders)} class folders; CLIP {report.result.model}, k={settings.k}"
    )
    print(f"text proxy accuracy: {report.text_accuracy:.4f}")
    print(f"{report.result.method} accuracy: {report.accuracy:.4f}")
    print("\nconfusion (rows: truth, columns: prediction), text proxy:")
    print(_matrix(report.classes, report.text_confusion))
    print(f"\nconfusion, {report.result.method}:")
    print(_matrix(report.classes, report.confusion))
    return EXIT_OK


def run_knowledge(args: argparse.Namespace) -> int:
    from engine.kpl.knowledge import KnowledgeError, available_knowledge, load_knowledge, resolve_knowledge

    try:
        if args.name is None:
            for path in available_knowledge():
                kb = load_knowledge(path)
                print(f"{kb.name}\t{len(kb.classes)} classes\t{kb.task}\t{path}")
            return EXIT_OK
        kb = resolve_knowledge(args.name)
    except KnowledgeError as exc:
        return fail(str(exc))
    print(f"{kb.name}: {kb.task} ({kb.modality}), {kb.path}")
    for c in kb.classes:
        aliases = f" (also: {', '.join(c.aliases)})" if c.aliases else ""
        print(f"  {c.name}{aliases}: {len(c.descriptions)} descriptions")
    print(f"source: {kb.provenance.get('source')}")
    return EXIT_OK


def run_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.files import write_json_atomic
    from engine.kpl.generate import LanguageModelError, build_knowledge, generate_replies, load_language_model
    from engine.kpl.knowledge import KnowledgeError, resolve_knowledge, save_knowledge

    out = Path(args.out)
    try:
        if args.classes_from:
            base = resolve_knowledge(args.classes_from)
            classes, task, modality = list(base.class_names), args.task or base.task, base.modality
        else:
            classes, task, modality = args.classes, args.task or out.stem, args.modality
        if len(classes) < 2:
            return fail("give at least two classes")
        model, tokenizer = load_language_model(args.llm, args.device)
        replies = generate_replies(
            model,
            tokenizer,
            classes,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            progress=_progress,
        )
    except (KnowledgeError, LanguageModelError) as exc:
        return fail(str(exc))
    settings = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}
    try:
        kb = build_knowledge(out.stem, task, modality, replies, model_name=Path(args.llm).name, settings=settings)
    except KnowledgeError as exc:
        raw = out.with_suffix(".replies.json")
        write_json_atomic(raw, {r.class_name: r.reply for r in replies})
        return fail(f"{exc} (all replies saved to {raw})")
    save_knowledge(kb, out)
    counts = ", ".join(f"{c.name}: {len(c.descriptions)}" for c in kb.classes)
    print(f"wrote {out} ({counts} descriptions); review them before use")
    return EXIT_OK
