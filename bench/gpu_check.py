"""One GPU check: every `gpu` test, then the GPU benchmarks, then one summary table (< 8 minutes).

    bash bench/gpu_check.sh [--model DIR]

1. ``pytest -m gpu`` (tiny random models: bf16 ask, 8-bit / 4-bit loading, real CUDA out-of-memory
   recovery in the engine and in the window, fp16 CLIP, training on CUDA, MCG batches);
2. bench/gpu_clinkd.py on ``--model`` (or $CLINKD_MODEL; default: a random Qwen2-VL-2B-sized
   checkpoint built here, so nothing is downloaded): time to first token, tokens/s, peak memory at
   both pixel budgets;
3. bench/gpu_train.py (full fine-tune and LoRA, a few steps): seconds per step, peak memory.

Each stage has its own time limit so the whole check stays under 8 minutes on one GPU. Prints one
table; exits 0 when every test passed and both benchmarks ran, 1 otherwise, and 2 with one
sentence when no CUDA GPU is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMITS = {"tests": 210, "ask": 120, "train": 130}  # seconds; 460 s in all


def parse_junit(path: Path) -> list[tuple[str, str, float]]:
    """(test id, passed | failed | error | skipped, seconds) for each test case of a pytest junit file."""
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = "failed" if tag == "failure" else tag
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        rows.append((name, outcome, float(case.get("time", 0))))
    return rows


def table(rows: list[tuple[str, ...]]) -> str:
    header = ("stage", "item", "result", "tok/s", "TTFT s", "peak GiB", "s/step")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _run(argv: list[str], limit: int) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {limit} s"
    return done.returncode, (done.stdout + done.stderr)[-2000:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=os.environ.get("CLINKD_MODEL"),
        help="Qwen2-VL checkpoint for the ask benchmark (default: a random 2B-sized one)",
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU is visible, so there is nothing to check; run it on a machine with an "
            "NVIDIA GPU and a CUDA build of torch.",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    rows: list[tuple[str, ...]] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="clinlens-gpu-check-") as tmp:
        root = Path(tmp)
        junit = root / "gpu.xml"
        code, tail = _run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                "gpu",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={junit}",
                "tests",
            ],
            LIMITS["tests"],
        )
        cases = parse_junit(junit) if junit.exists() else []
        for name, outcome, seconds in cases:
            rows.append(("test", name, f"{outcome} ({seconds:.1f} s)", "", "", "", ""))
        if code != 0 or not cases or any(o != "passed" for _, o, _ in cases):
            ok = False
            if not cases:
                rows.append(("test", "pytest -m gpu", f"exit {code}: {tail.strip().splitlines()[-1:]}", "", "", "", ""))

        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT / "bench"))
            from gpu_train import build_2b_checkpoint

            model = str(build_2b_checkpoint(root / "qwen2vl-2b-random"))
            torch.cuda.empty_cache()
        ask_json = root / "ask.json"
        code, tail = _run(
            [
                sys.executable,
                "bench/gpu_clinkd.py",
                "--model",
                model,
                "--max-new-tokens",
                "64",
                "--repeats",
                "3",
                "--json",
                str(ask_json),
            ],
            LIMITS["ask"],
        )
        if code == 0 and ask_json.exists():
            rows.extend(
                (
                    "ask",
                    f"{r['dtype']} max_pixels={r['max_pixels']} ({r['image_tokens']} image tokens)",
                    "ok",
                    f"{r['tokens_per_s']:.1f}",
                    f"{r['ttft_s']:.3f}",
                    f"{r['peak_gib']:.2f}",
                    "",
                )
                for r in json.loads(ask_json.read_text())["rows"]
            )
        else:
            ok = False
            rows.append(
                ("ask", "bench/gpu_clinkd.py", f"exit {code}: {tail.strip().splitlines()[-1:]}", "", "", "", "")
            )

        train_json = root / "train.json"
        code, tail = _run(
            [
                sys.executable,
                "bench/gpu_train.py",
                "--steps",
                "4",
                "--warmup",
                "1",
                "--samples",
                "16",
                "--settings",
                "full,lora",
                "--json",
                str(train_json),
            ],
            LIMITS["train"],
        )
        if code == 0 and train_json.exists():
            for name, r in zip(("full", "lora"), json.loads(train_json.read_text())["rows"], strict=False):
                rows.append(
                    (
                        "train",
                        f"{r.get('setting', name)} ({r['tokens_per_sample']:.0f} tokens/sample)",
                        "ok",
                        "",
                        "",
                        f"{r['peak_gib']:.1f}",
                        f"{r['s_per_step']:.3f}",
                    )
                )
        else:
            ok = False
            rows.append(
                ("train", "bench/gpu_train.py", f"exit {code}: {tail.strip().splitlines()[-1:]}", "", "", "", "")
            )
    elapsed = time.perf_counter() - started
    print(
        f"ClinLens GPU check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}; {elapsed:.0f} s"
    )
    print(table(rows))
    passed = sum(1 for r in rows if r[0] == "test" and r[2].startswith("passed"))
    tests = sum(1 for r in rows if r[0] == "test")
    print(f"{passed}/{tests} gpu tests passed; {'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
