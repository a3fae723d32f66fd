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


# -- SAM 2 ------------------------------------------------------------------------------------
# The real 1024-pixel input and 256×256 low-res masks; a four-stage Hiera of five blocks,
# 16..128 channels wide, a 128-wide FPN, decoder and memory. Widths shared by the sub-configs
# (FPN = prompt encoder = mask decoder = memory attention) must agree, as in the real models.

SAM2_WIDTH = 128  # above the 64 memory channels: object pointers are split into 64-wide pieces


def tiny_sam2_parts(width: int = SAM2_WIDTH) -> dict:
    """The sub-configs shared by Sam2Config and Sam2VideoConfig."""
    dims = [16, 32, 64, 128]
    return {
        "vision_config": {
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": dims[0],
                "blocks_per_stage": [1, 1, 2, 1],
                "embed_dim_per_stage": dims,
                "num_attention_heads_per_stage": [1, 1, 1, 1],
                "global_attention_blocks": [3],  # not a pooling block (the first of a stage),
            },
            "backbone_channel_list": dims[::-1],
            "fpn_hidden_size": width,
        },
        "prompt_encoder_config": {"hidden_size": width},
        "mask_decoder_config": {
            "hidden_size": width,
            "mlp_dim": 2 * width,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": width,
        },
    }


def tiny_sam2_config(width: int = SAM2_WIDTH):
    from transformers import Sam2Config

    return Sam2Config(**tiny_sam2_parts(width))


def tiny_sam2_video_config(width: int = SAM2_WIDTH):
    from transformers import Sam2VideoConfig

    return Sam2VideoConfig(
        **tiny_sam2_parts(width),
        num_maskmem=3,
        memory_attention_hidden_size=width,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=2 * width,
        memory_encoder_hidden_size=width,
        memory_encoder_output_channels=64,  # the memory attention hard-codes 64 key/value channels
        mask_downsampler_embed_dim=width,
        memory_fuser_embed_dim=width,
        memory_fuser_intermediate_dim=2 * width,
        memory_fuser_num_layers=1,
    )


def save_sam2_dir(folder: Path, seed: int = 0) -> Path:
    """A Sam2Model folder as save_pretrained writes it (config, weights, processor settings)."""
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    Sam2Model(tiny_sam2_config()).eval().save_pretrained(folder)
    Sam2Processor(image_processor=Sam2ImageProcessor()).save_pretrained(folder)
    return folder


def save_sam2_video_dir(folder: Path, seed: int = 0) -> Path:
    """A Sam2VideoModel folder as save_pretrained writes it, with its video processor."""
    from transformers import Sam2ImageProcessor, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    Sam2VideoModel(tiny_sam2_video_config()).eval().save_pretrained(folder)
    Sam2VideoProcessor(image_processor=Sam2ImageProcessor(), video_processor=Sam2VideoVideoProcessor()).save_pretrained(
        folder
    )
    return folder
