"""The app's icon is the bundled SVG that `clinlens install-desktop` also installs."""

from __future__ import annotations

from PySide6.QtGui import QIcon

from app.application import ICON
from cli.desktop import ICON_SOURCE
from engine.paths import resources_dir


def test_the_window_icon_renders_from_the_bundled_svg(qapp):
    assert resources_dir() / ICON_SOURCE == ICON
    pixmap = QIcon(str(ICON)).pixmap(64, 64)
    assert not pixmap.isNull() and pixmap.width() == 64
    image = pixmap.toImage()
    assert len({image.pixel(x, y) for x in range(0, 64, 4) for y in range(0, 64, 4)}) > 3  # drawn, not blank
