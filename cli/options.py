"""The options several sub-commands share, and what their parsed values become.

Why one module: `ask`, `eval-medgrit` and `annotate` reach ClinKD the same way, `reflect` loads a
checkpoint as they do, `render`, `ask`, `classify` and `annotate` take the same window. Each
option written once keeps its name, default, help and error message from drifting apart between
commands, and the command reference docs/hooks.py generates from the parsers with them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from engine.clinkd.families import FAMILY_CHOICES
from engine.imaging import ImageStack, Window, find_preset, load_presets

EXIT_BAD_INPUT = 2
MODEL_ENV = "CLINLENS_CLINKD_MODEL"
DTYPES = ("bfloat16", "float16", "float32")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    """Print ``error: message`` on stderr and return ``code``: every command reports a failure in one sentence."""
    print(f"error: {message}", file=sys.stderr)
    return code


# ---------------------------------------------------------------- the displayed frame


def add_window_option(parser: argparse.ArgumentParser, window_help: str) -> None:
    """``--window CENTER,WIDTH`` or ``--preset NAME`` (one of them); ``window_arg`` reads them.

    Only the --window help differs between commands: it says who sees the window.
    """
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--window", metavar="CENTER,WIDTH", help=window_help)
    choice.add_argument("--preset", metavar="NAME", help="window preset name or key, e.g. Lung or 2")


def window_arg(args: argparse.Namespace) -> Window | None:
    """The window ``add_window_option`` asked for, or None (as displayed); ValueError on a bad value."""
    if args.window:
        parts = args.window.split(",")
        try:
            center, width = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"--window expects CENTER,WIDTH (e.g. 40,400), got {args.window!r}.") from None
        if width <= 0:
            raise ValueError(f"--window width must be positive, got {width:g}.")
        return Window(center, width, "LINEAR", "command line")
    if args.preset:
        preset = find_preset(args.preset)
        if preset is None:
            names = ", ".join(f"{p.name} ({p.key})" if p.key else p.name for p in load_presets())
            raise ValueError(f"unknown preset {args.preset!r}; choose one of: {names}.")
        return preset.to_window()
    return None


def add_frame_option(parser: argparse.ArgumentParser) -> None:
    """``--frame N``, 1-based as the viewer counts; ``frame_index`` checks it against the image."""
    parser.add_argument("--frame", type=int, default=1, help="1-based frame number (default 1)")


def frame_index(args: argparse.Namespace, stack: ImageStack) -> int:
    """The 0-based index of ``--frame`` in ``stack``; ValueError when the stack has no such frame."""
    if not 1 <= args.frame <= stack.n_frames:
        raise ValueError(f"--frame {args.frame} is out of range: {stack.title} has {stack.n_frames} frame(s).")
    return args.frame - 1


# ---------------------------------------------------------------- loading a model


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device`` for a model loaded to answer; `train` keeps its own (auto: the LOCAL_RANK GPU under torchrun)."""
    parser.add_argument(
        "--device", default="auto", help="where the model runs: auto (the GPU when present), cpu, cuda, cuda:N"
    )


def add_dtype_option(parser: argparse.ArgumentParser, flag: str = "--dtype", what: str = "weight") -> None:
    """A checkpoint's precision; ``flag`` and ``what`` name whose it is (`distill`'s teacher)."""
    parser.add_argument(flag, choices=list(DTYPES), help=f"{what} precision (default: bf16 on GPU, fp32 on CPU)")


def add_pixel_options(parser: argparse.ArgumentParser, *, max_side: int = 1024, note: str = "") -> None:
    """``--min-pixels`` / ``--max-pixels``, Qwen2-VL's image resizing bounds; ``note`` follows each help."""
    parser.add_argument(
        "--min-pixels", type=int, default=512 * 512, metavar="N", help=f"image pixel floor (512*512){note}"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=max_side * max_side,
        metavar="N",
        help=f"image pixel cap ({max_side}*{max_side}){note}",
    )


def add_weights_options(parser: argparse.ArgumentParser, *, quantization: bool) -> None:
    """How a ClinKD checkpoint is loaded to answer: precision, device, [bitsandbytes], MCG-RoPE."""
    add_dtype_option(parser)
    add_device_option(parser)
    if quantization:
        parser.add_argument("--quantization", choices=["8bit", "4bit"], help="bitsandbytes loading (CUDA only)")
    parser.add_argument(
        "--mcg-rope",
        choices=["auto", "on", "off"],
        default="auto",
        help="MCG-RoPE positions: as the checkpoint says (auto), forced on or off",
    )


def mcg_rope(args: argparse.Namespace) -> bool | None:
    """``--mcg-rope`` as the loaders take it: None follows the checkpoint."""
    return {"auto": None, "on": True, "off": False}[args.mcg_rope]


# ---------------------------------------------------------------- where ClinKD answers come from


