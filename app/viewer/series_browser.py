"""The Images list as a series browser: a thumbnail, the modality, description and frame count.

The list widget, its rows, item text and tooltips stay the main window's (other code names the
items and marks decode failures with the item icon); this module only adds data under its own
roles and a delegate that draws it, so naming and browsing change independently.

A thumbnail is the middle frame rendered with the stack's initial window. It is decoded and
rendered on a thumbnail thread of its own (never the GUI thread, and never in the FrameLoader's
pool, whose newest-request-first clearing would drop it); a placeholder shows until it arrives
and a frame that cannot be decoded shows a mark instead of a picture.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import Enum

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, QRect, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPainter, QPalette
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.widgets.qimage import to_qimage
from engine.imaging import ImageLoadError, ImageStack, initial_window, render

THUMB = 64  # thumbnail side in device-independent pixels
MARGIN = 4
THUMBNAIL_ROLE = Qt.ItemDataRole.UserRole + 16  # QImage, once rendered
DETAILS_ROLE = Qt.ItemDataRole.UserRole + 17  # "CT · 15 frames · description"
THUMB_STATE_ROLE = Qt.ItemDataRole.UserRole + 18  # ThumbState


class ThumbState(Enum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


def middle_frame(stack: ImageStack) -> int:
    """The frame a thumbnail shows: the middle of a series says more about it than its first slice."""
    return stack.n_frames // 2


def details_text(stack: ImageStack) -> str:
    """Modality, frame count and series description (the file name when the header has none)."""
    description = ""
    try:
        header = stack.header(0)  # headers are in memory: no file access on the GUI thread
    except (IndexError, OSError):
        header = None
    if header is not None:
        description = str(header.get("SeriesDescription") or "").strip()
    if not description and stack.paths:
        description = os.path.basename(stack.paths[0])
    count = f"{stack.n_frames} frame{'s' if stack.n_frames != 1 else ''}"
    return " · ".join(part for part in (stack.modality or stack.kind.upper(), count, description) if part)


class ThumbnailLoader(QObject):
    """Renders thumbnails on one worker thread; results are queued to the GUI thread."""

    ready = Signal(object, QImage)  # stack, thumbnail
    failed = Signal(object, str)  # stack, why

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # thumbnails must not compete with the frame on screen
        self._closed = False

    def request(self, stack: ImageStack) -> None:
        if not self._closed:
            self._pool.start(lambda: self._render(stack))

    def shutdown(self) -> None:
        """Drop queued thumbnails and wait for the one being rendered (the window is closing)."""
        self._closed = True
        self._pool.clear()
        self._pool.waitForDone()

    def _render(self, stack: ImageStack) -> None:
        """Runs on the thumbnail thread."""
        try:
            frame = stack.frame(middle_frame(stack))
            step = max(1, max(stack.rows, stack.columns) // (2 * THUMB))  # no need for every pixel
            image = to_qimage(render(frame, initial_window(frame), step=step))
            image = image.scaled(
                THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        except ImageLoadError as error:
            if not self._closed:
                self.failed.emit(stack, str(error))
            return
        except Exception as error:  # noqa: BLE001 - a thumbnail must never take the window down; it shows a mark
            if not self._closed:
                self.failed.emit(stack, f"no preview: {error}")
            return
        if not self._closed:
            self.ready.emit(stack, image)


class SeriesBrowser(QObject):
    """Adds thumbnails and a details line to each row of the Images list as rows are added.

    Row ``r`` of the list is ``stacks()[r]``; the main window appends a stack before its row, so
    the stack is known when the row arrives, whatever text the row is given.
    """

    thumbnail_done = Signal(object)  # stack: its thumbnail (or its failure mark) is on the list

    def __init__(self, image_list: QListWidget, stacks: Callable[[], list[ImageStack]], parent: QObject) -> None:
        super().__init__(parent)
        self.image_list = image_list
        self.stacks = stacks
        self.loader = ThumbnailLoader(self)
        self.loader.ready.connect(self._on_ready)  # bound methods: queued to the GUI thread
        self.loader.failed.connect(self._on_failed)
        image_list.setItemDelegate(SeriesItemDelegate(image_list))
        image_list.setIconSize(QSize(THUMB, THUMB))
        image_list.setUniformItemSizes(True)
        image_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        image_list.model().rowsInserted.connect(self._on_rows_inserted)

    def shutdown(self) -> None:
        self.loader.shutdown()

    def _on_rows_inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        stacks = self.stacks()
        for row in range(first, last + 1):
            item = self.image_list.item(row)
            if item is None or row >= len(stacks):
                continue
            stack = stacks[row]
            item.setData(DETAILS_ROLE, details_text(stack))
            item.setData(THUMB_STATE_ROLE, ThumbState.PENDING)
            self.loader.request(stack)

    def _on_ready(self, stack: ImageStack, image: QImage) -> None:
        item = self._item(stack)
        if item is not None:
            item.setData(THUMBNAIL_ROLE, image)
            item.setData(THUMB_STATE_ROLE, ThumbState.READY)
        self.thumbnail_done.emit(stack)

    def _on_failed(self, stack: ImageStack, _message: str) -> None:
        item = self._item(stack)
        if item is not None:
            item.setData(THUMB_STATE_ROLE, ThumbState.FAILED)
        self.thumbnail_done.emit(stack)

    def _item(self, stack: ImageStack) -> QListWidgetItem | None:
        for row, open_stack in enumerate(self.stacks()):
            if open_stack is stack:
                return self.image_list.item(row)
        return None


class SeriesItemDelegate(QStyledItemDelegate):
    """Thumbnail on the left; the item's own text, then the details line in a smaller, dimmer font.

    The item's icon (the decode-failure warning) is drawn small over the thumbnail's corner.
    """

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        base = super().sizeHint(option, index)
        return QSize(base.width(), THUMB + 2 * MARGIN)

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        widget = opt.widget
        style = widget.style() if widget is not None else None
        painter.save()
        if style is not None:
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, opt, painter, widget)
        rect = opt.rect
        thumb = QRect(rect.left() + MARGIN, rect.top() + MARGIN, THUMB, THUMB)
        _paint_thumbnail(painter, thumb, index, opt)
        icon = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(icon, QIcon) and not icon.isNull():
            icon.paint(painter, QRect(thumb.right() - 17, thumb.top() + 1, 16, 16))
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        group = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        text_left = thumb.right() + 2 * MARGIN
        text_rect = QRect(text_left, rect.top() + MARGIN, rect.right() - text_left - MARGIN, THUMB)
        title_font = QFont(opt.font)
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.setPen(opt.palette.color(group))
        metrics = painter.fontMetrics()
        title = metrics.elidedText(
            str(index.data(Qt.ItemDataRole.DisplayRole) or ""), opt.textElideMode, text_rect.width()
        )
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, title)
        details = str(index.data(DETAILS_ROLE) or "")
        if details:
            painter.setFont(opt.font)
            dim = opt.palette.color(group)
            if not selected:
                dim.setAlpha(170)
            painter.setPen(dim)
            below = text_rect.adjusted(0, metrics.height() + 2, 0, 0)
            wrapped = painter.fontMetrics().elidedText(details, opt.textElideMode, below.width() * 2)
            painter.drawText(
                below, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap, wrapped
            )
        painter.restore()


def _paint_thumbnail(
    painter: QPainter, thumb: QRect, index: QModelIndex | QPersistentModelIndex, opt: QStyleOptionViewItem
) -> None:
    painter.fillRect(thumb, QColor(12, 12, 12))
    state = index.data(THUMB_STATE_ROLE)
    image = index.data(THUMBNAIL_ROLE)
    if state is ThumbState.READY and isinstance(image, QImage) and not image.isNull():
        size = image.size().scaled(thumb.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(thumb.center())
        painter.drawImage(target, image)
        return
    painter.setPen(QColor(220, 80, 80) if state is ThumbState.FAILED else QColor(140, 140, 140))
    font = QFont(opt.font)
    if state is ThumbState.FAILED:
        font.setPointSizeF(font.pointSizeF() * 2)
    painter.setFont(font)
    mark = "✕" if state is ThumbState.FAILED else "…"
    painter.drawText(thumb, Qt.AlignmentFlag.AlignCenter, mark)
