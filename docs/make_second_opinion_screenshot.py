"""Render the real main window after a second opinion: docs/screenshots/second-opinion.png.

Two tiny random-weight Qwen2-VL checkpoints (tests/engine/tiny_qwen.py, the same weights under two
folder names) are loaded through the real loader as the first and the second model, and the
question goes through the real Ask panel with Second opinion on: one job on the inference worker
generating both answers at once, the streaming, the parser, the two columns, the box pairing and
IoU (engine/grounding/agreement.py) and the two overlay styles. Random weights cannot ground
anything, so each model's answer tokens are scripted (per model folder), with two boxes on the
vertebral body that overlap only partly; the boxes are scripted, their IoU is computed.

    xvfb-run -a -s "-screen 0 1600x1000x24" \\
        env QT_QPA_PLATFORM=xcb .venv/bin/python docs/make_second_opinion_screenshot.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from docs.make_screenshots import OUT, open_and_wait, settle  # noqa: E402

QUESTION = "Where is the vertebral body?"
FIRST, SECOND = "tiny-qwen2vl", "tiny-qwen2vl-second"
# Each model folder's scripted answer (0-1000 grid): two boxes on the vertebral body of the demo
# slice, B lower and a little wider than A, so the pair overlaps partly (an IoU near 0.6).
ANSWERS = {
    FIRST: "The <|object_ref_start|>vertebral body<|object_ref_end|>"
    "<|box_start|>(375,63),(656,344)<|box_end|> is in the centre of the slice.",
    SECOND: "<|object_ref_start|>vertebral body<|object_ref_end|><|box_start|>(355,120),(670,400)<|box_end|>",
}


def script_by_model(model_dir: Path) -> None:
    """generate() answers with the scripted tokens of the model folder it was loaded from."""
    import torch
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizing = threading.Lock()  # the two models answer at once and share this tokenizer

    def generate(self, input_ids=None, streamer=None, stopping_criteria=(), **_):
        with tokenizing:
            answer = ANSWERS[Path(str(self.name_or_path)).name]
            tokens = [
                *tokenizer(answer, add_special_tokens=False).input_ids,
                tokenizer.convert_tokens_to_ids("<|im_end|>"),
            ]
        streamer.put(input_ids)
        out = input_ids
        for token in tokens:
            out = torch.cat([out, torch.tensor([[token]])], dim=1)
            streamer.put(torch.tensor([token]))
        streamer.end()
        return out

    Qwen2VLForConditionalGeneration.generate = generate


def main() -> int:
    os.environ["CLINLENS_CONFIG_DIR"] = tempfile.mkdtemp(prefix="clinlens-shots-")  # never the user's settings
    app = QApplication.instance() or QApplication([])
    from app.application import DEMO_IMAGE
    from app.inference.settings import AssistantSettings
    from app.main_window import MainWindow
    from app.widgets.theme import apply_dark_theme
    from tests.engine.tiny_qwen import TINY_MAX_PIXELS, build_tiny_qwen2vl

    apply_dark_theme(app)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        first = build_tiny_qwen2vl(folder / FIRST)
        second = Path(shutil.copytree(first, folder / SECOND))
        script_by_model(first)
        demo = folder / "study" / DEMO_IMAGE.name  # a copy: nothing is written beside the bundled demo
        demo.parent.mkdir()
        shutil.copy(DEMO_IMAGE, demo)
        window = MainWindow()
        window.set_assistant_settings(
            AssistantSettings(clinkd_dir=str(first), second_dir=str(second), max_pixels=TINY_MAX_PIXELS, device="cpu")
        )
        window.resize(1500, 900)
        window.show()
        open_and_wait(app, window, [str(demo)])
        window.ask_dock.raise_()
        window.resizeDocks([window.ask_dock], [640], Qt.Orientation.Horizontal)  # room for two columns
        panel = window.ask_panel
        panel.second_button.setChecked(True)
        assert panel.second_opinion, "the second model is not configured"
        panel.question.setText(QUESTION)
        finished = QEventLoop()
        panel.answer_finished.connect(finished.quit)
        panel.ask_or_cancel()  # what the Ask button does
        finished.exec()
        turns = panel.conversations.turns(window.state.stack.key)
        assert [t.status for t in turns] == ["done", "done"], [(t.status, t.error) for t in turns]
        assert len(panel.answer_boxes()) == 2, "both answers should have a box"
        window.canvas.fit_to_window()
        settle(app, 600)
        OUT.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(OUT / "second-opinion.png"))
        print(f"wrote {OUT / 'second-opinion.png'}")
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
