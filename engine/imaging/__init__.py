"""engine.imaging: files -> frames of modality values -> display pixels.

Public API (the names in ``__all__``; where it sits in the layering: docs/development/architecture.md):
open files and folders into lazily decoded stacks, render frames through one display pipeline,
presets and metadata.
"""

from .decoder_pool import set_decode_timeout
from .decoders import decoder_packages, syntax_label
from .dicom_index import MAX_PIXELS, MAX_SIDE
from .dicom_params import PixelSpacing
from .display import auto_window, display_values, initial_window, render, render_rgb
from .errors import ImageLoadError, LoadError
from .frame import Frame, LutData, PixelParams, Window, frame_from_array
from .metadata import PHI_KEYWORDS, TagNode, key_facts, tag_tree
from .presets import Preset, find_preset, load_presets, save_user_preset
from .stack import FrameSource, ImageStack, OpenResult, open_image, open_paths
from .volume import (
    Plane,
    PlaneAxes,
    Volume,
    VolumeError,
    VolumeGeometry,
    iter_load_volume,
    load_volume,
    volume_geometry,
)

__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE",
    "PHI_KEYWORDS",
    "Frame",
    "FrameSource",
    "ImageLoadError",
    "ImageStack",
    "LoadError",
    "LutData",
    "OpenResult",
    "PixelParams",
    "PixelSpacing",
    "Plane",
    "PlaneAxes",
    "Preset",
    "TagNode",
    "Volume",
    "VolumeError",
    "VolumeGeometry",
    "Window",
    "auto_window",
    "decoder_packages",
    "display_values",
    "find_preset",
    "frame_from_array",
    "initial_window",
    "iter_load_volume",
    "key_facts",
    "load_presets",
    "load_volume",
    "open_image",
    "open_paths",
    "render",
    "render_rgb",
    "save_user_preset",
    "set_decode_timeout",
    "syntax_label",
    "tag_tree",
    "volume_geometry",
]
