"""The seeded mutation corpus of bench/fuzz_images.py, in the suite.

The corpus runs in a child process (the fuzzer's own watchdog runs the files in a grandchild),
so a native crash or a hang fails this test with the file that caused it instead of killing
pytest. Measured locally: 48 to 73 s for 1000 files on 2 shared cores.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.imaging import ImageLoadError, open_image

FUZZER = Path(__file__).resolve().parents[2] / "bench" / "fuzz_images.py"


def _fuzzer_module():
    spec = importlib.util.spec_from_file_location("fuzz_images", FUZZER)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_thousand_damaged_files_give_images_or_clean_errors():
    run = subprocess.run(
        [sys.executable, str(FUZZER), "--files", "1000", "--seed", "1", "--frames", "1", "--timeout", "10", "--json"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    counts = report["counts"]
    assert report["problems"] == [], "\n".join(report["problems"])
    assert counts["other exception"] == counts["hang"] == counts["dead process"] == 0
    assert counts["opened"] + counts["clean error"] == 1000
    assert counts["opened"] > 100 and counts["clean error"] > 100  # the corpus exercises both sides
    assert run.returncode == 0


def test_a_real_damaged_jpeg_that_aborts_gdcm_is_a_clean_error(tmp_path):
    """File 173 of the seed-0 corpus: damage in the header of SC_rgb_small_odd_jpeg.dcm makes
    python-gdcm throw a C++ exception that ends in std::terminate (SIGABRT) when decoded in
    process. Here it must come back as an ImageLoadError naming the file."""
    files = _fuzzer_module().make_corpus(tmp_path, 174, seed=0)
    path, how = files[173]
    assert how == "SC_rgb_small_odd_jpeg.dcm headerx10"
    try:
        stack = open_image(path)
        stack.frame(0)
    except ImageLoadError as error:
        assert path.name in str(error)
        return
    pytest.fail("a file with a damaged JPEG stream decoded without an error")
