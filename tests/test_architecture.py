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
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(cwd), "PATH": str(LINT_IMPORTS.parent)},
        timeout=240,
        check=False,
    )


def test_layer_contracts_hold_for_the_repository():
    result = run_lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken" in result.stdout


def test_no_module_but_the_entry_and_the_main_window_at_the_top_of_app():
    """Every other GUI module lives in a capability folder, where the layers contract sees it."""
    assert sorted(path.name for path in (REPO / "app").glob("*.py")) == [
        "__init__.py",
        "application.py",
        "main_window.py",
    ]
    folders = {path.parent.name for path in (REPO / "app").glob("*/__init__.py")}
    layered = {
        "assistant",
        "kpl",
        "pacs",
        "report",
        "segmentation",
        "volumes",
        "annotations",
        "inference",
        "viewer",
        "widgets",
    }
    assert folders == layered, "a new app/ folder needs its place in the layers contract"


def write_modules(root: Path, modules: dict[str, str]) -> None:
    """A package tree: dotted module name -> source; every module is a package's __init__.py."""
    for name, source in modules.items():
        folder = root.joinpath(*name.split("."))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(source)


LAYOUT = dict.fromkeys(
    (
        "engine",
        "cli",
        "app",
        "app.application",
        "app.main_window",
        "app.assistant",
        "app.kpl",
        "app.pacs",
        "app.report",
        "app.segmentation",
        "app.volumes",
        "app.annotations",
        "app.inference",
        "app.viewer",
        "app.widgets",
    ),
    "",
)


def test_contracts_catch_qt_in_engine_and_torch_in_app(tmp_path):
    """The check is not vacuous: a copy of the layout with forbidden imports breaks both contracts."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    write_modules(tmp_path, {**LAYOUT, "engine": "from PySide6 import QtCore\n", "app": "import torch\n"})
    result = run_lint_imports(tmp_path)
    assert result.returncode != 0
    assert "The engine never imports Qt BROKEN" in result.stdout
    assert "The app reaches torch and the models only through the engine BROKEN" in result.stdout


def test_layers_contract_catches_a_capability_importing_a_sibling_or_a_higher_layer(tmp_path):
    """One capability reaching into another (KPL into the Ask panel), and the viewer into the
    annotations above it, each break the layers contract; the same tree without them keeps it."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    write_modules(tmp_path, LAYOUT)
    assert run_lint_imports(tmp_path).returncode == 0
    for module, line in {"app.kpl": "import app.assistant\n", "app.viewer": "import app.annotations\n"}.items():
        write_modules(tmp_path, {**LAYOUT, module: line})
        result = run_lint_imports(tmp_path)
        assert result.returncode != 0
        assert "The app is layered" in result.stdout and "BROKEN" in result.stdout
        assert f"{module} -> app." in result.stdout
