"""The linter and the formatter hold: any finding fails the suite (rules: pyproject.toml [tool.ruff])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).with_name("ruff")


def run_ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUFF), *args, "--no-cache", "."], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_ruff_check_finds_nothing():
    result = run_ruff("check", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_would_change_nothing():
    result = run_ruff("format", "--check")
    assert result.returncode == 0, "run `ruff format .`:\n" + result.stdout + result.stderr


def test_the_checks_are_not_vacuous(tmp_path):
    """The same configuration reports an unused import and a badly formatted line in a scratch copy."""
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\nx = {  'a':1 }\n")
    check = subprocess.run(
        [str(RUFF), "check", "--no-cache", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 1 and "F401" in check.stdout
    fmt = subprocess.run(
        [str(RUFF), "format", "--check", "--no-cache", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert fmt.returncode == 1 and "bad.py" in fmt.stdout
