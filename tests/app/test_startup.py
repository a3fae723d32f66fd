"""The window opens without importing torch: models load in the worker thread on first use."""

from __future__ import annotations

import subprocess
import sys


def test_main_window_imports_no_torch():
    code = (
        "import sys, app.main_window, main; "
        "print(sorted(m for m in ('torch', 'transformers', 'open_clip') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
