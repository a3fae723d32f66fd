"""Render the real main window with a mask from the Segment tool: docs/screenshots/segmentation.png.

A tiny random-weight SAM (tests/engine/tiny_sam.py) runs through the real code path: the box
prompt on the demo CT as displayed, the SegmentJob on the inference worker, the image embedding,
the prompt encoder and mask decoder, the answer back to the window, the pending model mask with
its provenance and measurements, the overlay and the Annotations list. Random weights cannot
segment, so the decoder's upscaled mask is scripted: the bone inside the box (HU above a
threshold, its largest connected part, holes filled). The shape is scripted; everything else is
real.

    xvfb-run -a -s "-screen 0 1600x1000x24" \\
        env QT_QPA_PLATFORM=xcb .venv/bin/python docs/make_segmentation_screenshot.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtWidgets import QApplication  # noqa: E402

from docs.make_screenshots import OUT, open_and_wait, settle  # noqa: E402

BOX = (46.0, 6.0, 86.0, 46.0)  # around the vertebral body of the 128×128 demo slice (pixels)
BONE_HU = 150


def scripted_region(dicom_path: Path) -> object:
    """The bone inside BOX on the demo slice: what a trained model would plausibly outline."""
    import numpy as np
    import pydicom
    from scipy import ndimage

    ds = pydicom.dcmread(dicom_path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    x1, y1, x2, y2 = (int(v) for v in BOX)
    inside = np.zeros(hu.shape, dtype=bool)
    inside[y1:y2, x1:x2] = hu[y1:y2, x1:x2] > BONE_HU
    inside = ndimage.binary_closing(inside, iterations=2)
    parts, count = ndimage.label(inside)
    if count:
        sizes = ndimage.sum(inside, parts, range(1, count + 1))
        inside = parts == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(inside)


def script_decoder(region) -> None:
    """The decoder runs for real; its upscaled mask is replaced by ``region`` (same size as the image)."""
    from engine.segmentation.predictor import Segmenter

    real = Segmenter.mask_from_logits

    def mask_from_logits(self, logits, entry):
        mask = real(self, logits, entry)
        assert mask.shape == region.shape, (mask.shape, region.shape)
        return region.copy()

    Segmenter.mask_from_logits = mask_from_logits


def main() -> int:
    os.environ["CLINLENS_CONFIG_DIR"] = tempfile.mkdtemp(prefix="clinlens-shots-")
    os.environ["CLINLENS_DATA_DIR"] = tempfile.mkdtemp(prefix="clinlens-shots-data-")  # the demo's mask
    app = QApplication.instance() or QApplication([])
    from app.application import DEMO_IMAGE
    from app.inference.settings import AssistantSettings
    from app.main_window import MainWindow
    from app.widgets.theme import apply_dark_theme
    from tests.engine.tiny_sam import save_sam_dir

    apply_dark_theme(app)
    with tempfile.TemporaryDirectory() as folder:
        model = save_sam_dir(Path(folder) / "tiny-sam")
        script_decoder(scripted_region(DEMO_IMAGE))
        window = MainWindow()
        window.set_assistant_settings(AssistantSettings(segmentation_model=str(model), device="cpu"))
        window.resize(1400, 860)
        window.show()
        open_and_wait(app, window, [str(DEMO_IMAGE)])
        controller = window.segmentation
        controller.set_active(True)
        job = controller.segment_box(0, BOX, "vertebral body")  # what the Segment tool calls on release
        assert job is not None, "the prompt was refused"
        while job in controller.jobs:
            settle(app, 50)
        masks = window.annotations.doc.masks(window.annotations.image_id)
        assert masks, "no mask came back"
        window.canvas.fit_to_window()
        window.annotations.select({masks[0].id})
        settle(app, 600)
        OUT.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(OUT / "segmentation.png"))
        print(f"wrote {OUT / 'segmentation.png'}")
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
