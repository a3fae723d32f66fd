"""ClinKD training sub-commands: `train`, `distill` and `reflect`.

`train` fine-tunes a Qwen2-VL checkpoint with MCG-RoPE on Med-GRIT conversations (full or LoRA),
`distill` does the same with a teacher's answer-token distributions (pseudo-label KD, confidence-
margin curriculum), `reflect` writes corrected samples for a further `train` round. Progress goes
to stderr, the result to stdout. Bad input (folders, data, options) prints one sentence on stderr
and exits with code 2; a failure while training exits with 1. torch loads only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from cli.help import examples
from cli.options import add_dtype_option, add_pixel_options, add_weights_options, fail, mcg_rope

EXIT_OK = 0
EXIT_FAILED = 1


def register(subparsers: Any) -> None:
    """Add the training sub-commands to a main.py argparse sub-parser set."""
    train = subparsers.add_parser(
        "train",
        help="fine-tune a Qwen2-VL checkpoint into a ClinKD model (MCG-RoPE, full or LoRA)",
        description="Fine-tune on Med-GRIT-style conversations (BiRD [question, answer] pairs, ClinKD "
        "{from, value} turns or ShareGPT messages; .json or .jsonl). Checkpoints are written every "
        "--save-steps to OUTPUT/checkpoint-N (resume with --resume); the final model is written to OUTPUT "
        "itself, a folder `ask --model OUTPUT` loads as it is. Defaults are ClinKD's published settings.",
        epilog=examples(
            "--model ~/models/Qwen2-VL-2B-Instruct --data train.json --images images/ --output runs/sft",
            "--model ~/models/Qwen2-VL-7B-Instruct --method lora --data train.json --images images/ "
            "--output runs/teacher-7b",
            "--model runs/sft --data train.json runs/reflected.json --images images/ --output runs/final --epochs 1",
        ),
    )
    _train_options(train)
    train.set_defaults(func=run_train)

    distill = subparsers.add_parser(
        "distill",
        help="pseudo-label knowledge distillation from a teacher checkpoint (ClinKD stage 2)",
        description="Train like `train`, with the loss (alpha * KL(teacher || student) + CE) / (1 + alpha) on "
        "answer tokens at --temperature, the teacher's vocabulary cut to the student's. The teacher first "
        "scores every sample's confidence margin (cached in OUTPUT/teacher_margins.json): --curriculum "
        "order trains the most confident samples first, weight scales each sample's loss by its margin.",
        epilog=examples(
            "--model ~/models/Qwen2-VL-2B-Instruct --teacher runs/teacher-7b --data train.json "
            "--images images/ --output runs/kd --max-samples 50000 --epochs 1"
        ),
    )
    _train_options(distill)
    distill.add_argument("--teacher", required=True, metavar="DIR", help="teacher checkpoint folder (e.g. 7B)")
    distill.add_argument("--alpha", type=float, default=0.5, help="KL weight alpha (0.5)")
    distill.add_argument("--temperature", type=float, default=0.5, help="KD temperature (0.5)")
    distill.add_argument(
        "--kd-reduction",
        choices=["mean", "sum"],
        default="mean",
        help="KL over answer tokens: mean (default) or sum (the published snippet)",
    )
    distill.add_argument("--no-ce", action="store_true", help="train on the KL alone, without cross-entropy")
    distill.add_argument(
        "--curriculum",
        choices=["order", "weight", "none"],
        default="order",
        help="confidence-margin curriculum (order)",
    )
    add_dtype_option(distill, "--teacher-dtype", "teacher")
    distill.add_argument(
        "--margin-batch-size", type=int, default=4, metavar="N", help="batch size of the teacher's scoring pass (4)"
    )
    distill.set_defaults(func=run_distill)

    reflect = subparsers.add_parser(
        "reflect",
        help="reflective correction: new training samples where the model answers badly",
        description="Ask every training question (greedy). Where boxes are missing or wrong (IoU below "
        "--iou-threshold) or the answer's MiniLM similarity to the reference is below "
        "--similarity-threshold, sample N candidates (seeing the reference unless --no-hint), keep the best "
        "by the SASG scorer and write it, or the reference when no candidate passes, to OUTPUT (a JSON "
        "file `train --data` reads).",
        epilog=examples("--model runs/sft --data train.json --images images/ --output runs/reflected.json"),
    )
    reflect.add_argument("--model", required=True, metavar="DIR", help="checkpoint folder to correct")
    _add_data_options(reflect)
    reflect.add_argument("--output", required=True, metavar="FILE", help="JSON file for the new samples")
    reflect.add_argument("--candidates", type=int, default=4, metavar="N", help="candidates per flagged answer (4)")
    reflect.add_argument(
        "--iou-threshold", type=float, default=0.5, help="a box is found at IoU > this (0.5, the papers' rule)"
    )
    reflect.add_argument(
        "--similarity-threshold",
        type=float,
        default=0.8,
        help="answers below this cosine similarity to the reference are corrected (0.8)",
    )
    reflect.add_argument("--temperature", type=float, default=0.7, help="candidate sampling temperature (0.7)")
    reflect.add_argument("--top-p", type=float, default=0.9, help="candidate nucleus sampling (0.9)")
    reflect.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="answer length limit (128)")
    reflect.add_argument("--batch-size", type=int, default=4, metavar="N", help="questions per greedy batch (4)")
    reflect.add_argument("--no-hint", action="store_true", help="candidates do not see the reference answer")
    reflect.add_argument(
        "--fallback",
        choices=["reference", "skip"],
        default="reference",
        help="when no candidate passes: write the reference answer, or nothing",
    )
    reflect.add_argument("--box-penalty", type=float, default=0.5, help="SASG box penalty (0.5)")
    add_pixel_options(reflect)
    add_weights_options(reflect, quantization=False)
    reflect.add_argument("--max-samples", type=int, metavar="N", help="use only the first N conversations")
    reflect.add_argument("--embedder", metavar="DIR", help="sentence-transformers folder (default: bundled MiniLM)")
    reflect.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    reflect.add_argument("--json", action="store_true", help="print the report as JSON")
    reflect.set_defaults(func=run_reflect)


def _train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="Qwen2-VL checkpoint folder to start from")
    _add_data_options(parser)
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for checkpoints and the final model")
    parser.add_argument("--method", choices=["full", "lora"], default="full", help="full fine-tune (ClinKD) or LoRA")
    parser.add_argument("--lora-rank", type=int, default=16, metavar="R", help="LoRA rank (16)")
    parser.add_argument("--lora-alpha", type=int, default=32, help="LoRA alpha (32)")
    parser.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout (0.05)")
    parser.add_argument("--mcg-rope", choices=["on", "off"], default="on", help="train with MCG-RoPE positions (on)")
    parser.add_argument("--gap-in", type=int, default=2, help="MCG-RoPE gap text -> image (2)")
    parser.add_argument("--gap-out", type=int, default=2, help="MCG-RoPE gap image -> text (2)")
    parser.add_argument("--train-vision", action="store_true", help="also train the vision tower (full only)")
    parser.add_argument("--train-merger", action="store_true", help="also train the vision-language merger")
    parser.add_argument(
        "--precision",
        choices=["bf16", "pure-bf16", "fp32"],
        help="bf16 mixed precision (GPU default), pure-bf16, or fp32 (CPU default)",
    )
    parser.add_argument(
        "--no-gradient-checkpointing", action="store_true", help="keep activations (faster, more memory)"
    )
    parser.add_argument("--epochs", type=float, default=3.0, help="epochs (3)")
    parser.add_argument("--max-steps", type=int, default=-1, metavar="N", help="optimizer steps; overrides --epochs")
    parser.add_argument("--batch-size", type=int, default=2, metavar="N", help="samples per device and step (2)")
    parser.add_argument("--grad-accum", type=int, default=8, metavar="N", help="gradient accumulation steps (8)")
    parser.add_argument("--lr", type=float, help="learning rate (5e-5 full, 2e-4 LoRA)")
    parser.add_argument("--scheduler", default="cosine", help="learning-rate schedule (cosine)")
    parser.add_argument("--warmup", type=float, default=10, help="warm-up steps, or a fraction < 1 of all steps (10)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (0)")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (1.0)")
    parser.add_argument("--max-length", type=int, default=2048, metavar="N", help="token limit per sample (2048)")
    add_pixel_options(parser, max_side=768)
    parser.add_argument("--save-steps", type=int, default=500, metavar="N", help="checkpoint every N steps (500)")
    parser.add_argument("--save-total-limit", type=int, default=2, metavar="N", help="checkpoints kept (2)")
    parser.add_argument("--logging-steps", type=int, default=10, metavar="N", help="progress every N steps (10)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CHECKPOINT",
        help="continue from the latest checkpoint in OUTPUT, or from CHECKPOINT",
    )
    parser.add_argument("--seed", type=int, default=42, help="data order and dropout seed (42)")
    parser.add_argument(
        "--device", default="auto", help="where training runs: auto (this process's GPU when present), cpu, cuda:N"
    )
    parser.add_argument("--max-samples", type=int, metavar="N", help="use only the first N conversations")
    parser.add_argument("--num-workers", type=int, default=0, metavar="N", help="data-loading worker processes (0)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """The conversations to learn from; `train`, `distill` and `reflect` read the same files."""
    parser.add_argument("--data", required=True, nargs="+", metavar="FILE", help="training data files")
    parser.add_argument("--images", metavar="DIR", help="image folder (default: each data file's folder)")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _print_progress(progress: Any) -> None:
    share = f"{progress.step}/{progress.total}"
    if progress.phase == "scoring":
        line = f"teacher scoring batch {share}"
    else:
        parts = [f"step {share}"]
        if progress.epoch is not None:
            parts.append(f"epoch {progress.epoch:.2f}")
        for name in ("loss", "ce", "kl"):
            value = getattr(progress, name)
            if value is not None:
                parts.append(f"{name} {value:.4f}")
        if progress.learning_rate is not None:
            parts.append(f"lr {progress.learning_rate:.2e}")
        line = "  ".join(parts)
    timing = f"elapsed {_duration(progress.elapsed_s)}  eta {_duration(progress.eta_s)}"
    print(f"{line}  {timing}", file=sys.stderr, flush=True)


def _train_settings(args: argparse.Namespace) -> Any:
    from engine.training import LoraSettings, TrainSettings

    return TrainSettings(
        model_dir=args.model,
        data=tuple(args.data),
        output_dir=args.output,
        image_root=args.images,
        method=args.method,
        lora=LoraSettings(rank=args.lora_rank, alpha=args.lora_alpha, dropout=args.lora_dropout),
        mcg_rope=args.mcg_rope == "on",
        gap_in=args.gap_in,
        gap_out=args.gap_out,
        freeze_vision=not args.train_vision,
        freeze_merger=not args.train_merger,
        precision=args.precision,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        learning_rate=args.lr,
        lr_scheduler=args.scheduler,
        warmup_steps=int(args.warmup) if args.warmup >= 1 else args.warmup,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        max_length=args.max_length,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        logging_steps=args.logging_steps,
        resume=args.resume,
        seed=args.seed,
        device=args.device,
        max_samples=args.max_samples,
        num_workers=args.num_workers,
    )


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        data = asdict(result)
        data.pop("log_history")
        print(json.dumps(data, indent=2))
        return
    for skipped in result.skipped_records[:5]:
        print(f"note: skipped {skipped}", file=sys.stderr)
    if len(result.skipped_records) > 5:
        print(f"note: skipped {len(result.skipped_records)} records in all", file=sys.stderr)
    memory = f", peak GPU memory {result.peak_gpu_memory_bytes / 2**30:.1f} GiB" if result.peak_gpu_memory_bytes else ""
    print(
        f"trained {result.global_step} steps ({result.epochs:.2f} epochs) on {result.conversations} conversations "
        f"in {_duration(result.runtime_s)}: mean loss {result.train_loss:.4f}, "
        f"{result.samples_per_second:.2f} samples/s{memory}; "
        f"{result.trainable_parameters:,} of {result.total_parameters:,} parameters trained"
    )
    print(f"model written to {result.output_dir}")


def _run_training(args: argparse.Namespace, distill_settings: Any | None) -> int:
    import torch

    from engine.clinkd import ClinKDError, ModelFolderError
    from engine.training import TrainingDataError, TrainingError, distill, train

    try:
        settings = _train_settings(args)
        if distill_settings is None:
            result = train(settings, on_progress=_print_progress)
        else:
            result = distill(settings, distill_settings(), on_progress=_print_progress)
    except (ModelFolderError, TrainingDataError, ValueError) as exc:
        return fail(str(exc))
    except (TrainingError, ClinKDError) as exc:
        return fail(str(exc), EXIT_FAILED)
    except torch.OutOfMemoryError:
        return fail(
            "the GPU ran out of memory: lower --batch-size (raise --grad-accum to keep the effective batch), "
            "--max-pixels or --max-length, use --method lora, or keep gradient checkpointing on.",
            EXIT_FAILED,
        )
    _print_result(result, args.json)
    return EXIT_OK


def run_train(args: argparse.Namespace) -> int:
    return _run_training(args, None)


def run_distill(args: argparse.Namespace) -> int:
    from engine.training import DistillSettings

    def settings() -> DistillSettings:
        return DistillSettings(
            teacher_dir=args.teacher,
            alpha=args.alpha,
            temperature=args.temperature,
            use_ce=not args.no_ce,
            kd_reduction=args.kd_reduction,
            curriculum=args.curriculum,
            teacher_dtype=args.teacher_dtype,
            margin_batch_size=args.margin_batch_size,
        )

    return _run_training(args, settings)


def run_reflect(args: argparse.Namespace) -> int:
    from engine.clinkd import ClinKDError, ModelFolderError
    from engine.training import ReflectSettings, TrainingDataError, TrainingError, reflect

    def progress(p: Any) -> None:
        eta = p.elapsed_s / p.done * (p.total - p.done) if p.done else None
        print(
            f"checked {p.done}/{p.total} questions, {p.flagged} flagged  elapsed {_duration(p.elapsed_s)}  "
            f"eta {_duration(eta)}",
            file=sys.stderr,
            flush=True,
        )

    try:
        settings = ReflectSettings(
            model_dir=args.model,
            data=tuple(args.data),
            output=args.output,
            image_root=args.images,
            iou_threshold=args.iou_threshold,
            similarity_threshold=args.similarity_threshold,
            candidates=args.candidates,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            hint=not args.no_hint,
            fallback=args.fallback,
            box_penalty=args.box_penalty,
            min_pixels=args.min_pixels,
            max_pixels=args.max_pixels,
            device=args.device,
            dtype=args.dtype,
            mcg_rope=mcg_rope(args),
            max_samples=args.max_samples,
            embedder_dir=args.embedder,
            seed=args.seed,
        )
        report = reflect(settings, on_progress=progress)
    except (ModelFolderError, TrainingDataError, ValueError) as exc:
        return fail(str(exc))
    except (TrainingError, ClinKDError) as exc:
        return fail(str(exc), EXIT_FAILED)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return EXIT_OK
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.reasons.items())) or "none"
    print(
        f"checked {report.questions} questions: {report.flagged} flagged ({reasons}); wrote {report.written} "
        f"samples ({report.from_candidates} from candidates, {report.from_references} references), "
        f"skipped {report.skipped}"
    )
    print(f"samples written to {report.output}")
    return EXIT_OK
