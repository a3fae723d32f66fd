"""GPU benchmark of ClinKD training at Qwen2-VL-2B size: peak memory and throughput per setting.

    python bench/gpu_train.py [--steps 12] [--warmup 3] [--samples 64] [--max-pixels 589824]
                              [--batch-size 1] [--grad-accum 1] [--settings full,full-nockpt,lora,distill]
                              [--json results.json]

A checkpoint with the real Qwen2-VL-2B-Instruct shapes (28 layers of 1536, vocab 151936, the
32-block 1280-wide vision tower: 2.2B parameters) is initialised at random in bf16 and saved to a
temporary folder with the test suite's small tokenizer, so nothing is downloaded. Training runs
through the production path (engine.training.train / distill) on synthetic chest X-ray and CT
phantoms upscaled to 1024x1024 (the size of SA-Med2D images), which the 768x768 pixel cap turns
into 729 image tokens each, as real Med-GRIT samples would be.

Printed per setting: sequence length, peak GPU memory (torch max_memory_allocated over the run),
seconds per optimizer step and samples per second after the warm-up steps, and the time 1,000
samples would take at that rate. Random weights train as fast as real ones: the figures carry
over to Qwen2-VL-2B, not to its answers. The tiny tokenizer writes answers in more tokens than
Qwen's would; the printed sequence length is what was measured.

Needs a CUDA GPU with bf16: without one it says so and exits with code 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.training import DistillSettings, TrainSettings, distill, read_conversations, train
from engine.training.encode import ChatEncoder
from tests.engine.test_training_data import make_medgrit
from tests.engine.tiny_qwen import build_tiny_qwen2vl

QWEN2VL_2B_TEXT = {
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
    "tie_word_embeddings": True,
}
QWEN2VL_2B_VISION = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 1536,
    "num_heads": 16,
    "mlp_ratio": 4,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
SETTINGS = {
    "full": {"method": "full"},
    "full-nockpt": {"method": "full", "gradient_checkpointing": False},
    "full-pure-bf16": {"method": "full", "precision": "pure-bf16"},
    "lora": {"method": "lora"},
    "distill": {"method": "full"},  # teacher: the same 2B-sized checkpoint
}


def build_2b_checkpoint(folder: Path) -> Path:
    """The tiny checkpoint's tokenizer and processor with random Qwen2-VL-2B-sized weights (bf16)."""
    from transformers import GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    build_tiny_qwen2vl(folder)
    tiny = Qwen2VLConfig.from_pretrained(folder)
    ids = {k: getattr(tiny.text_config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    config = Qwen2VLConfig(
        text_config={**QWEN2VL_2B_TEXT, **ids},
        vision_config=QWEN2VL_2B_VISION,
        image_token_id=tiny.image_token_id,
        video_token_id=tiny.video_token_id,
        vision_start_token_id=tiny.vision_start_token_id,
        vision_end_token_id=tiny.vision_end_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig.from_pretrained(folder)
    model.save_pretrained(folder)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    torch.cuda.empty_cache()
    print(f"random Qwen2-VL-2B-sized checkpoint: {parameters / 1e9:.2f}B parameters, bf16, in {folder}")
    return folder


def build_data(folder: Path, samples: int) -> Path:
    """Med-GRIT-format conversations on 1024x1024 phantoms (boxes are on the 0-1000 grid: unchanged)."""
    path = make_medgrit(folder, n=samples)
    for png in folder.glob("*.png"):
        Image.open(png).resize((1024, 1024), Image.Resampling.BICUBIC).save(png)
    return path


def _sequence_length(model_dir: Path, data: Path, settings: TrainSettings) -> float:
    from engine.clinkd import LoadSettings
    from engine.clinkd.loader import load_model

    conversations = read_conversations([data]).conversations[:4]
    clinkd = load_model(
        LoadSettings(
            str(model_dir),
            device="cpu",
            dtype="bfloat16",
            min_pixels=settings.min_pixels,
            max_pixels=settings.max_pixels,
        )
    )
    encoder = ChatEncoder(clinkd.processor, clinkd.model.config.image_token_id, settings.max_length)
    lengths = [len(encoder(c)["input_ids"]) for c in conversations]
    del clinkd
    gc.collect()
    return sum(lengths) / len(lengths)


def run_setting(name: str, base: TrainSettings, warmup: int, model_dir: Path) -> dict:
    options = dict(SETTINGS[name])
    settings = replace(base, output_dir=str(Path(base.output_dir) / name), **options)
    stamps: dict[int, float] = {}

    def on_progress(progress: object) -> None:
        if progress.phase == "training":
            stamps[progress.step] = time.perf_counter()

    torch.cuda.empty_cache()
    if name == "distill":
        result = distill(settings, DistillSettings(str(model_dir), curriculum="order"), on_progress=on_progress)
    else:
        result = train(settings, on_progress=on_progress)
    last = max(stamps)
    per_step = (stamps[last] - stamps[warmup]) / (last - warmup)
    samples_per_step = settings.batch_size * settings.grad_accum
    row = {
        "setting": name,
        "method": settings.method,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "precision": settings.precision or "bf16",
        "batch_size": settings.batch_size,
        "grad_accum": settings.grad_accum,
        "peak_gib": (result.peak_gpu_memory_bytes or 0) / 2**30,
        "s_per_step": per_step,
        "samples_per_s": samples_per_step / per_step,
        "minutes_per_1k_samples": 1000 / (samples_per_step / per_step) / 60,
        "trainable_parameters": result.trainable_parameters,
        "final_loss": result.train_loss,
    }
    gc.collect()
    torch.cuda.empty_cache()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="measured optimizer steps per setting (12)")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing starts (3)")
    parser.add_argument("--samples", type=int, default=64, help="synthetic conversations (64)")
    parser.add_argument("--max-pixels", type=int, default=768 * 768, help="image pixel cap (768*768)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument(
        "--settings",
        default="full,lora,distill",
        help=f"comma-separated, from {', '.join(SETTINGS)} (full,lora,distill)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "error: this benchmark needs a CUDA GPU and none is visible (torch.cuda.is_available() is False).",
            file=sys.stderr,
        )
        return 2
    if not torch.cuda.is_bf16_supported():
        print("error: this benchmark trains in bf16 and this GPU has no bf16 support.", file=sys.stderr)
        return 2
    if args.warmup < 1 or args.steps < 1:
        print("error: --warmup and --steps must be >= 1", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        print(f"error: unknown settings {unknown}; choose from {list(SETTINGS)}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="clinlens-gpu-train-") as tmp:
        root = Path(tmp)
        model_dir = build_2b_checkpoint(root / "qwen2vl-2b-random")
        data = build_data(root / "data", args.samples)
        base = TrainSettings(
            model_dir=str(model_dir),
            data=(str(data),),
            output_dir=str(root / "runs"),
            max_steps=args.warmup + args.steps,
            batch_size=args.batch_size,
            grad_accum=args.grad_accum,
            logging_steps=1,
            save_steps=10**6,
            warmup_steps=0,
            max_pixels=args.max_pixels,
            min_pixels=min(512 * 512, args.max_pixels),
        )
        length = _sequence_length(model_dir, data, base)
        print(
            f"GPU: {torch.cuda.get_device_name(0)}; {length:.0f} tokens per sample (image + 3 turns); "
            f"batch {args.batch_size} x accumulation {args.grad_accum}; timing {args.steps} steps after "
            f"{args.warmup}"
        )
        header = ("setting", "peak GiB", "s/step", "samples/s", "min/1k samples", "trainable")
        print(" ".join(f"{h:>15}" for h in header))
        rows = []
        for name in names:
            row = run_setting(name, base, args.warmup, model_dir)
            row["tokens_per_sample"] = length
            rows.append(row)
            print(
                " ".join(
                    f"{v:>15}"
                    for v in (
                        name,
                        f"{row['peak_gib']:.1f}",
                        f"{row['s_per_step']:.3f}",
                        f"{row['samples_per_s']:.2f}",
                        f"{row['minutes_per_1k_samples']:.1f}",
                        f"{row['trainable_parameters'] / 1e9:.2f}B",
                    )
                ),
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": torch.cuda.get_device_name(0), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
