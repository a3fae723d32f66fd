"""Help > About: which ClinLens this is, whose code it stands on, and what it is not for.

Licences are written here rather than read from package metadata: the metadata fields are
inconsistent across packages (free text, SPDX, or empty), and a reader needs one plain name.
Versions are read from what is installed, so a bug report can quote them.
"""

from __future__ import annotations

import html
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from app.widgets.research_notice import RESEARCH_NOTICE

CLINLENS_LICENCE = "no licence declared yet (the project has no LICENSE file)"
CHECKOUT = Path(__file__).resolve().parents[2]
PYPROJECT = CHECKOUT / "pyproject.toml"
DOCS_HOME = CHECKOUT / "docs" / "index.md"  # no published site yet: the checkout's docs


@dataclass(frozen=True)
class Library:
    """A main dependency as the About box names it."""

    name: str
    distribution: str  # the name importlib.metadata knows it by
    licence: str
    url: str


LIBRARIES = (
    Library("Qt / PySide6", "PySide6-Essentials", "LGPL-3.0", "https://www.qt.io/licensing"),
    Library("pydicom", "pydicom", "MIT", "https://github.com/pydicom/pydicom"),
    Library("highdicom", "highdicom", "MIT", "https://github.com/ImagingDataCommons/highdicom"),
    Library("pynetdicom", "pynetdicom", "MIT", "https://github.com/pydicom/pynetdicom"),
    Library("NumPy", "numpy", "BSD-3-Clause", "https://numpy.org"),
    Library("PyTorch", "torch", "BSD-3-Clause", "https://pytorch.org"),
    Library("Transformers", "transformers", "Apache-2.0", "https://github.com/huggingface/transformers"),
    Library("OpenCLIP", "open_clip_torch", "MIT", "https://github.com/mlfoundations/open_clip"),
    Library("superqt", "superqt", "BSD-3-Clause", "https://github.com/pyapp-kit/superqt"),
    Library("platformdirs", "platformdirs", "MIT", "https://github.com/tox-dev/platformdirs"),
)


def clinlens_version() -> str:
    """The installed package's version, else the checkout's pyproject.toml (ClinLens runs from a checkout)."""
    try:
        return metadata.version("clinlens")
    except metadata.PackageNotFoundError:
        pass
    try:
        return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def docs_line() -> str:
    """A link to the documentation this copy carries, or how to build it."""
    if DOCS_HOME.is_file():
        url = DOCS_HOME.as_uri()
        return (
            f"Documentation: <a href='{url}'>{html.escape(str(DOCS_HOME))}</a> (<code>mkdocs serve</code> renders it)"
        )
    return "Documentation: the docs/ folder of the ClinLens source (<code>mkdocs serve</code> renders it)"


def about_html() -> str:
    rows = "".join(
        f"<tr><td><a href='{lib.url}'>{html.escape(lib.name)}</a></td>"
        f"<td>{html.escape(installed_version(lib.distribution))}</td><td>{html.escape(lib.licence)}</td></tr>"
        for lib in LIBRARIES
    )
    return (
        f"<h2>ClinLens {html.escape(clinlens_version())}</h2>"
        "<p>A workstation for medical images: DICOM viewer, annotation and review, grounded questions "
        "(ClinKD) and zero-shot classification (KPL).</p>"
        f"<p><b>{html.escape(RESEARCH_NOTICE)}</b></p>"
        f"<p>ClinLens licence: {html.escape(CLINLENS_LICENCE)}.</p>"
        f"<p>{docs_line()}</p>"
        "<p>Built on:</p>"
        "<table cellspacing='0' cellpadding='3'><tr><th align='left'>Library</th>"
        f"<th align='left'>Version</th><th align='left'>Licence</th></tr>{rows}</table>"
        "<p>Model weights carry their own licences: see Models and weights in the documentation.</p>"
    )


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About ClinLens")
        self.text = QLabel(about_html())
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setWordWrap(True)
        self.text.setOpenExternalLinks(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.setMinimumWidth(560)
