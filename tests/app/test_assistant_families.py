"""The window's Ask panel with every family other than ClinKD's Qwen2-VL (whose window tests are in
test_assistant.py): the GUI goes through the same loader, so a tiny random checkpoint of each family
answers, and its box, written in the family's own dialect (scripted through the real streamer: the
plumbing is under test, never the words), lands on the right CT pixels."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.inference.settings import AssistantSettings
from engine.clinkd import LoadSettings, Task, load_model
from tests.app.test_assistant import make_window, open_and_wait
from tests.engine.test_clinkd_families import script_answer
from tests.engine.tiny_families import tiny_family_checkpoint
from tests.engine.tiny_qwen import TINY_MAX_PIXELS

# The box (32, 64)-(96, 128) on the 128 x 128 demo-sized CT, in each family's dialect and numbers:
# Qwen2.5-VL's are pixels of its resized input (128² within 112² pixels resizes to 112 x 112),
# Qwen3-VL's are on the 0-1000 grid, MedGemma's are on the grid with y first, after "Final Answer:".
ANSWERS = {
    "qwen2_5_vl": '```json\n[{"bbox_2d": [28, 56, 84, 112], "label": "spine"}]\n```',
    "qwen3_vl": '```json\n[{"bbox_2d": [250, 500, 750, 1000], "label": "spine"}]\n```',
    "gemma3": 'Final Answer: ```json\n[{"box_2d": [500, 250, 1000, 750], "label": "spine"}]\n```',
}


@pytest.mark.parametrize("model_type", sorted(ANSWERS))
def test_ask_panel_answers_with_each_family(qtbot, ct, tmp_path_factory, monkeypatch, model_type):
    folder = tiny_family_checkpoint(tmp_path_factory, model_type)
    loaded = load_model(
        LoadSettings(str(folder), device="cpu", min_pixels=TINY_MAX_PIXELS // 4, max_pixels=TINY_MAX_PIXELS)
    )
    assert loaded.family.model_type == model_type
    tokenizer = loaded.processor.tokenizer
    script_answer(monkeypatch, type(loaded.model), tokenizer, loaded.eos_token_ids[0], ANSWERS[model_type])
    del loaded
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(folder), max_pixels=TINY_MAX_PIXELS, device="cpu"))
    open_and_wait(qtbot, main, ct)
    main.ask_panel.set_task(Task.VG)
    main.ask_panel.question.setText("spine")
    with qtbot.waitSignal(main.ask_panel.answer_finished, timeout=60000):
        QTest.mouseClick(main.ask_panel.ask_button, Qt.MouseButton.LeftButton)
    turn = main.ask_panel.conversations.turns(main.state.stack.key)[0]
    assert turn.status == "done"
    [item] = main.answer_overlay.items.values()
    assert item.rect().getCoords() == pytest.approx((32.0, 64.0, 96.0, 128.0)) and item.box.phrase == "spine"
    chat = main.ask_panel.chat.toPlainText()
    assert "spine" in chat and "box_2d" not in chat  # the markup is read, not shown
