#!/usr/bin/env bash
# One GPU check for ClinLens: every `gpu` test and the GPU benchmarks, one summary table, < 8 min.
# Usage: bash bench/gpu_check.sh [--model DIR]   (details: bench/gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
exec "$PYTHON" bench/gpu_check.py "$@"
