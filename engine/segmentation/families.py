"""What differs between the Segment-Anything families, in one record per family.

Why a record: SAM v1 and SAM 2 share the predictor's shape (embed once, decode per prompt, map the
low-res logits back to the image), but not the details — SAM v1 resizes the longest edge to 1024
and pads, SAM 2 stretches to 1024×1024 without padding; SAM v1's processor maps numpy prompts,
SAM 2's torch ones. Keeping those few facts here keeps ``predictor.py`` free of family branches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


def _sam_reshaped(inputs: dict) -> tuple[int, int]:
    """SAM v1: the size after the longest-edge resize, before padding (the processor reports it)."""
    return tuple(int(v) for v in inputs["reshaped_input_sizes"][0])


def _sam_post_process(processor: object, logits: torch.Tensor, original: tuple[int, int], reshaped: tuple[int, int]):
    """SAM v1: upscale to the padded 1024 input, cut the padding, scale to the original size."""
    return processor.post_process_masks([logits], [original], [reshaped], binarize=True)[0]


def _sam2_reshaped(inputs: dict) -> tuple[int, int]:
    """SAM 2 stretches every image to the full square input: nothing to cut away afterwards."""
    height, width = inputs["pixel_values"].shape[-2:]
    return int(height), int(width)


def _sam2_post_process(processor: object, logits: torch.Tensor, original: tuple[int, int], reshaped: tuple[int, int]):
    """SAM 2: one bilinear resize of the 256×256 logits straight to the original size."""
    return processor.post_process_masks([logits], [list(original)], binarize=True)[0]


def _sam_decode(
    model: torch.nn.Module, features: torch.Tensor, prompt: dict[str, torch.Tensor], multimask: bool, memo: dict
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM v1: prompt encoder + mask decoder, as ``SamModel.forward`` runs them, but with the
    image-wide positional embedding computed once per model (``memo``): it depends on the weights
    only, and recomputing it was ~4 ms of a ~50 ms prompt on a 2-core CPU (bench_segment.py)."""
    if "positional" not in memo:
        memo["positional"] = model.get_image_wide_positional_embeddings().contiguous()  # as forward's repeat leaves it
    points = prompt.get("input_points")
    labels = prompt.get("input_labels")
    if points is not None and labels is None:
        labels = torch.ones_like(points[:, :, :, 0], dtype=torch.int)
    sparse, dense = model.prompt_encoder(
        input_points=points, input_labels=labels, input_boxes=prompt.get("input_boxes"), input_masks=None
    )
    masks, scores = model.mask_decoder(
        image_embeddings=features,
        image_positional_embeddings=memo["positional"],
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )
    return masks, scores


def _model_decode(
    model: torch.nn.Module, features: object, prompt: dict[str, torch.Tensor], multimask: bool, memo: dict
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM 2: the model's own forward on the cached multi-level features."""
    out = model(image_embeddings=features, multimask_output=multimask, **prompt)
    return out.pred_masks, out.iou_scores


def _numpy_coords(values: np.ndarray) -> np.ndarray:
    return values


def _torch_coords(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float64)


@dataclass(frozen=True)
class Family:
    """How one Segment-Anything family is loaded, embedded, prompted and post-processed."""

    model_type: str  # config.json model_type
    model_class: str  # the transformers model class
    processor_class: str  # the transformers processor class
    name: str  # for sentences: "SAM", "SAM 2", "SAM 2 video"
    video: bool  # True: propagates with its own memory (VideoSegmenter), not a one-slice Segmenter
    reshaped_size: Callable[[dict], tuple[int, int]]
    post_process: Callable[[object, torch.Tensor, tuple[int, int], tuple[int, int]], torch.Tensor]
    coords: Callable[[np.ndarray], object]  # what the processor's _normalize_coordinates takes
    decode: Callable[[torch.nn.Module, object, dict, bool, dict], tuple[torch.Tensor, torch.Tensor]] = _model_decode
    """(model, cached image features, prompt tensors, multimask, per-model memo) -> (logits, IoU scores)."""


SAM = Family(
    "sam", "SamModel", "SamProcessor", "SAM", False, _sam_reshaped, _sam_post_process, _numpy_coords, _sam_decode
)
SAM2 = Family("sam2", "Sam2Model", "Sam2Processor", "SAM 2", False, _sam2_reshaped, _sam2_post_process, _torch_coords)
SAM2_VIDEO = Family(
    "sam2_video",
    "Sam2VideoModel",
    "Sam2VideoProcessor",
    "SAM 2 video",
    True,
    _sam2_reshaped,
    _sam2_post_process,
    _torch_coords,
)
FAMILIES: dict[str, Family] = {family.model_type: family for family in (SAM, SAM2, SAM2_VIDEO)}
"""config.json model_type -> family (MedSAM's weights are model_type 'sam')."""
