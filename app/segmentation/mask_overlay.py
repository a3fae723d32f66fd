"""Masks on the single-view canvas: a translucent fill in the label's colour with an opaque outline.

One pixmap item per mask with pixels on the shown frame, rebuilt from the document on every
document event (add, undo, redo, remove, relabel) and frame change, so what is drawn is always
the document. The pixmap is image-sized and sits at the image origin, so it zooms and pans with
the frame without any coordinate mapping of its own.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene

from app.widgets.mask_image import FALLBACK_COLOUR, FILL_ALPHA, mask_rgba, outline
from app.widgets.qimage import to_qimage

__all__ = ["FILL_ALPHA", "MaskOverlay", "mask_rgba", "outline"]


class MaskOverlay:
    """The shown frame's masks (of the visible sources) as pixmap items; ``items`` by mask id."""

    Z_VALUE = 3  # above the image, under boxes (z 10) and measurements (z 5)

    def __init__(self, scene: QGraphicsScene, state, annotations) -> None:
        self.scene, self.state, self.annotations = scene, state, annotations
        self.items: dict[str, QGraphicsPixmapItem] = {}
        state.frame_changed.connect(lambda _i: self.refresh())
        state.stack_changed.connect(self.refresh)
        annotations.changed.connect(lambda _e: self.refresh())
        annotations.current_image_changed.connect(self.refresh)

    def refresh(self) -> None:
        for item in self.items.values():
            self.scene.removeItem(item)
        self.items = {}
        controller = self.annotations
        if controller.doc is None or controller.image_id is None or self.state.stack is None:
            return
        frame = self.state.frame_index
        colours = {label.name: label.color for label in controller.doc.labels}
        for mask in controller.doc.masks(controller.image_id, frame):
            if mask.source not in controller.visible_sources:
                continue
            pixels = mask_rgba(mask.array(frame), colours.get(mask.label, FALLBACK_COLOUR))
            item = QGraphicsPixmapItem(QPixmap.fromImage(to_qimage(pixels)))
            item.setZValue(self.Z_VALUE)
            item.setToolTip(f"{mask.label} (mask)")
            self.scene.addItem(item)
            self.items[mask.id] = item

    def show_working(self, key: str, mask: np.ndarray, colour: str) -> None:
        """A brush stroke in progress: ``key``'s item (a mask's id, or a new mask's) shows ``mask``
        until the document next changes, which redraws everything from the document again."""
        pixmap = QPixmap.fromImage(to_qimage(mask_rgba(mask, colour)))
        item = self.items.get(key)
        if item is None:
            item = QGraphicsPixmapItem()
            item.setZValue(self.Z_VALUE)
            self.scene.addItem(item)
            self.items[key] = item
        item.setPixmap(pixmap)
