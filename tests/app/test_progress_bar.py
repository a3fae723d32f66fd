"""The progress bar every worker report moves (pre-annotation, KPL, PACS): no paint of its own."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject

from app.widgets.progress_bar import ProgressBar


class PaintCounter(QObject):
    """Counts the paint events a widget receives."""

    def __init__(self) -> None:
        super().__init__()
        self.paints = 0

    def eventFilter(self, watched, event) -> bool:
        self.paints += event.type() == QEvent.Type.Paint
        return False


def test_a_new_value_or_range_is_painted_by_the_event_loop_not_inside_the_call(qtbot) -> None:
    """QProgressBar.setValue repaints synchronously when the bar moves (and a range that resets it,
    too); a report must not cost the GUI thread a paint outside the event loop."""
    bar = ProgressBar()
    qtbot.addWidget(bar)
    bar.resize(200, 20)
    counter = PaintCounter()
    bar.installEventFilter(counter)
    bar.show()
    qtbot.waitExposed(bar)
    qtbot.wait_until(lambda: counter.paints > 0)
    for change in (lambda: bar.setRange(0, 10), lambda: bar.setValue(5), lambda: bar.setRange(20, 30)):
        painted = counter.paints
        change()
        assert counter.paints == painted  # nothing painted inside the call
        assert bar.updatesEnabled()
        qtbot.wait_until(lambda painted=painted: counter.paints > painted)  # the next frame paints it
    assert (bar.minimum(), bar.maximum()) == (20, 30) and bar.value() == 19  # the range change reset it
