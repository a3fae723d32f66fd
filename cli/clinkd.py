"""`ask` sub-command: a grounded question to ClinKD about one displayed frame.

The model sees exactly what the viewer shows: the frame rendered through the display pipeline
in the chosen window (engine.imaging.render_rgb). Boxes are given and printed in pixels of the
original image. Bad input (model folder, image, options) prints one sentence on stderr and exits
with code 2; a failure while answering exits with 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.help import examples
from cli.options import (
    add_frame_option,
    add_model_options,
    add_window_option,
    fail,
    frame_index,
    load_settings,
    require_model,
    server_settings,
    window_arg,
)
from engine.imaging import ImageLoadError, open_image, render_rgb

EXIT_OK = 0
EXIT_FAILED = 1


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
    add_frame_option(ask)
    add_window_option(ask, "window the model sees (default: as displayed)")
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

    try:
        require_model(args)
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
        rgb = render_rgb(stack.frame(frame_index(args, stack)), window)
        task = Task(args.task) if args.task else Task.FREE
        history = read_history_file(args.history, stack.columns, stack.rows) if args.history else ()
        request = AskRequest(rgb, args.question, task, box, width=stack.columns, height=stack.rows, history=history)
        build_prompt(task, args.question, box, stack.columns, stack.rows)  # bad task input fails before loading
        if args.server:
            backend = open_server(server)
        else:
            clinkd = load_model(load)
    except (ModelFolderError, QuantizationUnavailable, ImageLoadError, HistoryFileError, ValueError) as exc:
        return fail(str(exc))
    except ClinKDError as exc:  # the server cannot be reached included
        return fail(str(exc), EXIT_FAILED)
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
        return fail(str(exc), EXIT_FAILED)
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
