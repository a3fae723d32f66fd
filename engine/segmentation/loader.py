"""Load a Segment-Anything checkpoint (SAM ViT-B/L/H, MedSAM, SAM 2.1) from a local folder, offline.

Why so strict: like ClinKD's loader, loading never touches the network (local_files_only), never
runs code shipped with the weights, and a wrong folder is reported by what it lacks in one
sentence instead of a transformers stack trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from engine.files import JsonFileError, read_json
from engine.segmentation.errors import SegmenterError, SegmenterOutOfMemory
from engine.segmentation.families import FAMILIES, Family
from engine.segmentation.predictor import Segmenter, SegmenterInfo

if TYPE_CHECKING:
    from engine.segmentation.video import VideoSegmenter

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
HINT = (
    "Point it at the folder of a SAM, MedSAM or SAM 2.1 checkpoint (for example a download of "
    "facebook/sam-vit-base, flaviagiammarino/medsam-vit-base or facebook/sam2.1-hiera-tiny) that holds config.json, "
    "model.safetensors and preprocessor_config.json."
)


def read_segmenter_config(folder: str | Path) -> dict:
    """Check that ``folder`` holds a complete SAM-family checkpoint and return its config.json."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise SegmenterError(f"Segmentation model folder {path} does not exist. {HINT}")
    names = {p.name for p in path.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json (the model configuration)")
    if not any(n.endswith(".safetensors") or (n.startswith("pytorch_model") and n.endswith(".bin")) for n in names):
        missing.append("model weights (*.safetensors)")
    if not {"preprocessor_config.json", "processor_config.json"} & names:
        missing.append("preprocessor_config.json (the image processor settings)")
    if missing:
        raise SegmenterError(f"Segmentation model folder {path} is missing {'; '.join(missing)}. {HINT}")
    try:
        config = read_json(path / "config.json")
    except JsonFileError as err:
        raise SegmenterError(f"Cannot use {err}. {HINT}") from None
    if not isinstance(config, dict):
        raise SegmenterError(f"Cannot use {path / 'config.json'}: expected a JSON object. {HINT}")
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise SegmenterError(
            f"{path / 'config.json'} says model_type {model_type!r:.60}, not a Segment-Anything model "
            f"(expected one of {', '.join(FAMILIES)}). {HINT}"
        )
    return config


def resolve_device(device: str) -> str:
    cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device.startswith("cuda") and not cuda:
        raise SegmenterError(f"Device {device!r} was asked for but no CUDA GPU is visible; use 'cpu' or 'auto'.")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """fp32 on the CPU (bf16 convolutions are slow there); bf16 on a GPU unless asked otherwise."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise SegmenterError(f"dtype must be 'auto' or one of {', '.join(DTYPES)}, not {dtype!r}.")
    return DTYPES[dtype]


def load_segmenter(
    folder: str | Path, device: str = "auto", dtype: str = "auto", cache_size: int = 4
) -> Segmenter | VideoSegmenter:
    """Load the checkpoint in ``folder`` offline on ``device``.

    SAM, MedSAM and SAM 2 (``Sam2Model``) give a ``Segmenter`` with an embedding cache; a SAM 2
    video checkpoint (``Sam2VideoModel``, as the SAM 2.1 downloads are) gives a ``VideoSegmenter``:
    the same one-slice prompts, and ``propagate`` runs with the model's memory of the slices before.
    """
    import transformers

    from engine.clinkd.loader import no_progress_bars

    family: Family = FAMILIES[read_segmenter_config(folder)["model_type"]]
    model_class = getattr(transformers, family.model_class)
    processor_class = getattr(transformers, family.processor_class)
    path = Path(folder).expanduser()
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    options = {
        "local_files_only": True,
        "trust_remote_code": False,
        "use_safetensors": any(path.glob("*.safetensors")),
        "dtype": torch_dtype,
    }
    image_model = None
    try:
        with no_progress_bars():
            model = model_class.from_pretrained(path, **options)
            processor = processor_class.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            if family.video:
                image_config = transformers.Sam2Config(
                    vision_config=model.config.vision_config.to_dict(),
                    prompt_encoder_config=model.config.prompt_encoder_config.to_dict(),
                    mask_decoder_config=model.config.mask_decoder_config.to_dict(),
                )
                image_model = transformers.Sam2Model.from_pretrained(path, config=image_config, **options)
                image_model = shared_image_model(image_model, model)
        model = model.to(target).eval()
        if image_model is not None:
            image_model = image_model.to(target).eval()
    except (torch.OutOfMemoryError, MemoryError):
        from engine.device import free_memory

        free_memory()
        raise SegmenterOutOfMemory(
            f"Not enough memory on {target} to load the segmentation model in {path}; "
            "close other models or load it on the CPU."
        ) from None
    except Exception as err:  # noqa: BLE001 - transformers and safetensors raise many types
        raise SegmenterError(f"Could not load the segmentation model in {path}: {type(err).__name__}: {err}") from None
    info = SegmenterInfo(
        model_id=path.resolve().name,
        path=str(path.resolve()),
        family=type(model).__name__,
        device=str(next(model.parameters()).device),
        dtype=str(torch_dtype).removeprefix("torch."),
        parameters=sum(p.numel() for p in model.parameters()),
    )
    if image_model is not None:
        from engine.segmentation.video import VideoSegmenter

        return VideoSegmenter(image_model, model, processor, info, cache_size=cache_size, family=family)
    return Segmenter(model=model, processor=processor, info=info, cache_size=cache_size, family=family)


def shared_image_model(image_model: torch.nn.Module, video_model: torch.nn.Module) -> torch.nn.Module:
    """``image_model`` (a Sam2Model) made to use ``video_model``'s own weight tensors.

    Why: the published SAM 2.1 checkpoints (facebook/sam2.1-hiera-*) are one folder of model_type
    ``sam2_video``; its image encoder, prompt encoder and mask decoder are exactly a Sam2Model's.
    Sharing the tensors gives one-slice prompts with an embedding cache at no extra memory.
    """
    weights = video_model.state_dict()
    missing = [name for name in image_model.state_dict() if name not in weights]
    if missing:
        raise ValueError(f"the video model lacks {len(missing)} of the image model's weights ({missing[0]}, ...)")
    image_model.load_state_dict({name: weights[name] for name in image_model.state_dict()}, assign=True)
    return image_model
