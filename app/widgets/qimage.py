"""numpy display pixels -> QImage, copied so the QImage never points at freed numpy memory."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def to_qimage(pixels: np.ndarray) -> QImage:
    """Wrap an (H, W) or (H, W, 3) uint8 array and deep-copy it (QImage does not own numpy buffers)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    if pixels.ndim == 2:
        image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_Grayscale8)
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_RGB888)
    else:
        raise ValueError(f"expected (H, W) or (H, W, 3) uint8 pixels, got shape {pixels.shape}")
    return image.copy()
