"""`pip install .` gives a working `clinlens` command that carries its own resources.

The wheel is built from a copy of the checkout (so the build leaves nothing in it), installed into
a fresh virtual environment whose dependencies come from the test environment (a .pth file points
at its site-packages; nothing is downloaded), and run from a folder outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "site", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "out"
)


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(work / "dist"),
        ],
        cwd=work,
    )
    (built,) = (work / "dist").glob("clinlens-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_carries_the_code_and_the_resources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "clinlens/command.py",
        "app/main_window.py",
        "cli/imaging.py",
        "engine/paths.py",
        "engine/resources/presets.json",
        "engine/resources/demo/CT_small.dcm",
        "engine/resources/knowledge/tuberculosis-cxr.json",
        "engine/resources/icons/clinlens.svg",
    ):
        assert needed in names, needed
    bundled = {p.relative_to(ROOT / "resources").as_posix() for p in (ROOT / "resources").rglob("*") if p.is_file()}
    assert {f"engine/resources/{name}" for name in bundled} <= names  # every resource ships
    assert not any(name.startswith("tests/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "clinlens = clinlens.command:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_the_installed_command_runs_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path
        ).stdout.strip()
    )
    test_env = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "test-environment.pth").write_text("\n".join(sorted(test_env)) + "\n")
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        cwd=tmp_path,
    )

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    clinlens = str(venv / "bin" / "clinlens")
    help_text = run([clinlens, "--help"], cwd=tmp_path, env=env).stdout
    assert help_text.startswith("usage: clinlens")
    for command in ("gui", "info", "render", "export", "ask", "classify", "train", "install-desktop"):
        assert f"    {command}" in help_text

    where = run(
        [str(python), "-c", "import engine, engine.paths; print(engine.__file__); print(engine.paths.resources_dir())"],
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where)  # the installed copy, not the checkout
    demo = Path(where[1]) / "demo" / "CT_small.dcm"
    info = run([clinlens, "info", str(demo)], cwd=tmp_path, env=env).stdout
    assert "Modality:        CT" in info and "128 x 128 px" in info
    knowledge = run([clinlens, "knowledge"], cwd=tmp_path, env=env).stdout
    assert "tuberculosis-cxr" in knowledge
