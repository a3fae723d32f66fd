"""GPU benchmark of a real ClinKD / Qwen2-VL checkpoint: time to first token, tokens/s, peak memory.

    python bench/gpu_clinkd.py --model DIR [--quantization 8bit|4bit] [--dtype bfloat16]
                               [--max-new-tokens 80] [--repeats 3] [--image FILE] [--json FILE]

For each pixel budget (max_pixels 512*512, then 1024*1024) the checkpoint is loaded, warmed up
with one question, then asked ``--repeats`` visual-grounding questions greedily. The image is a
real CT slice (pydicom's CT_small.dcm, rendered through the display pipeline in its auto window
and upscaled to 1024x1024 so both budgets matter) unless ``--image`` names another file.
Printed per budget: image tokens, model weights memory, peak GPU memory during a request,
median time to first token (preprocessing included) and median decode tokens/s.

Needs a CUDA GPU: without one it says so and exits with code 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.clinkd import AskRequest, ClinKDError, GenerationSettings, LoadSettings, Task, ask, load_model
from engine.imaging import open_image, render_rgb

BUDGETS = (512 * 512, 1024 * 1024)
QUESTIONS = ("left lung", "spine", "liver", "heart", "right kidney")


def _image(path: str | None) -> np.ndarray:
    if path is None:
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm")
    rgb = render_rgb(open_image(path).frame(0))
    if path.endswith("CT_small.dcm"):
        rgb = np.asarray(Image.fromarray(rgb).resize((1024, 1024), Image.Resampling.BICUBIC))
    return rgb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Qwen2-VL checkpoint folder")
    parser.add_argument("--quantization", choices=["8bit", "4bit"])
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", help="image file (default: CT_small.dcm upscaled to 1024x1024)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON (bench/gpu_check.py reads it)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "error: this benchmark needs a CUDA GPU and none is visible (torch.cuda.is_available() is False).",
            file=sys.stderr,
        )
        return 2

    image = _image(args.image)
    print(
        f"GPU: {torch.cuda.get_device_name(0)}; image {image.shape[1]}x{image.shape[0]}; "
        f"max_new_tokens {args.max_new_tokens}; greedy"
    )
    header = ("max_pixels", "img tok", "weights GiB", "peak GiB", "TTFT s", "tok/s", "new tok")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (10, 7, 11, 8, 7, 7, 7), strict=True)))
    rows = []
    for budget in BUDGETS:
        try:
            clinkd = load_model(
                LoadSettings(
                    args.model,
                    dtype=args.dtype,
                    quantization=args.quantization,
                    min_pixels=min(512 * 512, budget),
                    max_pixels=budget,
                )
            )
        except ClinKDError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
        ask(clinkd, AskRequest(image, "left lung", Task.VG), settings)  # warm-up (kernels, allocator)
        results = [
            ask(clinkd, AskRequest(image, QUESTIONS[i % len(QUESTIONS)], Task.VG), settings)
            for i in range(args.repeats)
        ]
        ttft = statistics.median(r.time_to_first_token_s or float("nan") for r in results)
        rate = statistics.median(r.tokens_per_second or float("nan") for r in results)
        peak = max(r.peak_gpu_memory_bytes or 0 for r in results)
        print(
            f"{budget:>10} {results[0].image_tokens:>7} {clinkd.info.memory_bytes / 2**30:>11.2f} "
            f"{peak / 2**30:>8.2f} {ttft:>7.3f} {rate:>7.1f} {statistics.median(r.new_tokens for r in results):>7}"
        )
        rows.append(
            {
                "max_pixels": budget,
                "image_tokens": results[0].image_tokens,
                "dtype": clinkd.info.dtype,
                "quantization": clinkd.info.quantization,
                "ttft_s": ttft,
                "tokens_per_s": rate,
                "peak_gib": peak / 2**30,
                "weights_gib": clinkd.info.memory_bytes / 2**30,
            }
        )
        print(
            f"           model {clinkd.info.model_id}, {clinkd.info.dtype}, quantization {clinkd.info.quantization}, "
            f"attention {clinkd.info.attn_implementation}, MCG-RoPE {clinkd.info.mcg_rope}"
        )
        del clinkd, results
        gc.collect()
        torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": torch.cuda.get_device_name(0), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
