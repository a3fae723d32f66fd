"""A tiny random-weight SAM, saved the way a downloaded checkpoint is (tests and benches).

Built from transformers' real SamConfig and SamModel with tiny widths but the real 1024-pixel
input and 256×256 low-res masks, so the production loader and the coordinate mapping are
exercised exactly as with SAM ViT-B.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor


def tiny_sam_config(width: int = 32) -> SamConfig:
    return SamConfig(
        vision_config={
            "hidden_size": width,
            "output_channels": width,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "global_attn_indexes": [1],
            "mlp_dim": 2 * width,
            "num_pos_feats": width // 2,
        },
        prompt_encoder_config={"hidden_size": width},
        mask_decoder_config={
            "hidden_size": width,
            "mlp_dim": 2 * width,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": width,
        },
    )


def build_sam(config: SamConfig | None = None, seed: int = 0) -> SamModel:
    torch.manual_seed(seed)
    return SamModel(config or tiny_sam_config()).eval()


def save_sam_dir(folder: Path, config: SamConfig | None = None, seed: int = 0) -> Path:
    """config.json + model.safetensors + processor_config.json, as save_pretrained writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    build_sam(config, seed).save_pretrained(folder)
    SamProcessor(image_processor=SamImageProcessor()).save_pretrained(folder)
    return folder
