"""How a mask looks: a translucent fill in the label's colour with an opaque outline.

Shared by the single view (app/segmentation) and the three-plane view (app/volumes), which may
not import each other, so a mask looks the same wherever it is drawn.
"""

from __future__ import annotations

import numpy as np

FILL_ALPHA = 90  # of 255: the anatomy under the mask stays readable
OUTLINE_ALPHA = 255
FALLBACK_COLOUR = "#4fc3f7"


def outline(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels: inside, with a 4-neighbour outside (or at the image edge)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def mask_rgba(mask: np.ndarray, colour: str) -> np.ndarray:
    """(H, W, 4) RGBA: the fill at FILL_ALPHA, the outline opaque, transparent outside."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    rgba = np.zeros((*mask.shape, 4), dtype=np.uint8)
    rgba[mask, :3] = rgb
    rgba[mask, 3] = FILL_ALPHA
    rgba[outline(mask), 3] = OUTLINE_ALPHA
    return rgba
