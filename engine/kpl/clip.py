"""The CLIP backend: open_clip models from local weights, offline unless the user says otherwise.

A model is named by a ``ClipSpec`` string:

- ``ViT-L-14:openai``         open_clip model name and pretrained tag (found in the local cache)
- ``ViT-B-16:/path/ckpt.pt``  open_clip model name and a local checkpoint file
- ``local-dir:/path/folder``  an open_clip folder (open_clip_config.json + weights)
- ``hf-hub:org/repo``         a Hugging Face repository already in the local cache (BiomedCLIP)

Nothing is downloaded unless ``allow_download`` is set; a missing file raises ``ClipWeightsMissing``
whose message says what is missing and how to provide it. Torch files load with weights_only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.files import JsonFileError, read_json
from engine.kpl.progress import CancelFlag, check_cancel

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


class ClipLoadError(Exception):
    """A CLIP model that cannot be loaded; ``str(err)`` is a user-facing sentence."""


class ClipWeightsMissing(ClipLoadError):
    """The requested CLIP weights are not on this machine; the message says how to provide them."""


class ClipSpecError(ClipLoadError, ValueError):
    """A CLIP model string that cannot name a model."""


@dataclass(frozen=True)
class ClipSpec:
    model: str  # open_clip model name, "local-dir:PATH" or "hf-hub:ORG/REPO"
    pretrained: str = ""  # tag or checkpoint file; only with a plain model name

    @classmethod
    def parse(cls, text: str) -> ClipSpec:
        text = text.strip()
        if not text:
            raise ClipSpecError("empty CLIP model")
        if text.startswith((LOCAL_DIR, HF_HUB)):
            if not text.split(":", 1)[1]:
                raise ClipSpecError(f"{text!r} names no folder or repository")
            return cls(text)
        if os.path.isdir(text):
            return cls(LOCAL_DIR + text)
        name, _, pretrained = text.partition(":")
        if not pretrained:
            raise ClipSpecError(
                f"{text!r} gives no weights: use NAME:TAG (e.g. ViT-L-14:openai), NAME:/path/to/checkpoint,"
                " local-dir:/path/to/open_clip/folder or hf-hub:org/repo"
            )
        return cls(name, pretrained)

    def __str__(self) -> str:
        return f"{self.model}:{self.pretrained}" if self.pretrained else self.model


@dataclass(frozen=True)
class LoadedClip:
    """What ``load_clip`` returns: the open_clip triple plus what the feature cache keys on."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[..., torch.Tensor]
    spec: ClipSpec
    device: torch.device
    precision: str
    weight_files: tuple[str, ...]  # the local files the weights came from

    @property
    def cache_namespace(self) -> str:
        """Changes when the weights, the model, the preprocessing or the precision change."""
        parts = [str(self.spec), self.precision, repr(sorted(self.model.visual.preprocess_cfg.items()))]
        for path in self.weight_files:
            st = os.stat(path)
            parts.append(f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


@contextlib.contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    """Make huggingface_hub (and transformers, which asks it) answer from the local cache only.

    HF_HUB_OFFLINE is read once at import, so the environment variable cannot be set later;
    the module flag is what every hub call consults.
    """
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _cached_hub_file(repo: str, filenames: Sequence[str], cache_dir: str | None) -> str | None:
    from huggingface_hub import hf_hub_download

    for name in filenames:
        with contextlib.suppress(Exception):
            return hf_hub_download(repo, name, cache_dir=cache_dir, local_files_only=True)
    return None


def _hub_weight_names(filename: str) -> list[str]:
    """The names open_clip tries for a hub weights file, safetensors first (as it does)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _weights_for_tag(name: str, tag: str, cache_dir: str | None) -> list[str]:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise ClipSpecError(f"{name} has no pretrained tag {tag!r} (known tags: {tags}), and no such file exists")
    hub = cfg.get("hf_hub", "")
    if hub:
        from open_clip.constants import HF_WEIGHTS_NAME

        repo, filename = os.path.split(hub)  # "org/repo/" names the default file, as in open_clip
        found = _cached_hub_file(repo, _hub_weight_names(filename or HF_WEIGHTS_NAME), cache_dir)
        if found:
            return [found]
        where = f"the Hugging Face cache ({cache_dir or 'HF_HUB_CACHE'}), repository {repo}"
    else:
        url = cfg.get("url", "")
        path = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file():
            return [str(path)]
        where = str(path)
    raise ClipWeightsMissing(
        f"CLIP weights {name}:{tag} are not on this machine (looked in {where}). Download them once with"
        f" network access (--allow-download), or give a local file: {name}:/path/to/checkpoint"
        f" or an open_clip folder: local-dir:/path/to/folder."
    )


_CLIP_SIZES = {
    "vision_cfg": ("image_size", "layers", "width", "head_width", "patch_size"),
    "text_cfg": ("context_length", "vocab_size", "width", "heads", "layers"),
}


def check_open_clip_config(path: str | os.PathLike[str]) -> None:
    """Validate an open_clip_config.json (local-dir: folders, hf-hub: repositories) before open_clip
    builds a model from it, so a damaged file is a ``ClipLoadError`` naming the field."""

    def fail(where: str, expected: str, value: object) -> None:
        raise ClipLoadError(f"Cannot use {path}: {where} must be {expected}, not {json.dumps(value)[:40]}")

    def size(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1 << 20

    try:
        config = read_json(path)
    except JsonFileError as err:
        raise ClipLoadError(f"Cannot use {err}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        fail("the file", 'an object with a "model_cfg" object', config)
    model_cfg = config["model_cfg"]
    if not size(model_cfg.get("embed_dim")):
        fail("model_cfg.embed_dim", "a positive integer", model_cfg.get("embed_dim"))
    for section, keys in _CLIP_SIZES.items():
        cfg = model_cfg.get(section)
        if not isinstance(cfg, dict):
            fail(f"model_cfg.{section}", "an object", cfg)
        for key in keys:
            value = cfg.get(key)
            if value is not None and not (
                size(value) or (isinstance(value, list) and value and all(size(v) for v in value))
            ):
                fail(f"model_cfg.{section}.{key}", "a positive integer (or a list of them)", value)
    preprocess = config.get("preprocess_cfg", {})
    if not isinstance(preprocess, dict):
        fail("preprocess_cfg", "an object", preprocess)
    for key in ("mean", "std"):
        value = preprocess.get(key)
        if value is not None and not (
            isinstance(value, list)
            and len(value) in (1, 3)
            and all(isinstance(v, int | float) and not isinstance(v, bool) and (key == "mean" or v > 0) for v in value)
        ):
            fail(f"preprocess_cfg.{key}", "a list of 3 numbers" + (" above 0" if key == "std" else ""), value)
    for key in ("interpolation", "resize_mode"):
        if preprocess.get(key) is not None and not isinstance(preprocess[key], str):
            fail(f"preprocess_cfg.{key}", "text", preprocess[key])


def _local_dir_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise ClipWeightsMissing(f"CLIP folder {folder} does not exist")
    if not (folder / "open_clip_config.json").is_file():
        raise ClipWeightsMissing(f"CLIP folder {folder} has no open_clip_config.json (a local-dir: folder needs one)")
    weights = sorted(str(p) for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if not weights:
        raise ClipWeightsMissing(f"CLIP folder {folder} has a config but no weights (*.safetensors, *.bin, *.pth)")
    check_open_clip_config(folder / "open_clip_config.json")
    return [str(folder / "open_clip_config.json"), *weights]


def _hub_files(repo: str, cache_dir: str | None) -> list[str]:
    from open_clip.constants import HF_WEIGHTS_NAME

    config = _cached_hub_file(repo, ["open_clip_config.json"], cache_dir)
    weights = _cached_hub_file(repo, _hub_weight_names(HF_WEIGHTS_NAME), cache_dir)
    if config is None or weights is None:
        raise ClipWeightsMissing(
            f"hf-hub:{repo} is not in the local Hugging Face cache ({cache_dir or 'HF_HUB_CACHE'}). Download it once"
            " with network access (--allow-download), or copy the repository files into a folder and use"
            " local-dir:/path/to/folder."
        )
    check_open_clip_config(config)
    return [config, weights]


def weight_files(spec: ClipSpec, cache_dir: str | None = None) -> list[str]:
    """The local files ``spec`` loads from; raises ``ClipWeightsMissing`` without touching the network."""
    if spec.model.startswith(LOCAL_DIR):
        return _local_dir_files(Path(spec.model[len(LOCAL_DIR) :]).expanduser())
    if spec.model.startswith(HF_HUB):
        return _hub_files(spec.model[len(HF_HUB) :], cache_dir)
    import open_clip

    name = spec.model.replace("/", "-")
    if open_clip.get_model_config(name) is None:
        raise ClipSpecError(f"unknown open_clip model {spec.model!r}; see open_clip.list_models() or use local-dir:")
    if os.path.isfile(spec.pretrained):
        return [spec.pretrained]
    if os.sep in spec.pretrained or spec.pretrained.endswith(_WEIGHT_SUFFIXES):
        raise ClipWeightsMissing(f"checkpoint file {spec.pretrained} does not exist")
    return _weights_for_tag(name, spec.pretrained, cache_dir)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_clip(
    spec: ClipSpec | str,
    *,
    device: str | torch.device = "auto",
    allow_download: bool = False,
    cache_dir: str | None = None,
) -> LoadedClip:
    """One call: model (eval mode), preprocess (the val transform) and tokenizer, open_clip style.

    fp16 on a GPU (as the authors ran CLIP), fp32 on CPU.
    """
    import open_clip

    spec = ClipSpec.parse(spec) if isinstance(spec, str) else spec
    dev = resolve_device(device)
    precision = "fp16" if dev.type == "cuda" else "fp32"
    files = None if allow_download else weight_files(spec, cache_dir)
    try:
        with _hub_offline(not allow_download):
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.model,
                pretrained=spec.pretrained or None,
                precision=precision,
                device=dev,
                cache_dir=cache_dir,
                weights_only=True,
            )
            tokenizer = open_clip.get_tokenizer(spec.model, cache_dir=cache_dir)
    except (torch.OutOfMemoryError, MemoryError):
        raise  # not the files' fault: the caller reports memory
    except Exception as exc:
        raise ClipLoadError(f"could not load CLIP {spec}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    return LoadedClip(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        spec=spec,
        device=dev,
        precision=precision,
        weight_files=tuple(files if files is not None else weight_files(spec, cache_dir)),
    )


def overlong_prompts(clip: LoadedClip, texts: Sequence[str]) -> list[str]:
    """Prompts the tokenizer will cut (open_clip truncates silently; OpenAI's clip raised)."""
    tok = clip.tokenizer
    limit = getattr(tok, "context_length", None)
    if not limit:
        return []
    if hasattr(tok, "encoder") and hasattr(tok, "encode"):  # open_clip SimpleTokenizer (BPE)
        return [t for t in texts if len(tok.encode(t)) + 2 > limit]
    inner = getattr(tok, "tokenizer", None)  # HFTokenizer wraps a transformers tokenizer
    if inner is not None:
        return [t for t in texts if len(inner(t)["input_ids"]) > limit]
    return []


def _model_dtype(clip: LoadedClip) -> torch.dtype:
    import open_clip

    return open_clip.get_input_dtype(clip.precision) or torch.float32


def encode_texts(
    clip: LoadedClip, texts: Sequence[str], *, batch_size: int = 256, cancel: CancelFlag | None = None
) -> torch.Tensor:
    """L2-normalised float32 text features on the CPU, (len(texts), d).

    Normalised in the model's dtype, then cast, as the authors' Main.py does (fp16 on a GPU)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            check_cancel(cancel)
            tokens = clip.tokenizer(list(texts[start : start + batch_size])).to(clip.device)
            out.append(F.normalize(clip.model.encode_text(tokens), dim=-1).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def encode_image_batch(clip: LoadedClip, pixels: torch.Tensor) -> torch.Tensor:
    """L2-normalised float32 image features on the CPU for a preprocessed (B, 3, H, W) batch.

    Normalised in the model's dtype, then cast to float32: the authors' order (Main.py)."""
    with torch.inference_mode():
        batch = pixels.to(device=clip.device, dtype=_model_dtype(clip), non_blocking=True)
        return F.normalize(clip.model.encode_image(batch), dim=-1).float().cpu()
