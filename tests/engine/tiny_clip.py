"""A tiny random open_clip model, saved the ways users keep real ones (tests and benches).

Built with open_clip's own CLIP class and config schema, so loading it back exercises the real
loader (``engine.kpl.clip.load_clip``): a ``local-dir:`` folder or a checkpoint file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import open_clip
import torch

TINY_MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_model_cfg(image_size: int = 32) -> dict:
    cfg = copy.deepcopy(TINY_MODEL_CFG)
    cfg["vision_cfg"]["image_size"] = image_size
    return cfg


def build_tiny_clip(seed: int = 0, image_size: int = 32) -> open_clip.CLIP:
    torch.manual_seed(seed)
    return open_clip.CLIP(**tiny_model_cfg(image_size)).eval()


def save_tiny_clip_dir(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """An open_clip ``local-dir:`` folder: open_clip_config.json + open_clip_pytorch_model.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": tiny_model_cfg(image_size), "preprocess_cfg": {"interpolation": "bicubic"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config), encoding="utf-8")
    torch.save(build_tiny_clip(seed, image_size).state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def save_tiny_clip_checkpoint(folder: Path, name: str = "ClinLensTiny", seed: int = 0) -> tuple[str, Path]:
    """Register ``name`` as an open_clip model config and save a checkpoint file for it.

    Returns (model name, checkpoint path): the ``NAME:/path/to/checkpoint`` form of a ClipSpec.
    """
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{name}.json"
    config_path.write_text(json.dumps(tiny_model_cfg()), encoding="utf-8")
    open_clip.add_model_config(config_path)
    checkpoint = folder / f"{name}.pt"
    torch.save({"state_dict": build_tiny_clip(seed).state_dict()}, checkpoint)
    return name, checkpoint


def write_image_folder(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("normal", "tuberculosis")) -> Path:
    """A folder-per-class layout of small grayscale PNGs (brighter noise in the second class)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 128 + 127 * c, size=(40, 48), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i}.png")
    return root
