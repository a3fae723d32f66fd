"""The assistant in the window on a CUDA GPU (device machine only): a real out-of-memory is shown
as an error on that question, and the next question answers."""

from __future__ import annotations

import pytest
import torch

from app.inference.settings import AssistantSettings
from engine.clinkd import Task
from tests.app.test_assistant import make_window, open_and_wait
from tests.engine.tiny_qwen import TINY_MAX_PIXELS
from tests.gpu_ballast import gpu_memory_filled

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_out_of_memory_shows_the_error_and_the_next_question_works(qtbot, ct, tiny_folder):
    main = make_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS, device="cuda"))
    open_and_wait(qtbot, main, ct)
    panel = main.ask_panel
    turns = lambda: panel.conversations.turns(main.state.stack.key)  # noqa: E731
    with qtbot.waitSignal(panel.answer_finished, timeout=120000):
        panel.ask("What is this?", Task.FREE, None)  # loads the model on the GPU and warms it up
    assert turns()[0].status == "done" and turns()[0].result.model.device.startswith("cuda")
    with gpu_memory_filled("cuda") as ballast:
        with qtbot.waitSignal(panel.answer_finished, timeout=120000):
            panel.ask("What is this?", Task.FREE, None)
        failed = turns()[1]
        assert failed.status == "error" and "ran out of memory" in failed.error and "max_pixels" in failed.error
        assert "Error" in panel.chat.toPlainText() and panel.ask_button.text() == "Ask"
        ballast.release(512 << 20)
        with qtbot.waitSignal(panel.answer_finished, timeout=120000):
            panel.ask("What is this?", Task.FREE, None)
    again = turns()[2]
    assert again.status == "done" and again.result.new_tokens >= 1
