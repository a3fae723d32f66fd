"""A PDF page as pixels, the way a reader sees it (PySide6 here has no QtPdf; Ghostscript or poppler render)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image


def pdf_page(pdf: Path, out: Path, dpi: int = 60) -> np.ndarray:
    """Page 1 of ``pdf`` rendered to ``out`` (PNG) as an RGB array, by pdftoppm or Ghostscript."""
    if shutil.which("pdftoppm"):
        command = [
            "pdftoppm",
            "-png",
            "-r",
            str(dpi),
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(pdf),
            str(out.with_suffix("")),
        ]
    else:
        gs = shutil.which("gs")
        assert gs, "neither pdftoppm (poppler-utils) nor gs (ghostscript) is installed to render the PDF"
        command = [
            gs,
            "-q",
            "-dSAFER",
            "-dBATCH",
            "-dNOPAUSE",
            "-sDEVICE=png16m",
            f"-r{dpi}",
            "-dFirstPage=1",
            "-dLastPage=1",
            f"-sOutputFile={out}",
            str(pdf),
        ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return np.asarray(Image.open(out).convert("RGB"))


def outline_pixels(page: np.ndarray) -> np.ndarray:
    """Where the yellow evidence outline of a key image is (engine.report.printable.OUTLINE)."""
    r, g, b = (page[..., i].astype(int) for i in range(3))
    return (r > 200) & (g > 150) & (b < 90)
