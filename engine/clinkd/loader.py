"""Load a Qwen2-VL-family checkpoint (ClinKD fine-tune or stock Qwen2-VL-2B/7B-Instruct) from a folder.

Why so strict: the app runs offline on a clinician's machine, so loading never touches the
network (local_files_only), never runs code shipped with the weights (trust_remote_code=False),
reads safetensors (or torch files with weights_only), and a wrong folder is reported by what is
missing rather than by a transformers stack trace.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.clinkd.errors import ClinKDError, ModelFolderError, QuantizationUnavailable
from engine.clinkd.prompts import QWEN2VL_CHAT_TEMPLATE
from engine.clinkd.rope import RopeGaps, install_mcg_rope

MODEL_TYPES = ("qwen2_vl",)
QUANTIZATIONS = ("8bit", "4bit")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
MCG_CONFIG_KEY = "mcg_rope"
"""config.json key marking a checkpoint trained with MCG-RoPE: true, or {"gap_in": 2, "gap_out": 2}."""


@dataclass(frozen=True)
class LoadSettings:
    """How to load a checkpoint. Defaults follow ClinKD's inference script."""

    model_dir: str
    dtype: str | None = None  # "bfloat16" | "float16" | "float32"; None: bf16 on GPU, fp32 on CPU
    device: str = "auto"  # "auto" (GPU when there is one) | "cpu" | "cuda" | "cuda:N"
    quantization: str | None = None  # None | "8bit" | "4bit" (bitsandbytes, CUDA only)
    attn_implementation: str | None = None  # None: flash_attention_2 when installed on GPU, else sdpa
    min_pixels: int = 512 * 512
    max_pixels: int = 1024 * 1024
    mcg_rope: bool | None = None  # None: as the checkpoint's config.json says; off for stock Qwen2-VL
    rope_gaps: RopeGaps | None = None  # None: the checkpoint's gaps, else ClinKD's released 2 / 2


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded and how: shown in the UI and copied into every result."""

    model_id: str
    path: str
    dtype: str
    device: str
    quantization: str | None
    attn_implementation: str
    memory_bytes: int
    parameters: int
    min_pixels: int
    max_pixels: int
    mcg_rope: RopeGaps | None


@dataclass
class ClinKDModel:
    """A loaded model with its processor. Owned by one worker; not shared between threads."""

    model: torch.nn.Module
    processor: object
    info: ModelInfo
    eos_token_ids: tuple[int, ...] = field(default=())
    pad_token_id: int | None = None


def _missing_files(folder: Path) -> list[str]:
    names = {p.name for p in folder.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json (the model configuration)")
    has_weights = any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names) or any(
        n.startswith("pytorch_model") and n.endswith(".bin") for n in names
    )
    if not has_weights:
        missing.append("model weights (*.safetensors)")
    if "tokenizer.json" not in names and not {"vocab.json", "merges.txt"} <= names:
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if not {"preprocessor_config.json", "processor_config.json"} & names:
        missing.append("preprocessor_config.json (the image processor settings)")
    return missing


def read_checkpoint_config(model_dir: str | Path) -> dict:
    """Check that ``model_dir`` holds a complete Qwen2-VL checkpoint and return its config.json."""
    folder = Path(model_dir).expanduser()
    hint = (
        "Point it at the folder of a Qwen2-VL checkpoint (a ClinKD fine-tune, or a download of "
        "Qwen/Qwen2-VL-2B-Instruct or -7B-Instruct) that holds config.json, *.safetensors, "
        "tokenizer.json and preprocessor_config.json."
    )
    if not folder.is_dir():
        raise ModelFolderError(f"Model folder {folder} does not exist. {hint}")
    missing = _missing_files(folder)
    if missing:
        raise ModelFolderError(f"Model folder {folder} is missing: {'; '.join(missing)}. {hint}")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"Cannot read {folder / 'config.json'}: {err}") from None
    if config.get("model_type") not in MODEL_TYPES:
        raise ModelFolderError(
            f"{folder / 'config.json'} says model_type {config.get('model_type')!r}; ClinKD needs a "
            f"Qwen2-VL checkpoint (model_type 'qwen2_vl'). {hint}"
        )
    return config


def resolve_rope_gaps(settings: LoadSettings, config: dict) -> RopeGaps | None:
    """MCG-RoPE gaps for this checkpoint, or None for stock positions."""
    flag = config.get(MCG_CONFIG_KEY)
    wanted = bool(flag) if settings.mcg_rope is None else settings.mcg_rope
    if not wanted:
        return None
    if settings.rope_gaps is not None:
        return settings.rope_gaps
    if isinstance(flag, dict):
        return RopeGaps(**{k: int(v) for k, v in flag.items() if k in ("gap_in", "gap_out")})
    return RopeGaps()


def _resolve_device(settings: LoadSettings) -> str:
    cuda = torch.cuda.is_available()
    if settings.device == "auto":
        return "cuda" if cuda else "cpu"
    if settings.device.startswith("cuda") and not cuda:
        raise ClinKDError(f"device {settings.device!r} was asked for but no CUDA GPU is visible")
    return settings.device


def _quantization_config(settings: LoadSettings, device: str, dtype: torch.dtype) -> object | None:
    if settings.quantization is None:
        return None
    if settings.quantization not in QUANTIZATIONS:
        raise QuantizationUnavailable(f"quantization must be one of {QUANTIZATIONS}, got {settings.quantization!r}")
    problems = []
    if importlib.util.find_spec("bitsandbytes") is None:
        problems.append("the bitsandbytes package is not installed (pip install bitsandbytes)")
    if not device.startswith("cuda"):
        problems.append("it needs a CUDA GPU and the model is on the CPU")
    if problems:
        raise QuantizationUnavailable(
            f"{settings.quantization} loading is not available: {'; '.join(problems)}. "
            "Load in bf16 instead, or use the 2B checkpoint on small GPUs."
        )
    from transformers import BitsAndBytesConfig

    if settings.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)


def _attn_implementation(settings: LoadSettings, device: str, dtype: torch.dtype) -> str:
    if settings.attn_implementation:
        return settings.attn_implementation
    flash_ok = device.startswith("cuda") and dtype in (torch.bfloat16, torch.float16)
    return "flash_attention_2" if flash_ok and importlib.util.find_spec("flash_attn") else "sdpa"


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """Hide transformers' loading bars: nobody reads stderr in the app, and each bar starts a
    tqdm monitor thread that outlives the load."""
    from transformers.utils import logging as hf_logging

    were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if were_on:
            hf_logging.enable_progress_bar()


def load_model(settings: LoadSettings) -> ClinKDModel:
    """Load the checkpoint in ``settings.model_dir`` offline and prepare it for generation."""
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    if not 28 * 28 <= settings.min_pixels <= settings.max_pixels:
        raise ValueError(f"need 784 <= min_pixels <= max_pixels, got {settings.min_pixels}, {settings.max_pixels}")
    config = read_checkpoint_config(settings.model_dir)
    folder = Path(settings.model_dir).expanduser()
    device = _resolve_device(settings)
    if settings.dtype is not None and settings.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {settings.dtype!r}")
    default_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    dtype = DTYPES[settings.dtype] if settings.dtype else default_dtype
    quantization_config = _quantization_config(settings, device, dtype)
    attn = _attn_implementation(settings, device, dtype)
    has_safetensors = any(folder.glob("*.safetensors"))
    kwargs: dict = {
        "local_files_only": True,
        "trust_remote_code": False,
        "use_safetensors": has_safetensors,
        "weights_only": True,
        "dtype": dtype,
        "attn_implementation": attn,
    }
    if device.startswith("cuda"):
        kwargs["device_map"] = "auto" if settings.device == "auto" else {"": device}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    try:
        with no_progress_bars():
            model = Qwen2VLForConditionalGeneration.from_pretrained(folder, **kwargs)
            processor = AutoProcessor.from_pretrained(
                folder,
                local_files_only=True,
                trust_remote_code=False,
                size={"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels},
            )
    except (OSError, ValueError, KeyError) as err:
        raise ModelFolderError(f"Could not load the checkpoint in {folder}: {err}") from None
    model.eval()
    if getattr(processor, "chat_template", None) is None:
        processor.chat_template = QWEN2VL_CHAT_TEMPLATE
    processor.tokenizer.padding_side = "left"  # batched generation continues every row at its end

    gaps = resolve_rope_gaps(settings, config)
    if gaps is not None:
        install_mcg_rope(model, gaps)

    generation = model.generation_config
    eos = generation.eos_token_id if generation.eos_token_id is not None else processor.tokenizer.eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)
    pad = generation.pad_token_id if generation.pad_token_id is not None else processor.tokenizer.pad_token_id
    info = ModelInfo(
        model_id=folder.resolve().name,
        path=str(folder.resolve()),
        dtype=str(dtype).removeprefix("torch."),
        device=str(next(model.parameters()).device),
        quantization=settings.quantization,
        attn_implementation=attn,
        memory_bytes=int(model.get_memory_footprint()),
        parameters=sum(p.numel() for p in model.parameters()),
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        mcg_rope=gaps,
    )
    return ClinKDModel(model=model, processor=processor, info=info, eos_token_ids=eos_ids, pad_token_id=pad)
