"""The layering rules of design.md are enforced by import-linter contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def run_lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True,
        env={"PYTHONPATH": str(cwd), "PATH": str(LINT_IMPORTS.parent)}, timeout=240,
    )


def test_layer_contracts_hold_for_the_repository():
    result = run_lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken" in result.stdout


def test_contracts_catch_qt_in_engine_and_torch_in_app(tmp_path):
    """The check is not vacuous: a copy of the layout with forbidden imports breaks both contracts."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for package, line in {
        "engine": "from PySide6 import QtCore\n",
        "app": "import torch\n",
        "cli": "import json\n",
    }.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(line)
    result = run_lint_imports(tmp_path)
    assert result.returncode != 0
    assert "The engine never imports Qt BROKEN" in result.stdout
    assert "The app reaches torch and the models only through the engine BROKEN" in result.stdout
