"""Render the Report panel and the printed report: docs/screenshots/report-panel.png, report-blanks.png
and report-pdf.png.

The real window on the demo CT: a length measurement drawn as the measure tool would, cited with
Add to report, sections typed, the reading observer set in the settings; sign-off refused while the
technique keeps the template's ``[region]`` blank (the demo header has no BodyPartExamined:
report-blanks.png), then the blank typed over and the report signed.
The PDF is the one Save PDF… writes (QTextDocument on QPdfWriter), its first page rendered by
Ghostscript (or poppler's pdftoppm) for the picture.

    xvfb-run -a -s "-screen 0 1600x1000x24" \\
        env QT_QPA_PLATFORM=xcb .venv/bin/python docs/make_report_screenshot.py
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


def main() -> int:
    os.environ["CLINLENS_CONFIG_DIR"] = tempfile.mkdtemp(prefix="clinlens-shots-")
    os.environ["CLINLENS_DATA_DIR"] = tempfile.mkdtemp(prefix="clinlens-shots-data-")
    app = QApplication.instance() or QApplication([])
    from app.application import DEMO_IMAGE
    from app.inference.settings import AssistantSettings
    from app.main_window import MainWindow
    from app.widgets.theme import apply_dark_theme
    from engine.annotations import AddAnnotations
    from engine.annotations.measure import measure
    from tests.pdf_tools import pdf_page

    apply_dark_theme(app)
    window = MainWindow()
    window.set_assistant_settings(AssistantSettings(observer_name="Doe^Jane", observer_organization="General Hospital"))
    window.resize(1500, 900)
    window.show()
    open_and_wait(app, window, [str(DEMO_IMAGE)])
    doc, image_id = window.annotations.doc, window.annotations.image_id
    points = ((52.0, 20.0), (80.0, 30.0))
    spacing = doc.image(image_id).spacing
    values = measure("length", points, spacing=(spacing.row_mm, spacing.col_mm) if spacing else None)
    length = doc.new_measurement(image_id, "length", 0, points, values, label="vertebral body")
    doc.execute(AddAnnotations(image_id, [length]))
    window.annotations.select({length.id})
    window.annotation_panel.report_button.click()
    panel = window.report_panel
    panel.editors["clinical_information"].setPlainText("Indication: back pain after a fall.")
    panel.editors["impression"].setPlainText("No fracture of the imaged vertebral body.")
    window.show_report()
    window.canvas.fit_to_window()
    OUT.mkdir(parents=True, exist_ok=True)
    assert not panel.sign()  # the demo CT's header has no BodyPartExamined: the technique keeps [region]
    settle(app, 600)
    panel.grab().save(str(OUT / "report-blanks.png"))
    technique = panel.editors["technique"]
    technique.setPlainText(technique.toPlainText().replace("[region]", "lumbar spine"))  # typed over the blank
    assert panel.sign(), panel.problem.text()
    settle(app, 600)
    window.grab().save(str(OUT / "report-panel.png"))
    with tempfile.TemporaryDirectory() as folder:
        pdf = Path(folder) / "report.pdf"
        assert window.report.save_pdf(pdf)
        pdf_page(pdf, OUT / "report-pdf.png", dpi=80)
    print(f"wrote {OUT / 'report-panel.png'}, {OUT / 'report-blanks.png'} and {OUT / 'report-pdf.png'}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
