"""Render the real main window offscreen during a pre-annotation run: docs/screenshots/pre-annotation.png.

The tiny random Qwen2-VL cannot ground anything, so its tokens are scripted per question (through
the real streamer, worker thread, run, documents and overlay); the picture shows the plumbing,
not a model's skill. The run is paused after half the images so the progress bar is in the shot.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_preannotation_screenshot.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from docs.make_screenshots import OUT, open_and_wait, settle  # noqa: E402

ANSWERS = {
    "vertebral body": "The vertebral body is located at <|box_start|>(375,63),(656,344)<|box_end|>.",
    "spinal canal": "The spinal canal is located at <|box_start|>(422,352),(594,500)<|box_end|>.",
}


def script_by_question(model_dir: Path) -> None:
    """generate() answers each grounding question with the box of the structure it names."""
    import torch
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def generate(self, input_ids=None, streamer=None, stopping_criteria=(), **_):
        prompt = tokenizer.decode(input_ids[0])
        answer = next(a for label, a in ANSWERS.items() if label in prompt.rsplit("<|im_start|>user", 1)[-1])
        tokens = [*tokenizer(answer, add_special_tokens=False).input_ids, tokenizer.convert_tokens_to_ids("<|im_end|>")]
        streamer.put(input_ids)
        out = input_ids
        for token in tokens:
            out = torch.cat([out, torch.tensor([[token]])], dim=1)
            streamer.put(torch.tensor([token]))
        streamer.end()
        return out

    Qwen2VLForConditionalGeneration.generate = generate


def main() -> int:
    os.environ["CLINLENS_CONFIG_DIR"] = tempfile.mkdtemp(prefix="clinlens-shots-")
    app = QApplication.instance() or QApplication([])
    from app.application import DEMO_IMAGE
    from app.inference.settings import AssistantSettings
    from app.main_window import MainWindow
    from app.widgets.theme import apply_dark_theme
    from engine.preannotate import PreannotateSpec, PreTask
    from tests.engine.tiny_qwen import TINY_MAX_PIXELS, build_tiny_qwen2vl

    apply_dark_theme(app)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = build_tiny_qwen2vl(folder / "tiny-qwen2vl")
        script_by_question(model)
        images = folder / "study"
        images.mkdir()
        for i in range(6):  # the demo slice under six names (one image each)
            shutil.copy(DEMO_IMAGE, images / f"slice{i + 1}.dcm")
            import pydicom

            ds = pydicom.dcmread(images / f"slice{i + 1}.dcm")
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{i + 1}"
            ds.SeriesInstanceUID = f"{ds.SeriesInstanceUID}.{i + 1}"
            ds.save_as(images / f"slice{i + 1}.dcm")
        window = MainWindow()
        window.set_assistant_settings(AssistantSettings(clinkd_dir=str(model), max_pixels=TINY_MAX_PIXELS))
        window.resize(1400, 860)
        window.show()
        open_and_wait(app, window, [str(images)])
        run = window.preannotation
        run.batch_size = 1
        loop = QEventLoop()

        def pause_halfway() -> None:
            if run.done >= 3 and not run.paused:
                run.toggle_pause()
                loop.quit()

        run.changed.connect(pause_halfway)
        run.start(PreannotateSpec(PreTask.VG, ("vertebral body", "spinal canal")))
        loop.exec()
        settle(app, 1500)  # the question in flight lands
        window.canvas.fit_to_window()
        window.select_all_on_frame()
        window.annotations.select({window.annotations.boxes()[0].id})
        settle(app)
        OUT.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(OUT / "pre-annotation.png"))
        print(f"wrote {OUT / 'pre-annotation.png'}")
        finished = QEventLoop()
        run.finished.connect(finished.quit)
        run.cancel()
        finished.exec()
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
