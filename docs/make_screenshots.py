"""Render the real main window offscreen and save the screenshots of the README and docs/.

QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py   (or under Xvfb)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.application import DEMO_IMAGE  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.widgets.theme import apply_dark_theme  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def settle(app: QApplication, ms: int = 300) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def open_and_wait(app: QApplication, window: MainWindow, paths: list[str]) -> None:
    loop = QEventLoop()
    window.load_finished.connect(loop.quit)
    window.open(paths)
    loop.exec()
    window.load_finished.disconnect(loop.quit)
    while window.state.loading:  # frames decode off the GUI thread
        settle(app, 50)
    settle(app)


def script_answer(model_dir: Path, answer: str) -> None:
    """Make generate() emit ``answer`` through the real streamer: the tiny random model cannot
    ground anything, so the grounded-answer screenshot says it shows scripted tokens."""
    import torch
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    tokens = AutoTokenizer.from_pretrained(model_dir)(answer, add_special_tokens=False).input_ids

    def generate(self, input_ids=None, streamer=None, stopping_criteria=(), **_):
        eos = self.generation_config.eos_token_id
        streamer.put(input_ids)
        out = input_ids
        for token in [*tokens, eos if isinstance(eos, int) else eos[0]]:
            out = torch.cat([out, torch.tensor([[token]])], dim=1)
            streamer.put(torch.tensor([token]))
        streamer.end()
        return out

    Qwen2VLForConditionalGeneration.generate = generate


def assistant_screenshots(app: QApplication, folder: Path) -> None:
    from app.inference.settings import AssistantSettings
    from engine.clinkd import Task
    from tests.engine.tiny_clip import save_tiny_clip_dir, write_image_folder
    from tests.engine.tiny_qwen import TINY_MAX_PIXELS, build_tiny_qwen2vl

    model = build_tiny_qwen2vl(folder / "tiny-qwen2vl")
    clip = save_tiny_clip_dir(folder / "tiny-clip")
    demo = folder / DEMO_IMAGE.name
    shutil.copy(DEMO_IMAGE, demo)
    script_answer(
        model,
        "The <|object_ref_start|>vertebral body<|object_ref_end|>"
        "<|box_start|>(375,63),(656,344)<|box_end|> is in the centre, above the "
        "<|object_ref_start|>spinal canal<|object_ref_end|><|box_start|>(422,352),(594,500)<|box_end|>.",
    )
    window = MainWindow()
    window.set_assistant_settings(
        AssistantSettings(
            clinkd_dir=str(model),
            max_pixels=TINY_MAX_PIXELS,
            clip_model=f"local-dir:{clip}",
            knowledge="tuberculosis-cxr",
        )
    )
    window.resize(1400, 860)
    window.show()
    open_and_wait(app, window, [str(demo)])
    loop = QEventLoop()
    window.ask_panel.answer_finished.connect(loop.quit)
    window.ask_panel.ask("Where are the vertebral body and the spinal canal?", Task.FREE, None)
    loop.exec()
    window.ask_panel._hovered(__import__("PySide6.QtCore", fromlist=["QUrl"]).QUrl("box:0:0"))
    window.ask_dock.raise_()
    settle(app)
    window.grab().save(str(OUT / "grounded-answer.png"))
    print(f"wrote {OUT / 'grounded-answer.png'}")
    window.close()

    cxr = write_image_folder(folder / "cxr", per_class=6)
    window = MainWindow()
    window.resize(1400, 860)
    window.show()
    open_and_wait(app, window, [str(cxr)])
    loop = QEventLoop()
    window.classify_panel.run_finished.connect(loop.quit)
    window.classify_panel.classify_pool()
    loop.exec()
    window.classify_panel._row_clicked(2, 0)
    window.classify_dock.raise_()
    settle(app)
    window.grab().save(str(OUT / "kpl-results.png"))
    print(f"wrote {OUT / 'kpl-results.png'}")
    window.close()


def main() -> int:
    import os

    os.environ["CLINLENS_CONFIG_DIR"] = tempfile.mkdtemp(prefix="clinlens-shots-")  # never the user's settings
    os.environ["CLINLENS_DATA_DIR"] = tempfile.mkdtemp(prefix="clinlens-shots-data-")
    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    window = MainWindow()
    window.resize(1400, 860)
    window.show()
    open_and_wait(app, window, [str(DEMO_IMAGE)])
    window.canvas.center_on_pixel(64, 64)
    window.canvas.cursor_moved.emit(70.0, 60.0)
    settle(app)
    OUT.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(OUT / "viewer.png"))
    print(f"wrote {OUT / 'viewer.png'}")
    window.close()

    # Annotation: a copy of the demo (its sidecar goes to a temp folder), two boxes, one selected.
    with tempfile.TemporaryDirectory() as folder:
        demo = Path(folder) / "study" / DEMO_IMAGE.name
        demo.parent.mkdir()
        shutil.copy(DEMO_IMAGE, demo)
        window = MainWindow()
        window.resize(1400, 860)
        window.show()
        open_and_wait(app, window, [str(demo)])
        controller = window.annotations
        controller.set_current_label("vertebral body")
        body = controller.add_box(0, 48, 8, 84, 44)
        controller.set_current_label("spinal canal")
        controller.add_box(0, 54, 45, 76, 64)
        controller.select({body.id})
        window.canvas.fit_to_window()
        settle(app)
        window.grab().save(str(OUT / "annotation.png"))
        print(f"wrote {OUT / 'annotation.png'}")
        window.close()

    with tempfile.TemporaryDirectory() as folder:
        assistant_screenshots(app, Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
