"""The documentation builds strictly, the README stays a front door, and the code's docs/ paths exist."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# a path into docs/ as code and data name it (not the tail of a URL such as .../docs/x)
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*\w\.(?:md|py|png|svg)")
CODE = (
    "app",
    "engine",
    "cli",
    "clinlens",
    "bench",
    "resources",
    "tests",
    "main.py",
    "setup.py",
    "pyproject.toml",
    "mkdocs.yml",
    "README.md",
    ".ci",
)


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    result = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def test_the_site_builds_strictly_with_every_page(site):
    for page in (
        "index.html",
        "user-guide/viewer/index.html",
        "reference/cli/index.html",
        "development/architecture/index.html",
    ):
        assert (site / page).is_file(), page


def test_the_command_reference_is_generated_from_the_parsers(site):
    from clinlens.command import build_parser, commands

    page = (site / "reference" / "cli" / "index.html").read_text()
    assert "&lt;!-- commands --&gt;" not in page and "<!-- commands -->" not in page
    for name, sub in commands(build_parser()).items():
        assert f'id="{name}"' in page, name
        for action in sub._actions:
            for option in action.option_strings:
                assert option in page, (name, option)
    words = html.unescape(re.sub(r"<[^>]+>", "", page))  # the text, without highlighting spans
    assert "clinlens render CT_small.dcm lung.png --window -600,1500" in words  # an epilog example


def test_strict_build_fails_on_a_broken_anchor_and_a_page_outside_the_navigation(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "stray.md").write_text("# Not in the navigation\n")
    viewer = docs / "user-guide" / "viewer.md"
    viewer.write_text(viewer.read_text() + "\nSee [nowhere](annotation.md#no-such-heading).\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text((ROOT / "mkdocs.yml").read_text())
    result = mkdocs_build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-heading" in result.stderr
    assert "stray.md" in result.stderr


def _files_naming_docs() -> list[Path]:
    found = []
    for name in CODE:
        path = ROOT / name
        candidates = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        found += [
            p
            for p in candidates
            if p.suffix in {".py", ".md", ".json", ".toml", ".yml", ".txt", ""} and "__pycache__" not in p.parts
        ]
    return found


def test_every_docs_path_the_code_names_exists():
    missing = []
    for path in _files_naming_docs():
        missing.extend(
            f"{path.relative_to(ROOT)}: {match}"
            for match in DOCS_PATH.findall(path.read_text(errors="replace"))
            if not (ROOT / match).exists()
        )
    assert not missing, "documents named but missing:\n" + "\n".join(missing)


def test_the_docs_path_check_would_catch_a_missing_page():
    gone = "docs/" + "helpers/IMAGING_API.md"  # split so that this file does not name it itself
    assert DOCS_PATH.findall(f"contract in {gone}, see https://x.org/docs/a.md") == [gone]
    assert not (ROOT / gone).exists()


def test_the_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    command = re.search(r"<!-- test-command -->\n```bash\n(.+?)\n```", text, re.DOTALL)
    assert command and "pytest" in command.group(1)  # what .ci/run executes
    assert "main.py" in text.split("<!-- test-command -->")[0]  # and the command that starts the app
    index = (ROOT / "docs" / "index.md").read_text()
    for block in re.findall(
        r"```bash\n(.+?)\n```", text.split("<!-- test-command -->")[0] + command.group(0), re.DOTALL
    ):
        if "apt-get" in block:
            assert block in index  # the docs home shows the same commands
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).exists(), target
