"""What other DICOM tools say of the files ClinLens writes (rule: every object we create passes dciodvfy)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dicom3tools' IOD verifier prints for ``path`` (warnings are kept out:
    our private coding scheme ``99CLINLENS`` is a warning by design)."""
    binary = shutil.which("dciodvfy")
    assert binary, "dciodvfy is missing: install the Debian package dicom3tools (the README's test command does)"
    result = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.strip() for line in lines), "dciodvfy printed nothing"
    return [line for line in lines if line.startswith("Error")]


def dcm2niix(series: Path, out: Path) -> nibabel.Nifti1Image:
    """The series as dcm2niix (the converter neuroimaging relies on) writes it: ``out/volume.nii``."""
    binary = shutil.which("dcm2niix")
    assert binary, "dcm2niix is missing: install the Debian package dcm2niix (the README's test command does)"
    out.mkdir()
    done = subprocess.run(
        [binary, "-z", "n", "-b", "n", "-f", "volume", "-o", str(out), str(series)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return nibabel.load(out / "volume.nii")
