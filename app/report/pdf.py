"""The printable report (``engine.report.printable``) drawn into a PDF by Qt: QTextDocument on QPdfWriter.

Text stays text in the PDF (searchable, sharp at any zoom); the key images come from the PNG files
the page names. The PDF is drawn into a temporary file first and then written atomically to its place, so a full
disk never leaves half a PDF. ``python -m app.report.pdf PAGE.html OUT.pdf`` is how the Qt-free
command line (``main.py report --pdf``) gets the very same PDF without importing Qt itself.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QMarginsF
from PySide6.QtGui import QGuiApplication, QPageLayout, QPageSize, QPdfWriter, QTextDocument

from engine.files import write_bytes_atomic

RESOLUTION_DPI = 300


def pdf_bytes(page: Path) -> bytes:
    """The PDF of ``page`` (``Printable.write``'s HTML file), A4 with 15 mm margins."""
    document = QTextDocument()
    document.setHtml(page.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="clinlens-pdf-") as folder:
        path = Path(folder) / "report.pdf"
        _print(document, path)
        return path.read_bytes()


def _print(document: QTextDocument, path: Path) -> None:
    writer = QPdfWriter(str(path))
    writer.setResolution(RESOLUTION_DPI)
    writer.setTitle("ClinLens report")
    writer.setCreator("ClinLens")
    writer.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4),
            QPageLayout.Orientation.Portrait,
            QMarginsF(15, 15, 15, 15),
            QPageLayout.Unit.Millimeter,
        )
    )
    document.print_(writer)
    del writer  # finishes the file


def write_pdf(page: Path, out: Path) -> None:
    """Write the PDF of ``page`` to ``out`` atomically (OSError when the disk refuses)."""
    write_bytes_atomic(out, pdf_bytes(page))


def main(argv: list[str]) -> int:
    """``python -m app.report.pdf PAGE.html OUT.pdf``: exit 0, or 1 with one sentence on stderr."""
    if len(argv) != 2:
        print("usage: python -m app.report.pdf PAGE.html OUT.pdf", file=sys.stderr)
        return 2
    _app = QGuiApplication.instance() or QGuiApplication(["clinlens-pdf"])
    try:
        write_pdf(Path(argv[0]), Path(argv[1]))
    except OSError as err:
        print(f"error: could not write {argv[1]}: {err.strerror or err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
