"""What other DICOM tools say of the files ClinLens writes (rule: every object we create passes dciodvfy)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dicom3tools' IOD verifier prints for ``path`` (warnings are kept out:
    our private coding scheme ``99CLINLENS`` is a warning by design)."""
    binary = shutil.which("dciodvfy")
    assert binary, "dciodvfy is missing: install the Debian package dicom3tools (the README's test command does)"
    result = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.strip() for line in lines), "dciodvfy printed nothing"
    return [line for line in lines if line.startswith("Error")]