def add_model_options(parser: argparse.ArgumentParser, *, several_servers: bool = False) -> None:
    """Where answers come from: a local checkpoint (--model) or an inference server (--server).

    Shared by every command that asks ClinKD (ask, eval-medgrit, annotate); with
    ``several_servers`` --server may be repeated (replicas) and ``args.server`` is a list.
    """
    parser.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV),
        help=f"checkpoint folder: ClinKD / Qwen2-VL, Qwen2.5-VL, Qwen3-VL or MedGemma (default: ${MODEL_ENV})",
    )
    add_server_options(parser, several=several_servers)
    add_pixel_options(parser, note="; with --server, what the server uses")
    add_weights_options(parser, quantization=True)


def add_server_options(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """--server and how to talk to it; ``server_settings`` turns them into ServerSettings."""
    if several:
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
    parser.add_argument(
        "--server-family",
        choices=FAMILY_CHOICES,
        default="auto",
        help="how the served model writes boxes: auto reads it from the served name (Qwen2.5-VL, Qwen3-VL, "
        "MedGemma, else ClinKD's Qwen2-VL), or name the family",
    )
    parser.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the server's API key")
    parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for the server's next token (120)"
    )


def require_model(args: argparse.Namespace, what: str = "no model") -> None:
    """ValueError unless --model (or its variable) or --server says where answers come from."""
    if not args.model and not args.server:
        raise ValueError(f"{what}: pass --model DIR (or set {MODEL_ENV}) or --server URL.")


def load_settings(args: argparse.Namespace) -> Any:
    """LoadSettings from the ``add_model_options`` options."""
    from engine.clinkd import LoadSettings

    return LoadSettings(
        model_dir=args.model,
        dtype=args.dtype,
        device=args.device,
        quantization=args.quantization,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        mcg_rope=mcg_rope(args),
    )


def server_settings(args: argparse.Namespace, *, url: str | None = None, concurrency: int | None = None) -> Any:
    """ServerSettings from the --server options; raises ValueError on a bad URL or a missing key.

    ``url`` names one of several --server replicas; ``concurrency`` is the command's requests in
    flight (None: the ServerSettings default).
    """
    from engine.clinkd import ServerSettings

    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ValueError(f"--api-key-env names {args.api_key_env}, but that environment variable is not set.")
    in_flight = {} if concurrency is None else {"concurrency": concurrency}
    return ServerSettings(
        url=args.server if url is None else url,
        model=args.server_model,
        family=args.server_family,
        api_key=api_key,
        timeout_s=args.timeout,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        **in_flight,
    )


# ---------------------------------------------------------------- a Ray cluster


def add_ray_options(parser: argparse.ArgumentParser, actors_help: str, *, engine: bool = True) -> None:
    """``--ray [ADDRESS]`` and ``--ray-actors N``: run the dataset on a Ray cluster (docs/deployment/cluster.md)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="spread the images over a Ray cluster: local (a private one on this machine, the default), auto (the "
        "cluster this node belongs to) or the head's address; needs the cluster extra (pip install '.[cluster]')",
    )
    parser.add_argument("--ray-actors", type=int, default=1, metavar="N", help=actors_help)
    if engine:
        parser.add_argument(
            "--ray-vllm",
            action="store_true",
            help="with --ray and --model: the checkpoint runs in a vLLM engine in each actor on the GPU nodes "
            "(needs vllm on them)",
        )


def check_ray(args: argparse.Namespace) -> None:
    """Before anything runs: the --ray options make sense and Ray (and vllm, for --ray-vllm) can be
    imported; ValueError, RayUnavailable or VllmUnavailable in one sentence otherwise."""
    if getattr(args, "ray_vllm", False):
        if args.ray is None:
            raise ValueError("--ray-vllm runs the model on a Ray cluster: give --ray too")
        if not args.model or getattr(args, "server", None):
            raise ValueError("--ray-vllm loads the --model checkpoint in vLLM; it does not apply to --server")
    if args.ray is None:
        return
    from engine.cluster import check_vllm, require_ray

    if args.ray_actors < 1:
        raise ValueError("--ray-actors must be at least 1")
    require_ray()
    if getattr(args, "ray_vllm", False):
        check_vllm()


def ray_session_of(args: argparse.Namespace) -> Any:
    """The Ray session ``--ray`` asks for, or a context that does nothing without --ray."""
    import contextlib

    from engine.cluster import ray_session

    return contextlib.nullcontext() if args.ray is None else ray_session(args.ray)


# ---------------------------------------------------------------- annotation projects and reports


def add_annotations_option(parser: argparse.ArgumentParser) -> None:
    """``--annotations FILE``: the project to read instead of the image set's sidecar."""
    parser.add_argument(
        "--annotations",
        type=Path,
        metavar="FILE",
        help="annotation document to read instead of the image set's sidecar",
    )


def add_observer_options(parser: argparse.ArgumentParser) -> None:
    """``--verify NAME`` and ``--organization ORG``: who signs a report off (DICOM PN Family^Given)."""
    parser.add_argument(
        "--verify",
        metavar="NAME",
        help='sign the report off as this reading observer, DICOM person name "Family^Given" '
        "(refused with one sentence while model findings are unreviewed)",
    )
    parser.add_argument("--organization", default="", metavar="ORG", help="the verifying observer's organisation")
