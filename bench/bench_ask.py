"""End-to-end `ask` overhead: engine.clinkd.ask vs a bare transformers generate, same model and input.

    python bench/bench_ask.py [--family all|qwen2_vl|qwen2_5_vl|qwen3_vl|gemma3] [--max-new-tokens N]
                              [--repeats N] [--side PX]

Both sides start from the same RGB array and question and end with decoded text: the baseline
is the minimal transformers recipe (chat template, processor, greedy generate under
inference_mode, decode); the engine adds the prompt builder, the streamer that times the first
token, the cancel check, box parsing (in the family's dialect) and the result dataclass. The
model is each family's tiny random checkpoint of the tests (built into a temporary folder: Qwen2-VL,
Qwen2.5-VL, Qwen3-VL, Gemma 3 with a SigLIP tower), so the ratio measures our plumbing, not the
network. Each side is warmed up once, then timed ``--repeats`` times interleaved; the ratio
compares the fastest run of each side (the least disturbed by other processes on a shared
machine), medians are printed too. The answers are checked to be identical. Target: <= 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.clinkd import AskRequest, GenerationSettings, LoadSettings, Task, ask, chat_messages, load_model
from engine.clinkd.families import FAMILIES
from tests.engine.tiny_families import BUILDERS
from tests.engine.tiny_qwen import build_tiny_qwen2vl

TINY = {"qwen2_vl": build_tiny_qwen2vl, **BUILDERS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=("all", *FAMILIES), default="all")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--side", type=int, default=224, help="image side in pixels (default 224: 64 image tokens)")
    args = parser.parse_args()
    families = list(FAMILIES) if args.family == "all" else [args.family]
    return max(bench(family, args) for family in families)


def bench(family: str, args: argparse.Namespace) -> int:
    """Time one family's tiny model: bare generate against engine.clinkd.ask; 1 when they disagree."""
    with tempfile.TemporaryDirectory() as folder:
        TINY[family](folder)
        pixels = args.side * args.side
        clinkd = load_model(LoadSettings(folder, min_pixels=pixels, max_pixels=pixels))
    image = np.random.default_rng(0).integers(0, 256, (args.side, args.side, 3), dtype=np.uint8)
    request = AskRequest(image, "left lung", Task.VG)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    question = "Where is the left lung located in the image?"
    processor, model = clinkd.processor, clinkd.model
    penalty = model.generation_config.repetition_penalty

    def bare() -> str:
        text = processor.apply_chat_template(chat_messages(question), add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=[[Image.fromarray(image)]], return_tensors="pt")
        with torch.inference_mode():
            output = model.generate(
                **inputs, max_new_tokens=args.max_new_tokens, do_sample=False, repetition_penalty=penalty
            )
        new = output[0, inputs["input_ids"].shape[1] :].tolist()
        end = next((i for i, t in enumerate(new) if t in clinkd.eos_token_ids), len(new))
        return processor.tokenizer.decode(new[:end], skip_special_tokens=False)

    def engine() -> str:
        return ask(clinkd, request, settings, cancel=threading.Event()).raw_text

    if bare() != engine():
        print(f"error: {family}: the engine and the bare call answered differently", file=sys.stderr)
        return 1
    times: dict[str, list[float]] = {"bare": [], "engine": []}
    for _ in range(args.repeats):
        for name, call in (("bare", bare), ("engine", engine)):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    result = ask(clinkd, request, settings)
    print(
        f"tiny {clinkd.family.name}, {args.side}x{args.side} image ({result.image_tokens} image tokens), "
        f"{result.prompt_tokens} prompt tokens, {result.new_tokens} new tokens, "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, label in (("bare", "bare transformers generate"), ("engine", "engine.clinkd.ask")):
        best, median = min(times[name]) * 1000, statistics.median(times[name]) * 1000
        print(f"{label:28s} best {best:7.1f} ms, median {median:7.1f} ms ({args.repeats} runs)")
    ratio = min(times["engine"]) / min(times["bare"])
    print(f"ratio ask / bare (best runs): {ratio:.3f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
