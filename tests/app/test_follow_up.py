"""Follow-up questions in the Ask panel (history sent, New conversation, the budget notice) and the
box prompt following the selection and the document (undo), with the tiny Qwen2-VL through the
real worker thread. The model's tokens are scripted through the real streamer; the prompt it
receives is recorded and decoded."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

from app.inference.settings import AssistantSettings
from engine.clinkd import Task
from tests.app.test_assistant import make_window, open_and_wait
from tests.engine.tiny_qwen import TINY_MAX_PIXELS

ANSWER = "It is at <|box_start|>(250,500),(750,1000)<|box_end|>."


@pytest.fixture
def prompts(monkeypatch, tiny_folder):
    """generate() answers ANSWER and records the prompt it was given (decoded, special tokens kept)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    seen: list[str] = []

    def generate(self, input_ids=None, streamer=None, stopping_criteria=(), **_):
        seen.append(tokenizer.decode(input_ids[0], skip_special_tokens=False))
        tokens = [*tokenizer(ANSWER, add_special_tokens=False).input_ids, tokenizer.convert_tokens_to_ids("<|im_end|>")]
        streamer.put(input_ids)
        out = input_ids
        for token in tokens:
            out = torch.cat([out, torch.tensor([[token]])], dim=1)
            streamer.put(torch.tensor([token]))
        streamer.end()
        return out

    monkeypatch.setattr(Qwen2VLForConditionalGeneration, "generate", generate)
    return seen


def ask_and_wait(qtbot, panel, question: str, task: Task = Task.FREE) -> None:
    with qtbot.waitSignal(panel.answer_finished, timeout=60000):
        panel.ask(question, task, None)


def test_follow_up_questions_carry_the_conversation(qtbot, ct, tiny_folder, prompts) -> None:
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    assert not panel.history_label.isVisible() and not panel.new_button.isEnabled()
    ask_and_wait(qtbot, panel, "spine", Task.VG)
    assert "Follow-up: 1 earlier turn of this conversation goes with the next question" in panel.history_label.text()
    ask_and_wait(qtbot, panel, "How large is it?")
    first, second = prompts
    assert first.count("<|vision_start|>") == second.count("<|vision_start|>") == 1  # the image once
    assert (
        "<|im_start|>assistant" not in first.split("<|im_start|>assistant")[0]
        and first.count("<|im_start|>assistant") == 1
    )
    assert second.count("<|im_start|>user") == 2 and second.count("<|im_start|>assistant") == 2
    assert f"Where is the spine located in the image?<|im_end|>\n<|im_start|>assistant\n{ANSWER}<|im_end|>" in second
    turns = panel.conversations.turns(main.state.stack.key)
    assert [t.history_sent for t in turns] == [0, 1]
    assert "1 earlier turn(s) sent" in panel.chat.toPlainText()
    assert "2 earlier turns of this conversation go with the next question" in panel.history_label.text()

    QTest.mouseClick(panel.new_button, Qt.MouseButton.LeftButton)
    assert panel.history() == () and "New conversation" in panel.history_label.text()
    ask_and_wait(qtbot, panel, "Is this a CT?")
    assert prompts[-1].count("<|im_start|>assistant") == 1
    assert "new conversation: earlier turns are not sent" in panel.chat.toPlainText()
    assert turns[-1].history_sent == 0


def test_old_turns_beyond_the_budget_are_dropped_and_the_panel_says_so(qtbot, ct, tiny_folder, prompts) -> None:
    settings = AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, history_tokens=60)
    main = make_window(qtbot, settings)
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    for question in ("Where is the spine?", "And the liver?", "And the heart?"):
        ask_and_wait(qtbot, panel, question)
    last = panel.conversations.turns(main.state.stack.key)[-1]
    assert last.history_dropped >= 1 and last.history_sent + last.history_dropped == 2
    assert "oldest turn(s): they did not fit the history budget (60 tokens)" in panel.history_label.text()
    assert "oldest turn(s) left out" in panel.chat.toPlainText()
    assert "Where is the spine?" not in prompts[-1]


def test_box_prompt_follows_undo_of_the_selected_box(qtbot, ct) -> None:
    main = make_window(qtbot, AssistantSettings())
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    main.annotations.add_box(0, 84, 73, 102, 96)  # drawn, and selected
    assert panel.box_label.text() == "Box prompt: (84, 73) – (102, 96) px"
    main.setFocus()
    QTest.keyClick(main, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert main.annotations.boxes() == [] and main.annotations.selected == set()
    assert panel.box_label.text() == "No box prompt (select a box to add one)."
    assert panel.selected_box() is None
    QTest.keyClick(main, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(main.annotations.boxes()) == 1 and panel.box_label.text().startswith("No box prompt")
