"""Masks on the three planes: each mask cut along the plane a viewport shows, drawn as in the
single view (a translucent fill in the label's colour, an opaque outline).

Why a cache: a mask is stored per stack frame, and a coronal or sagittal cut needs a row or a
column of every frame it covers; decoding the RLE of every frame on each slice change would
stall the wheel. Each mask's label volume (cropped to its bounding box) is built once and kept
by mask id while the document holds that very Mask object (masks are immutable: an edit, undo
or redo puts a new object there, which rebuilds it). Cutting a plane from it is one gather.
"""

from __future__ import annotations

from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGraphicsItemGroup, QGraphicsPixmapItem

from app.widgets.mask_image import FALLBACK_COLOUR, mask_rgba
from app.widgets.qimage import to_qimage
from engine.annotations import Mask
from engine.imaging import Plane, Volume
from engine.imaging.volume_labels import LabelVolume, label_volume, plane_labels

Z_VALUE = 3  # above the image, under the crosshair and the annotation outlines


class PlaneMasks:
    """The label volumes of one volume's masks, and the pixmap items that show them on a plane."""

    def __init__(self) -> None:
        self.volume: Volume | None = None
        self._cache: dict[str, tuple[Mask, LabelVolume]] = {}

    def set_volume(self, volume: Volume | None) -> None:
        self.volume, self._cache = volume, {}

    def labels(self, mask: Mask) -> LabelVolume:
        """The mask's label volume, rebuilt only when the document holds another Mask object."""
        cached = self._cache.get(mask.id)
        if cached is None or cached[0] is not mask:
            cached = (mask, label_volume(self.volume, mask.arrays()))
            self._cache[mask.id] = cached
        return cached[1]

    def forget_except(self, ids: set[str]) -> None:
        """Drop the label volumes of masks no longer in the document (removed, undone)."""
        self._cache = {key: value for key, value in self._cache.items() if key in ids}

    def draw(self, group: QGraphicsItemGroup, plane: Plane, index: int, masks: list[Mask], colours: dict) -> None:
        """Replace ``group``'s items with one pixmap per mask that has pixels on this plane slice.

        The pixmap is the plane's display size at the scene origin, so it lies exactly on the
        plane's image (scene coordinates are display pixels) and zooms and pans with it.
        """
        for item in group.childItems():
            group.removeFromGroup(item)
            if item.scene() is not None:
                item.scene().removeItem(item)
        if self.volume is None:
            return
        for mask in masks:
            cut = plane_labels(self.volume, self.labels(mask), plane, index)
            if cut is None:
                continue
            item = QGraphicsPixmapItem(
                QPixmap.fromImage(to_qimage(mask_rgba(cut, colours.get(mask.label, FALLBACK_COLOUR))))
            )
            item.setToolTip(f"{mask.label} (mask)")
            item.setData(0, mask.id)
            group.addToGroup(item)
