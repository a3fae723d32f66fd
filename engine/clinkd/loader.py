"""Load a grounded checkpoint from a folder: ClinKD / Qwen2-VL, Qwen2.5-VL, Qwen3-VL or MedGemma.

The family comes from config.json (engine.clinkd.families); ClinKD's MCG-RoPE applies to the
Qwen2-VL family only.

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
from engine.clinkd.families import QWEN2_VL, Family, family_of_config, supported
from engine.clinkd.prompts import QWEN2VL_CHAT_TEMPLATE
from engine.clinkd.rope import RopeGaps, install_mcg_rope
from engine.files import JsonFileError, read_json

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
    family: str = QWEN2_VL.model_type  # engine.clinkd.families model_type: how boxes are written and read


@dataclass
class ClinKDModel:
    """A loaded model with its processor. Owned by one worker; not shared between threads."""

    model: torch.nn.Module
    processor: object
    info: ModelInfo
    eos_token_ids: tuple[int, ...] = field(default=())
    pad_token_id: int | None = None
    family: Family = QWEN2_VL


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
    """Check that ``model_dir`` holds a complete checkpoint of a supported family and return its config.json."""
    folder = Path(model_dir).expanduser()
    hint = (
        "Point it at the folder of a grounded checkpoint (a ClinKD fine-tune, or a download of "
        "Qwen/Qwen2-VL-2B-Instruct or -7B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct, Qwen/Qwen3-VL-8B-Instruct or "
        "google/medgemma-1.5-4b-it) that holds config.json, *.safetensors, tokenizer.json and "
        "preprocessor_config.json."
    )
    if not folder.is_dir():
        raise ModelFolderError(f"Model folder {folder} does not exist. {hint}")
    missing = _missing_files(folder)
    if missing:
        raise ModelFolderError(f"Model folder {folder} is missing: {'; '.join(missing)}. {hint}")
    for name in SIDE_CONFIGS:  # the small JSON files transformers reads next to config.json
        if (folder / name).exists():
            _read_config_object(folder / name)
    config = _read_config_object(folder / "config.json")
    if family_of_config(config) is None:
        raise ModelFolderError(
            f"{folder / 'config.json'} says model_type {config.get('model_type')!r:.60} "
            f"(architectures {json.dumps(config.get('architectures'))[:80]}), which ClinLens cannot ask; "
            f"the supported families are {supported()}."
        )
    _check_config(config, folder / "config.json")
    return config


def checkpoint_family(config: dict) -> Family:
    """The family of a config.json that ``read_checkpoint_config`` accepted."""
    family = family_of_config(config)
    if family is None:
        raise ModelFolderError(f"not a checkpoint of a supported family; the supported families are {supported()}")
    return family


SIDE_CONFIGS = (
    "generation_config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "chat_template.json",
)
_POSITIVE_INTS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
    "depth",
    "embed_dim",
    "num_heads",
    "patch_size",
    "spatial_merge_size",
    "temporal_patch_size",
    "in_channels",
    "mlp_ratio",
)
_TOKEN_IDS = (
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "bos_token_id",
    "pad_token_id",
)


def _read_config_object(path: Path) -> dict:
    try:
        data = read_json(path)
    except JsonFileError as err:
        raise ModelFolderError(f"Cannot use {err}") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"Cannot use {path}: expected a JSON object, got {json.dumps(data)[:40]}")
    return data


def _check_config(config: dict, path: Path) -> None:
    """Check the fields ClinLens and transformers build the model from, so a damaged config.json
    is reported by its field instead of by a TypeError deep inside transformers."""

    def fail(where: str, expected: str, value: object) -> None:
        raise ModelFolderError(f"Cannot use {path}: {where} must be {expected}, not {json.dumps(value)[:40]}")

    architectures = config.get("architectures")
    if architectures is not None and not (
        isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)
    ):
        fail("architectures", "a list of class names", architectures)
    sections = [("", config)]
    for key in ("text_config", "vision_config"):
        section = config.get(key)
        if section is not None and not isinstance(section, dict):
            fail(key, "an object", section)
        sections += [(f"{key}.", section)] if section else []
    for prefix, section in sections:
        for key in (*_POSITIVE_INTS, *_TOKEN_IDS):
            value = section.get(key)
            low = 1 if key in _POSITIVE_INTS else 0
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                fail(prefix + key, "a positive integer" if low else "a token id (an integer >= 0)", value)
        for key in ("dtype", "torch_dtype", "model_type", "hidden_act"):
            if section.get(key) is not None and not isinstance(section[key], str):
                fail(prefix + key, "text", section[key])
        for key in ("rope_parameters", "rope_scaling"):
            rope = section.get(key)
            if rope is not None and not isinstance(rope, dict):
                fail(prefix + key, "an object", rope)
            sizes = (rope or {}).get("mrope_section")
            if sizes is not None and not (
                isinstance(sizes, list)
                and sizes
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes)
            ):
                fail(f"{prefix}{key}.mrope_section", "a list of positive integers", sizes)
    flag = config.get(MCG_CONFIG_KEY)
    if flag is not None and not isinstance(flag, bool):
        gaps_ok = isinstance(flag, dict) and all(
            isinstance(flag.get(k, 1), int) and not isinstance(flag.get(k, 1), bool) and flag.get(k, 1) >= 1
            for k in ("gap_in", "gap_out")
        )
        if not gaps_ok:
            fail(MCG_CONFIG_KEY, 'true, false or {"gap_in": n, "gap_out": n} with n >= 1', flag)


def resolve_rope_gaps(settings: LoadSettings, config: dict, family: Family = QWEN2_VL) -> RopeGaps | None:
    """MCG-RoPE gaps for this checkpoint, or None for stock positions (always, outside ClinKD's family)."""
    flag = config.get(MCG_CONFIG_KEY)
    if not family.clinkd:
        if settings.mcg_rope:
            raise ClinKDError(
                f"MCG-RoPE is ClinKD's change to Qwen2-VL positions; this is a {family.name} checkpoint. "
                "Load it without --mcg-rope."
            )
        return None
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
    import transformers
    from transformers import AutoProcessor

    if not 28 * 28 <= settings.min_pixels <= settings.max_pixels:
        raise ValueError(f"need 784 <= min_pixels <= max_pixels, got {settings.min_pixels}, {settings.max_pixels}")
    config = read_checkpoint_config(settings.model_dir)
    family = checkpoint_family(config)
    gaps = resolve_rope_gaps(settings, config, family)  # a wrong --mcg-rope fails before the weights load
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
    budget = {"size": {"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels}}
    try:
        with no_progress_bars():
            model = getattr(transformers, family.model_class).from_pretrained(folder, **kwargs)
            processor = AutoProcessor.from_pretrained(
                folder,
                local_files_only=True,
                trust_remote_code=False,
                **(budget if family.pixel_budget else {}),  # Gemma 3 resizes to its fixed square
            )
    except (torch.OutOfMemoryError, MemoryError):
        raise  # not the folder's fault: the caller reports memory
    except Exception as err:  # noqa: BLE001 - transformers, safetensors and tokenizers raise many types
        raise ModelFolderError(f"Could not load the checkpoint in {folder}: {type(err).__name__}: {err}") from None
    model.eval()
    if getattr(processor, "chat_template", None) is None:
        if not family.model_type.startswith("qwen"):
            raise ModelFolderError(
                f"The {family.name} checkpoint in {folder} has no chat template (chat_template.jinja); "
                "copy it from the original download."
            )
        processor.chat_template = QWEN2VL_CHAT_TEMPLATE  # the Qwen families share the ChatML layout
    processor.tokenizer.padding_side = "left"  # batched generation continues every row at its end

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
        family=family.model_type,
    )
    return ClinKDModel(
        model=model, processor=processor, info=info, eos_token_ids=eos_ids, pad_token_id=pad, family=family
    )
