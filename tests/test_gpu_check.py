"""bench/gpu_check.sh on a machine without a GPU, and the summary it prints from pytest's results.

The check itself needs a CUDA GPU (run it on one); here CUDA_VISIBLE_DEVICES hides any GPU, so
the refusal is tested on every machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from gpu_check import parse_junit, table  # noqa: E402


def test_without_a_gpu_it_refuses_in_one_sentence():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA GPU") and lines[0].count(". ") == 0
    assert lines[0].endswith(".")


def test_the_summary_lists_every_test_with_its_outcome(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_ok():\n    assert 1 == 1\n"
        "def test_broken():\n    assert 1 == 2\n"
        "@pytest.mark.skip(reason='no')\ndef test_skipped():\n    pass\n"
    )
    junit = tmp_path / "out.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(tmp_path / "test_sample.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    cases = {name.rsplit("::", 1)[1]: outcome for name, outcome, _ in parse_junit(junit)}
    assert cases == {"test_ok": "passed", "test_broken": "failed", "test_skipped": "skipped"}
    text = table(
        [
            ("test", "a::test_ok", "passed (0.1 s)", "", "", "", ""),
            ("ask", "bfloat16 max_pixels=262144", "ok", "51.0", "0.080", "4.61", ""),
        ]
    )
    header, rule, *body = text.splitlines()
    assert header.split(" | ")[0].strip() == "stage" and set(rule) <= {"-", "+"} and len(body) == 2
    assert "51.0" in body[1] and "0.080" in body[1]
