"""The window's Ask panel with a family other than ClinKD's Qwen2-VL: the GUI goes through the same
loader, so a tiny random Qwen2.5-VL answers, and its absolute-pixel JSON box (scripted through the
real streamer: the plumbing is under test, never the words) lands on the right CT pixels."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

from app.inference.settings import AssistantSettings
from engine.clinkd import Task
from tests.app.test_assistant import make_window, open_and_wait
from tests.engine.test_clinkd_families import script_answer
from tests.engine.tiny_families import tiny_family_checkpoint
from tests.engine.tiny_qwen import TINY_MAX_PIXELS


def test_ask_panel_answers_with_a_qwen25_model(qtbot, ct, tmp_path_factory, monkeypatch):
    folder = tiny_family_checkpoint(tmp_path_factory, "qwen2_5_vl")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # a 128 x 128 CT within 112² pixels resizes to 112 x 112: Qwen2.5-VL's numbers are pixels of that
    answer = '```json\n[{"bbox_2d": [28, 56, 84, 112], "label": "spine"}]\n```'
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    script_answer(monkeypatch, Qwen2_5_VLForConditionalGeneration, tokenizer, end, answer)
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(folder), max_pixels=TINY_MAX_PIXELS, device="cpu"))
    open_and_wait(qtbot, main, ct)
    main.ask_panel.set_task(Task.VG)
    main.ask_panel.question.setText("spine")
    with qtbot.waitSignal(main.ask_panel.answer_finished, timeout=60000):
        QTest.mouseClick(main.ask_panel.ask_button, Qt.MouseButton.LeftButton)
    turn = main.ask_panel.conversations.turns(main.state.stack.key)[0]
    assert turn.status == "done"
    [item] = main.answer_overlay.items.values()
    assert item.rect().getCoords() == (32.0, 64.0, 96.0, 128.0) and item.box.phrase == "spine"
    chat = main.ask_panel.chat.toPlainText()
    assert "spine" in chat and "bbox_2d" not in chat  # the markup is read, not shown
