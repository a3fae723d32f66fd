"""Segmentation speed: our embedding-cached predictor against bare transformers, in the same run.

A ViT-B-sized random-weight SamModel (SamConfig's defaults are SAM ViT-B: 94 M parameters) on
512×512 rendered slices. Random weights give random masks but the same arithmetic as real
ones, so the timings hold for sam-vit-base and MedSAM (also ViT-B). Never a timed test.

    /work/main/.venv/bin/python bench/bench_segment.py            # about 3 minutes on 2 CPU cores
    /work/main/.venv/bin/python bench/bench_segment.py --slices 40 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.segmentation.predictor import Segmenter, SegmenterInfo
from engine.segmentation.propagate import propagate

SIZE = 512
BOX = (150.0, 170.0, 330.0, 350.0)


def slice_rgb(index: int) -> np.ndarray:
    """A bright disc that grows and shrinks across slices on a noisy background."""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    radius = 90 - abs(index - 20) * 2
    grey = rng.integers(0, 60, (SIZE, SIZE)) + 150 * ((y - 260) ** 2 + (x - 240) ** 2 <= radius**2)
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="bare and first-prompt calls (each ~embedding)")
    parser.add_argument("--prompts", type=int, default=20, help="second prompts on the cached slice")
    parser.add_argument("--slices", type=int, default=10, help="slices to propagate through")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = SamModel(SamConfig()).eval()
    processor = SamProcessor(image_processor=SamImageProcessor())
    info = SegmenterInfo("random-vit-b", "-", "SamModel", "cpu", "float32", sum(p.numel() for p in model.parameters()))
    segmenter = Segmenter(model, processor, info)
    image = slice_rgb(20)
    params = info.parameters / 1e6
    print(f"SamModel ViT-B, random weights: {params:.1f} M parameters; torch threads {torch.get_num_threads()}")

    def bare() -> None:
        inputs = processor(image, input_boxes=[[list(BOX)]], return_tensors="pt")
        with torch.inference_mode():
            out = model(**inputs, multimask_output=False)
        processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])

    def first_prompt() -> None:
        segmenter.forget()
        segmenter.segment(image, box=BOX, key="slice-20")

    bare()  # warm-up (allocator, kernels)
    bare_s, first_s = [], []
    for _ in range(args.repeats):  # interleaved so drift hits both alike
        bare_s.append(timed(bare))
        first_s.append(timed(first_prompt))
    embed_s = statistics.median(timed(lambda: segmenter.embed(image)) for _ in range(max(1, args.repeats - 1)))
    segmenter.embed(image, "slice-20")
    prompt_s = [
        timed(lambda k=k: segmenter.segment("slice-20", box=(BOX[0] + k, *BOX[1:]))) for k in range(args.prompts)
    ]
    bare_m, first_m, prompt_m = statistics.median(bare_s), statistics.median(first_s), statistics.median(prompt_s)
    lines = [
        f"(a) bare SamModel(**processor(image, input_boxes=...)) per prompt: {bare_m * 1000:.0f} ms",
        f"    our first prompt (embedding + decoder): {first_m * 1000:.0f} ms = {first_m / bare_m:.3f}x bare",
        f"    embedding alone: {embed_s * 1000:.0f} ms",
        f"(b) our next prompt on the same slice (cached embedding): {prompt_m * 1000:.1f} ms (goal <= 50 ms)",
        f"    second prompt vs the bare call: {bare_m / prompt_m:.0f}x faster (goal >= 10x)",
    ]
    print("\n".join(lines), flush=True)

    segmenter.forget()
    first = max(0, 20 - args.slices // 2)
    last = first + args.slices - 1
    start = min(max(20, first), last)
    run = []
    total = timed(
        lambda: run.append(propagate(segmenter, slice_rgb, start, (first, last), box=BOX, stop_when_empty=False))
    )
    per_slice = total / args.slices
    print(
        f"(c) propagation through {args.slices} slices: {total:.1f} s = {per_slice * 1000:.0f} ms per slice, "
        f"{per_slice / bare_m:.2f}x a bare prompt per slice ({len(run[0].masks)} non-empty masks)"
    )


if __name__ == "__main__":
    main()
