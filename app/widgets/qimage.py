"""numpy display pixels -> QImage, copied so the QImage never points at freed numpy memory.

RGBA is for overlays drawn over the image (a mask's translucent fill), grey and RGB for the image.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def to_qimage(pixels: np.ndarray) -> QImage:
    """Wrap an (H, W), (H, W, 3) or (H, W, 4 RGBA) uint8 array and deep-copy it (QImage does not own numpy buffers)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    if pixels.ndim == 2:
        image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_Grayscale8)
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_RGB888)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_RGBA8888)
    else:
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4) uint8 pixels, got shape {pixels.shape}")
    return image.copy()
