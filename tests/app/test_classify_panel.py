"""KPL in the window: a folder of generated images classified as a pool by a tiny random open_clip
model loaded through the real loader, in the real worker thread."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from app.inference.settings import AssistantSettings, save_settings
from app.main_window import MainWindow
from engine.annotations import ImageLabel, Source
from tests.engine.tiny_clip import save_tiny_clip_dir, write_image_folder


@pytest.fixture
def window_with_folder(qtbot, tmp_path):
    clip_dir = save_tiny_clip_dir(tmp_path / "clip")
    folder = write_image_folder(tmp_path / "cxr", per_class=4)
    save_settings(AssistantSettings(clip_model=f"local-dir:{clip_dir}", knowledge="tuberculosis-cxr", device="cpu"))
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1300, 800)
    main.show()
    with qtbot.waitSignal(main.load_finished, timeout=20000):
        main.open([str(folder)])
    return main


def test_kpl_over_the_open_folder_fills_the_table_and_explains_the_label(qtbot, window_with_folder):
    main = window_with_folder
    panel = main.classify_panel
    assert not panel.missing.isVisible() and panel.classify_pool_button.isEnabled()
    stages: list[str] = []
    main.service.worker.progress.connect(lambda _id, stage, _d, _t: stages.append(stage))
    with qtbot.waitSignal(panel.run_finished, timeout=120000):
        job = panel.classify_pool()
        assert job is not None and panel.cancel_button.isEnabled()
    assert {"encoding", "knowledge"} <= set(stages)
    result = panel.result
    assert len(result.images) == 8 and panel.table.rowCount() == 8
    assert result.transductive and result.knowledge == "tuberculosis-cxr"
    labels = {panel.table.item(r, 1).text() for r in range(8)}
    assert labels <= {"normal", "tuberculosis"}
    panel.table.sortItems(2, Qt.SortOrder.DescendingOrder)  # sortable by score
    scores = [float(panel.table.item(r, 2).text()) for r in range(8)]
    assert scores == sorted(scores, reverse=True)

    row_path, _frame_number = panel.table.item(3, 0).data(Qt.ItemDataRole.UserRole)
    panel._row_clicked(3, 0)  # click opens that image
    qtbot.wait_until(lambda: main.state.frame is not None)  # decoded off the GUI thread
    assert main.state.stack.frame_source(main.state.frame_index).path == row_path
    current = panel._current()
    assert current is not None and panel.scores.rowCount() == 2
    assert panel.evidence.rowCount() == len(current.evidence) == 8  # k = 8 retrieved descriptions
    assert panel.evidence.item(0, 0).text() == current.evidence[0].description
    assert main.canvas_label.text() == f"KPL: {current.label} {current.score:.2f}"
    assert main.canvas_label.isVisible() and main.canvas_label.viewport_rect().x() == 8  # pinned, not scrolled
    assert not any(main.canvas_label.viewport_rect().intersects(r) for r in main.corners.occupied())

    assert panel.accept_label()
    [accepted] = [a for a in main.annotations.doc.annotations(main.annotations.image_id) if isinstance(a, ImageLabel)]
    assert accepted.label == current.label and accepted.source is Source.CLASSIFIER
    assert current.evidence[0].description in accepted.note


def test_a_single_image_is_not_transductive_and_says_so(qtbot, window_with_folder):
    panel = window_with_folder.classify_panel
    with qtbot.waitSignal(panel.run_finished, timeout=120000):
        panel.classify_current()
    assert panel.result is not None, panel.stage.text()
    assert len(panel.result.images) == 1
    assert not panel.result.transductive and panel.note.text()


def test_cancelled_classification_changes_nothing(qtbot, window_with_folder):
    panel = window_with_folder.classify_panel
    with qtbot.waitSignal(panel.run_finished, timeout=120000):
        panel.classify_pool()
        panel.cancel_button.click()
    assert panel.result is None and panel.table.rowCount() == 0
    assert panel.stage.text().startswith("Cancelled")


def test_without_a_clip_model_the_panel_says_what_is_missing(qtbot, tmp_path):
    save_settings(AssistantSettings())
    main = MainWindow()
    qtbot.addWidget(main)
    panel = main.classify_panel
    assert "No CLIP model" in panel.missing.text() and not panel.classify_pool_button.isEnabled()
    # the same compact banner as the Ask panel: one line and one action, details in the tooltip
    assert type(panel.missing) is type(main.ask_panel.missing)
    assert panel.settings_button is panel.missing.button and panel.settings_button.text() == "Set CLIP model…"
    assert "docs/models/weights.md" in panel.missing.toolTip()
