"""Masks on the three planes: each mask cut along the plane a viewport shows, drawn as in the
single view (a translucent fill in the label's colour, an opaque outline).

Why a cache: a mask is stored per stack frame, and a coronal or sagittal cut needs a row or a
column of every frame it covers; decoding the RLE of every frame on each slice change would
stall the wheel. Each mask's label volume (cropped to its bounding box) is built once and kept
by mask id while the document holds that very Mask object (masks are immutable: an edit, undo
or redo puts a new object there, which rebuilds it). Cutting a plane from it is one gather.

Why off the GUI thread: building a label volume decodes every frame of the mask; on a large CT
(a liver mask over 300 slices of 512 x 512) that is long enough to stall the window. So a missing
label volume is built on one background thread (the pool pattern of app/viewer/frame_loader.py),
the planes draw the masks already built, and ``built`` asks them to draw again when it arrives.
A result for a Mask object the document no longer holds (edited, undone, removed meanwhile) or for
another volume is dropped; ``shutdown`` drops queued builds and joins the thread (window close).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGraphicsItemGroup, QGraphicsPixmapItem

from app.widgets.mask_image import FALLBACK_COLOUR, mask_rgba
from app.widgets.qimage import to_qimage
from engine.annotations import Mask
from engine.imaging import Plane, Volume
from engine.imaging.volume_labels import LabelVolume, label_volume, plane_labels

Z_VALUE = 3  # above the image, under the crosshair and the annotation outlines


class PlaneMasks(QObject):
    """The label volumes of one volume's masks (built off the GUI thread), and the pixmap items
    that show them on a plane."""

    built = Signal()  # a label volume arrived: draw the planes' masks again
    _arrived = Signal(object, object, object)  # volume, Mask, LabelVolume (queued from the build thread)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.volume: Volume | None = None
        self._cache: dict[str, tuple[Mask, LabelVolume]] = {}
        self._wanted: dict[str, Mask] = {}  # mask id -> the Mask object whose build is queued or running
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._closed = False
        self._arrived.connect(self._on_arrived)

    def set_volume(self, volume: Volume | None) -> None:
        self._pool.clear()  # builds not started yet belong to the old volume
        self.volume, self._cache, self._wanted = volume, {}, {}

    def labels(self, mask: Mask) -> LabelVolume | None:
        """The mask's label volume; None while it is being built (``built`` follows). Rebuilt only
        when the document holds another Mask object."""
        cached = self._cache.get(mask.id)
        if cached is not None and cached[0] is mask:
            return cached[1]
        if self._wanted.get(mask.id) is not mask and self.volume is not None and not self._closed:
            self._wanted[mask.id] = mask
            volume = self.volume
            self._pool.start(lambda: self._build(volume, mask))
        return None

    def building(self) -> bool:
        """Whether a label volume is still on its way (tests and benches wait on it)."""
        return bool(self._wanted)

    def forget_except(self, ids: set[str]) -> None:
        """Drop the label volumes (and pending builds) of masks no longer in the document."""
        self._cache = {key: value for key, value in self._cache.items() if key in ids}
        self._wanted = {key: value for key, value in self._wanted.items() if key in ids}

    def shutdown(self) -> None:
        """Drop queued builds and wait for the one running (the window is closing)."""
        self._closed = True
        self._pool.clear()
        self._pool.waitForDone()

    def _build(self, volume: Volume, mask: Mask) -> None:
        """Runs on the build thread; the result is queued to the GUI thread."""
        if self._closed or self._wanted.get(mask.id) is not mask:
            return  # superseded before it started: an edit, an undo, another volume
        labels = label_volume(volume, mask.arrays())
        if not self._closed:
            self._arrived.emit(volume, mask, labels)

    def _on_arrived(self, volume: Volume, mask: Mask, labels: LabelVolume) -> None:
        if self._closed or volume is not self.volume or self._wanted.get(mask.id) is not mask:
            return  # stale: the mask changed or the volume was replaced while it was built
        del self._wanted[mask.id]
        self._cache[mask.id] = (mask, labels)
        self.built.emit()

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
            labels = self.labels(mask)
            cut = None if labels is None else plane_labels(self.volume, labels, plane, index)
            if cut is None:
                continue
            item = QGraphicsPixmapItem(
                QPixmap.fromImage(to_qimage(mask_rgba(cut, colours.get(mask.label, FALLBACK_COLOUR))))
            )
            item.setToolTip(f"{mask.label} (mask)")
            item.setData(0, mask.id)
            group.addToGroup(item)
