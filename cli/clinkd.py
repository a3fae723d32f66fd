"""`ask` sub-command: a grounded question to ClinKD about one displayed frame.

The model sees exactly what the viewer shows: the frame rendered through the display pipeline
in the chosen window (engine.imaging.render_rgb). Boxes are given and printed in pixels of the
original image. Bad input (model folder, image, options) prints one sentence on stderr and exits
with code 2; a failure while answering exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cli.help import examples
from cli.imaging import window_arg
from engine.imaging import ImageLoadError, open_image, render_rgb

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
MODEL_ENV = "CLINLENS_CLINKD_MODEL"


def register(subparsers: Any) -> None:
    """Add the `ask` sub-command to a main.py argparse sub-parser set."""
    ask = subparsers.add_parser(
        "ask",
        help="ask ClinKD (a Qwen2-VL checkpoint) a question about an image",
        description="Answer a question about one frame as displayed. Tasks: vg (find QUESTION, e.g. "
        "'left lung'), roc (what is in --box), rc (describe --box), mia (whole image). Boxes are "
        "x1,y1,x2,y2 in pixels of the original image. With --server URL the question goes to a vLLM or "
        "SGLang server instead of a local checkpoint. Exit codes: 0 answered, 2 bad input, 1 failure while "
        "answering.",
        epilog=examples(
            'chest.png "left lung" --task vg --stream --model ~/models/Qwen2-VL-2B-Instruct',
            "ct/ --frame 40 --preset Lung --task roc --box 120,88,190,150",
            'ct.dcm "Is there a nodule?" --best-of 5 --json',
            'chest.png "left lung" --task vg --server http://gpu-server:8000 --stream',
        ),
    )
    ask.add_argument("image", help="image file (DICOM, PNG, JPEG, TIFF), or a folder (its first series)")
    ask.add_argument("question", nargs="?", default="", help="the question (for vg: what to find)")
    ask.add_argument("--task", choices=["vg", "roc", "rc", "mia"], help="Med-GRIT task (default: free question)")
    ask.add_argument("--box", metavar="X1,Y1,X2,Y2", help="region in pixels of the original image")
    ask.add_argument("--frame", type=int, default=1, help="1-based frame number (default 1)")
    choice = ask.add_mutually_exclusive_group()
    choice.add_argument("--window", metavar="CENTER,WIDTH", help="window the model sees (default: as displayed)")
    choice.add_argument("--preset", metavar="NAME", help="window preset name or key, e.g. Lung or 2")
    ask.add_argument(
        "--history",
        metavar="FILE",
        help="earlier turns: a conversation exported from the Ask panel (follow-up question)",
    )
    ask.add_argument(
        "--history-tokens",
        type=int,
        default=1024,
        metavar="N",
        help="token budget of the earlier turns; the oldest are dropped beyond it (1024)",
    )
    ask.add_argument("--best-of", type=int, default=1, metavar="N", help="SASG: sample N answers, keep the consensus")
    ask.add_argument("--temperature", type=float, default=0.7, help="sampling temperature for --best-of (0.7)")
    ask.add_argument("--max-new-tokens", type=int, default=80, metavar="N", help="answer length limit (80)")
    add_model_options(ask)
    ask.add_argument("--stream", action="store_true", help="print the answer while it is generated")
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ask.set_defaults(func=run_ask)


def add_model_options(parser: argparse.ArgumentParser, *, several_servers: bool = False) -> None:
    """Where answers come from: a local checkpoint (--model) or an inference server (--server).

    Shared by every command that asks ClinKD (ask, eval-medgrit, annotate); with
    ``several_servers`` --server may be repeated (replicas) and ``args.server`` is a list.
    """
    parser.add_argument(
        "--model", default=os.environ.get(MODEL_ENV), help=f"Qwen2-VL checkpoint folder (default: ${MODEL_ENV})"
    )
    if several_servers:
        parser.add_argument(
            "--server",
            metavar="URL",
            action="append",
            help="OpenAI-compatible server (vLLM, SGLang) instead of --model; repeat it for "
            "replicas: questions are spread over them",
        )
    else:
        parser.add_argument(
            "--server",
            metavar="URL",
            help="OpenAI-compatible server (vLLM, SGLang) instead of --model, e.g. http://gpu:8000",
        )
    parser.add_argument("--server-model", metavar="NAME", help="served model name (default: the only one served)")
    parser.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the server's API key")
    parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for the server's next token (120)"
    )
    parser.add_argument(
        "--min-pixels",
        type=int,
        default=512 * 512,
        metavar="N",
        help="image pixel floor (512*512); with --server, what the server uses",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=1024 * 1024,
        metavar="N",
        help="image pixel cap (1024*1024); with --server, what the server uses",
    )
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float16", "float32"],
        help="weight precision (default: bf16 on GPU, fp32 on CPU)",
    )
    parser.add_argument(
        "--device", default="auto", help="where the model runs: auto (the GPU when present), cpu, cuda, cuda:N"
    )
    parser.add_argument("--quantization", choices=["8bit", "4bit"], help="bitsandbytes loading (CUDA only)")
    parser.add_argument(
        "--mcg-rope",
        choices=["auto", "on", "off"],
        default="auto",
        help="MCG-RoPE positions: as the checkpoint says (auto), forced on or off",
    )


def load_settings(args: argparse.Namespace) -> Any:
    """LoadSettings from the --model options."""
    from engine.clinkd import LoadSettings

    return LoadSettings(
        model_dir=args.model,
        dtype=args.dtype,
        device=args.device,
        quantization=args.quantization,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        mcg_rope={"auto": None, "on": True, "off": False}[args.mcg_rope],
    )


def server_settings(args: argparse.Namespace) -> Any:
    """ServerSettings from the --server options; raises ValueError on a bad URL or a missing key."""
    from engine.clinkd import ServerSettings

    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ValueError(f"--api-key-env names {args.api_key_env}, but that environment variable is not set.")
    return ServerSettings(
        url=args.server,
        model=args.server_model,
        api_key=api_key,
        timeout_s=args.timeout,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
    )


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _box_arg(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--box expects X1,Y1,X2,Y2 in pixels, got {text!r}.") from None
    return x1, y1, x2, y2


def _print_text(result: Any, *, with_text: bool) -> None:
    if with_text:
        print(result.text)
    for i, box in enumerate(result.boxes, 1):
        label = f" {box.phrase}" if box.phrase else ""
        grid = ",".join(f"{v:g}" for v in box.grid)
        print(f"box {i}:{label} {box.x1:.1f},{box.y1:.1f},{box.x2:.1f},{box.y2:.1f} px (grid {grid})")
    for issue in result.issues:
        print(f"note: {issue}", file=sys.stderr)


def run_ask(args: argparse.Namespace) -> int:
    from engine.clinkd import (
        AskRequest,
        ClinKDError,
        GenerationSettings,
        HistoryFileError,
        ModelFolderError,
        QuantizationUnavailable,
        Task,
        ask,
        build_prompt,
        load_model,
        open_server,
        read_checkpoint_config,
        read_history_file,
    )

    if not args.model and not args.server:
        return _fail(f"no model: pass --model DIR (or set {MODEL_ENV}) or --server URL.")
    try:
        box = _box_arg(args.box)
        window = window_arg(args)
        settings = GenerationSettings(
            max_new_tokens=args.max_new_tokens,
            best_of=args.best_of,
            temperature=args.temperature,
            history_tokens=args.history_tokens,
        )
        if args.server:
            server = server_settings(args)
        else:
            load = load_settings(args)
            read_checkpoint_config(args.model)  # a wrong folder fails before the image is decoded
        stack = open_image(args.image)
        if not 1 <= args.frame <= stack.n_frames:
            return _fail(f"--frame {args.frame} is out of range: {stack.title} has {stack.n_frames} frame(s).")
        rgb = render_rgb(stack.frame(args.frame - 1), window)
        task = Task(args.task) if args.task else Task.FREE
        history = read_history_file(args.history, stack.columns, stack.rows) if args.history else ()
        request = AskRequest(rgb, args.question, task, box, width=stack.columns, height=stack.rows, history=history)
        build_prompt(task, args.question, box, stack.columns, stack.rows)  # bad task input fails before loading
        if args.server:
            backend = open_server(server)
        else:
            clinkd = load_model(load)
    except (ModelFolderError, QuantizationUnavailable, ImageLoadError, HistoryFileError, ValueError) as exc:
        return _fail(str(exc))
    except ClinKDError as exc:  # the server cannot be reached included
        return _fail(str(exc), EXIT_FAILED)
    if history:
        print(f"history: {len(history)} earlier turn(s) from {args.history}", file=sys.stderr)

    stream = sys.stderr if args.json else sys.stdout

    def on_text(chunk: str) -> None:
        stream.write(chunk)
        stream.flush()

    try:
        if args.server:
            result = backend.ask(request, settings, on_text=on_text if args.stream else None)
        else:
            result = ask(clinkd, request, settings, on_text=on_text if args.stream else None)
    except ClinKDError as exc:  # out of memory and server failures included
        return _fail(str(exc), EXIT_FAILED)
    if args.stream:
        stream.write("\n")
    if result.history_dropped:
        print(
            f"note: the {result.history_dropped} oldest turn(s) did not fit --history-tokens "
            f"{args.history_tokens} and were left out; {result.history_turns} sent",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print_text(result, with_text=not args.stream)
    return EXIT_OK
