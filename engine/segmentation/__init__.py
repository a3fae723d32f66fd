"""Promptable segmentation (SAM, MedSAM, SAM 2.1): box/point prompts to masks, propagation through
slices, and measurements of masks on the voxel geometry.

Typical use from a worker thread::

    segmenter = load_segmenter("/models/sam-vit-base")
    segmenter.embed(render_rgb(frame, window), key="series/12/W400L40/axial")
    result = segmenter.segment("series/12/W400L40/axial", box=(40, 52, 120, 130))
    run = propagate(segmenter, rendered_slice, start=12, frames=(0, 39), box=(40, 52, 120, 130))
"""

from typing import TYPE_CHECKING

from engine.lazy import lazy_attributes
from engine.segmentation.errors import SegmenterError, SegmenterOutOfMemory
from engine.segmentation.prompts import Propagation, SegmentResult, check_box, check_points, mask_box

# Errors and prompt checks are light (numpy); the model modules import torch and transformers,
# and the measurements scipy, so they load on first use (PEP 562).
_LAZY = {
    "engine.segmentation.loader": ("load_segmenter", "read_segmenter_config"),
    "engine.segmentation.predictor": ("Embedding", "Segmenter", "SegmenterInfo"),
    "engine.segmentation.propagate": ("propagate",),
    "engine.segmentation.video": ("VideoSegmenter",),
    "engine.segmentation.measure": (
        "HuStats",
        "MaskMeasurements",
        "area_mm2",
        "hu_stats",
        "longest_diameter_mm",
        "mask_values",
        "measure_mask",
        "measure_slice",
        "volume_ml",
    ),
}

if TYPE_CHECKING:
    from engine.segmentation.loader import load_segmenter, read_segmenter_config
    from engine.segmentation.measure import (
        HuStats,
        MaskMeasurements,
        area_mm2,
        hu_stats,
        longest_diameter_mm,
        mask_values,
        measure_mask,
        measure_slice,
        volume_ml,
    )
    from engine.segmentation.predictor import Embedding, Segmenter, SegmenterInfo
    from engine.segmentation.propagate import propagate
    from engine.segmentation.video import VideoSegmenter

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "Embedding",
    "HuStats",
    "MaskMeasurements",
    "Propagation",
    "SegmentResult",
    "Segmenter",
    "SegmenterError",
    "SegmenterInfo",
    "SegmenterOutOfMemory",
    "VideoSegmenter",
    "area_mm2",
    "check_box",
    "check_points",
    "hu_stats",
    "load_segmenter",
    "longest_diameter_mm",
    "mask_box",
    "mask_values",
    "measure_mask",
    "measure_slice",
    "propagate",
    "read_segmenter_config",
    "volume_ml",
]
