"""Box geometry and the text codecs of grounded answers (0-1000 grid <-> pixels of the original image).

Other code calls these functions; it never parses box markup with regexes of its own.
"""

from engine.grounding.codec import (
    BOX_END,
    BOX_START,
    REF_END,
    REF_START,
    GroundedBox,
    ParsedAnswer,
    box_to_text,
    normalize_box_markup,
    parse_answer,
)
from engine.grounding.grid import GRID, GridBox, PixelBox, grid_to_pixels, pixels_to_grid

__all__ = [
    "BOX_END",
    "BOX_START",
    "GRID",
    "REF_END",
    "REF_START",
    "GridBox",
    "GroundedBox",
    "ParsedAnswer",
    "PixelBox",
    "box_to_text",
    "grid_to_pixels",
    "normalize_box_markup",
    "parse_answer",
    "pixels_to_grid",
]
