"""The model to train: a checkpoint loaded by engine.clinkd, made trainable, and exported back.

Why load through engine.clinkd.load_model: the positions a checkpoint is trained with must be the
positions the engine later generates with, so training installs MCG-RoPE with the very same
``install_mcg_rope`` (per instance) and records the gaps in config.json under the key the loader
reads. The flag is set on the config before training, so every intermediate checkpoint of a full
fine-tune carries it too; a LoRA run is merged into the base weights at export, so the final
folder is a plain Qwen2-VL checkpoint the engine loads as it is.

Precision: "bf16" is mixed precision as LLaMA-Factory runs it without DeepSpeed (frozen weights
in bf16, trainable weights and optimizer state in fp32, bf16 autocast); "pure-bf16" keeps
everything in bf16 (half the optimizer memory, coarser updates); "fp32" is for the CPU.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.clinkd.loader import DTYPES, ClinKDModel, LoadSettings, load_model, read_checkpoint_config
from engine.clinkd.rope import RopeGaps, installed_gaps
from engine.training.errors import TrainingError
from engine.training.settings import TrainSettings

MCG_CONFIG_KEY = "mcg_rope"


def resolve_device(device: str) -> str:
    """ "auto": this process's GPU (LOCAL_RANK under torchrun / accelerate launch), else the CPU."""
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise TrainingError(f"device {device!r} was asked for but no CUDA GPU is visible")
        return device
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def resolve_precision(precision: str | None, device: str) -> str:
    if precision is None:
        return "bf16" if device.startswith("cuda") else "fp32"
    if precision != "fp32" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise TrainingError("this GPU has no bf16 support; use precision fp32")
    return precision


@dataclass
class PreparedModel:
    """The model the trainer optimises (a PeftModel for LoRA), with what export needs."""

    model: torch.nn.Module
    clinkd: ClinKDModel  # the loaded checkpoint: base model, processor, info
    precision: str
    device: str
    gaps: RopeGaps | None
    lora: bool
    save_dtype: str

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def total_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _checkpoint_dtype(model_dir: str) -> str:
    config = read_checkpoint_config(model_dir)
    text = config.get("text_config") or {}
    name = config.get("dtype") or config.get("torch_dtype") or text.get("dtype") or text.get("torch_dtype")
    return name if name in DTYPES else "bfloat16"


def _freeze(model: torch.nn.Module, settings: TrainSettings) -> None:
    visual = model.model.visual
    for parameter in model.parameters():
        parameter.requires_grad = True
    for parameter in visual.parameters():
        parameter.requires_grad = not settings.freeze_vision
    for parameter in visual.merger.parameters():
        parameter.requires_grad = not settings.freeze_merger


def _add_lora(model: torch.nn.Module, settings: TrainSettings) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    names = "|".join(settings.lora.targets)
    config = LoraConfig(
        r=settings.lora.rank,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        target_modules=rf"^(?!.*\bvisual\b).*\.({names})$",  # language model only
        modules_to_save=None if settings.freeze_merger else ["merger"],
    )
    with warnings.catch_warnings():
        # peft 0.21 reads transformers' deprecated alias `is_gradient_checkpointing`; nothing to act on here
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def prepare_model(settings: TrainSettings) -> PreparedModel:
    """Load ``settings.model_dir`` through the ClinKD loader and make the chosen parts trainable."""
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    clinkd = load_model(
        LoadSettings(
            settings.model_dir,
            dtype="float32" if precision == "fp32" else "bfloat16",
            device=device,
            min_pixels=settings.min_pixels,
            max_pixels=settings.max_pixels,
            mcg_rope=settings.mcg_rope,
            rope_gaps=RopeGaps(settings.gap_in, settings.gap_out) if settings.mcg_rope else None,
        )
    )
    base = clinkd.model
    gaps = installed_gaps(base)
    setattr(base.config, MCG_CONFIG_KEY, {"gap_in": gaps.gap_in, "gap_out": gaps.gap_out} if gaps else False)
    if settings.method == "lora":
        model = _add_lora(base, settings)  # peft freezes everything but the adapters (and merger if asked)
    else:
        _freeze(base, settings)
        model = base
    if precision == "bf16":  # fp32 master weights for what is trained, bf16 for the rest
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()
    return PreparedModel(
        model=model,
        clinkd=clinkd,
        precision=precision,
        device=device,
        gaps=gaps,
        lora=settings.method == "lora",
        save_dtype=_checkpoint_dtype(settings.model_dir),
    )


def export_checkpoint(prepared: PreparedModel, folder: str | Path) -> Path:
    """Write a folder engine.clinkd.load_model reads as it is (LoRA merged, MCG flag in config.json).

    Weights are written in the base checkpoint's dtype. The prepared model is consumed: a LoRA
    model is merged in place, so call this once, after training.
    """
    folder = Path(folder)
    model = prepared.model.merge_and_unload() if prepared.lora else prepared.model
    model = model.to(DTYPES[prepared.save_dtype])
    gaps = prepared.gaps
    setattr(model.config, MCG_CONFIG_KEY, {"gap_in": gaps.gap_in, "gap_out": gaps.gap_out} if gaps else False)
    model.save_pretrained(folder)
    prepared.clinkd.processor.save_pretrained(folder)
    return folder
