"""Box geometry and the text codecs of grounded answers (0-1000 grid <-> pixels of the original image).

Other code calls these functions; it never parses box markup with regexes of its own.
"""

from engine.grounding.codec import (
    BOX_END,
    BOX_START,
    DIALECTS,
    REF_END,
    REF_START,
    GroundedBox,
    ParsedAnswer,
    box_to_text,
    detect_dialect,
    normalize_box_markup,
    parse_answer,
)
from engine.grounding.grid import (
    GRID,
    GRID_FRAME,
    Frame,
    GridBox,
    PixelBox,
    frame_to_pixels,
    grid_to_pixels,
    pixels_to_frame,
    pixels_to_grid,
)

__all__ = [
    "BOX_END",
    "BOX_START",
    "DIALECTS",
    "GRID",
    "GRID_FRAME",
    "REF_END",
    "REF_START",
    "Frame",
    "GridBox",
    "GroundedBox",
    "ParsedAnswer",
    "PixelBox",
    "box_to_text",
    "detect_dialect",
    "frame_to_pixels",
    "grid_to_pixels",
    "normalize_box_markup",
    "parse_answer",
    "pixels_to_frame",
    "pixels_to_grid",
]
