"""Fuzz the image contract: damaged files end as an image or a clean LoadError, nothing else.

    python bench/fuzz_images.py --files 2000 --seed 0 [--frames 2] [--keep DIR] [--json]

A seeded corpus is made by mutating real files: the image-bearing DICOM files bundled with
pydicom (fetched by name: native, big endian, deflated, RLE, JPEG, JPEG-LS, JPEG 2000, palette,
YBR, multi-frame) and PNG, JPEG and 16-bit TIFF files written here. Each file gets one mutation:
random byte flips anywhere, a truncation, or damage inside the first 2 KB (where the header
is). Each file is then opened with ``engine.imaging.open_paths`` and its first frames decoded
and rendered, as the viewer would.

The files run in a child process that reports one JSON line per file; the parent watches it,
so a native crash or a hang is counted against the file in flight (and the child restarted)
instead of ending the run. The summary line is::

    N files: k opened, m clean errors, 0 other exceptions, 0 hangs, 0 dead processes
"""

from __future__ import annotations

import argparse
import io
import json
import random
import select
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Bundled with pydicom (get_testdata_file does not download these).
DICOM_SOURCES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "MR_small_expb.dcm",
    "MR_small_padded.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG2000.dcm",
    "JPEG-lossy.dcm",
    "JPGExtended.dcm",
    "693_J2KI.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "examples_jpeg2k.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "JPEGLSNearLossless_16.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "examples_palette.dcm",
    "examples_ybr_color.dcm",
    "image_dfl.dcm",
    "rtdose.dcm",
    "rtdose_rle.dcm",
    "liver_1frame.dcm",
    "no_meta.dcm",
    "ExplVR_BigEnd.dcm",
)
HEADER_BYTES = 2048
MUTATIONS = ("flip", "truncate", "header")


# ----- the corpus
def raster_sources() -> dict[str, bytes]:
    """PNG (8-bit gray, RGB), JPEG and a 16-bit TIFF, made from a seeded gradient."""
    rng = np.random.default_rng(1234)
    y, x = np.mgrid[0:96, 0:128]
    gray8 = ((x + y) % 256).astype(np.uint8)
    rgb = np.dstack([gray8, np.flipud(gray8), rng.integers(0, 255, gray8.shape, dtype=np.uint8)])
    gray16 = (x * 500 + y * 17).astype(np.uint16)
    out = {}
    for name, image, fmt in (
        ("gray.png", Image.fromarray(gray8), "PNG"),
        ("rgb.png", Image.fromarray(rgb), "PNG"),
        ("photo.jpg", Image.fromarray(rgb), "JPEG"),
        ("gray16.tif", Image.fromarray(gray16), "TIFF"),
    ):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        out[name] = buffer.getvalue()
    return out


def sources() -> list[tuple[str, bytes]]:
    found = [(name, Path(get_testdata_file(name)).read_bytes()) for name in DICOM_SOURCES]
    return found + sorted(raster_sources().items())


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One seeded mutation of `data` and its description."""
    kind = rng.choice(MUTATIONS)
    buf = bytearray(data)
    if kind == "truncate":
        cut = rng.randrange(1, len(buf))
        return bytes(buf[:cut]), f"truncate@{cut}"
    end = len(buf) if kind == "flip" else min(len(buf), HEADER_BYTES)
    n = rng.randint(1, 16)
    for _ in range(n):
        pos = rng.randrange(end)
        buf[pos] = rng.choice((0x00, 0xFF, rng.randrange(256), buf[pos] ^ (1 << rng.randrange(8))))
    return bytes(buf), f"{kind}x{n}"


def make_corpus(folder: Path, n_files: int, seed: int) -> list[tuple[Path, str]]:
    rng = random.Random(seed)
    originals = sources()
    files = []
    for i in range(n_files):
        name, data = originals[i % len(originals)]
        mutated, how = mutate(data, rng)
        path = folder / f"{i:05d}_{name}"
        path.write_bytes(mutated)
        files.append((path, f"{name} {how}"))
    return files


# ----- the child: one JSON line per file
def check_file(path: str, max_frames: int) -> dict:
    from engine.imaging import ImageLoadError, initial_window, open_paths, render

    result = open_paths([path])
    rendered = 0
    messages = [error.message for error in result.errors]
    for stack in result.stacks:
        for index in range(min(stack.n_frames, max_frames)):
            try:
                frame = stack.frame(index)
            except ImageLoadError as exc:
                assert exc.path and str(exc), "an ImageLoadError without a path or a reason"
                messages.append(str(exc))
                continue
            pixels = render(frame, initial_window(frame))
            assert pixels.shape[:2] == (stack.rows, stack.columns), f"rendered {pixels.shape}"
            rendered += 1
    for error in result.errors:
        assert error.path and error.message, "a LoadError without a path or a reason"
    return {
        "outcome": "opened" if rendered else "clean error",
        "crashed": any("decoder crashed" in m for m in messages),
        "timed_out": any("took longer than" in m for m in messages),
    }


def child_main(list_file: str, max_frames: int, timeout_s: float) -> int:
    import warnings

    from engine.imaging.decoder_pool import decoder_pool, set_decode_timeout

    warnings.simplefilter("ignore")
    set_decode_timeout(timeout_s)
    paths = Path(list_file).read_text().splitlines()
    for path in paths:
        try:
            report = check_file(path, max_frames)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            report = {"outcome": "other exception", "detail": f"{type(exc).__name__} at {where}: {exc}"[:300]}
        report["restarts"] = decoder_pool().restarts
        print(json.dumps(report), flush=True)
    return 0


# ----- the parent: watch the child, count hangs and deaths
@dataclass
class Summary:
    n: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("opened", "clean error", "other exception", "hang", "dead process"), 0)
    )
    decoder_restarts: int = 0
    problems: list[str] = field(default_factory=list)
    crashed_decoder: list[str] = field(default_factory=list)  # files whose decoder process died
    timed_out: list[str] = field(default_factory=list)

    def line(self) -> str:
        c = self.counts
        return (
            f"{self.n} files: {c['opened']} opened, {c['clean error']} clean errors, "
            f"{c['other exception']} other exceptions, {c['hang']} hangs, {c['dead process']} dead processes"
        )


def run_corpus(
    files: list[tuple[Path, str]], max_frames: int, timeout_s: float, hang_s: float, list_dir: Path
) -> Summary:
    summary = Summary(n=len(files))
    position = 0
    while position < len(files):
        list_file = list_dir / f"list_{position}.txt"
        list_file.write_text("\n".join(str(p) for p, _ in files[position:]))
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                str(list_file),
                "--frames",
                str(max_frames),
                "--timeout",
                str(timeout_s),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        restarts_before = summary.decoder_restarts
        while position < len(files):
            ready, _, _ = select.select([child.stdout], [], [], hang_s)
            line = child.stdout.readline() if ready else b""
            if line:
                report = json.loads(line)
                summary.counts[report["outcome"]] += 1
                summary.decoder_restarts = restarts_before + report["restarts"]
                if report["outcome"] == "other exception":
                    summary.problems.append(f"{files[position][1]}: {report['detail']}")
                if report.get("crashed"):
                    summary.crashed_decoder.append(f"#{position} {files[position][1]}")
                if report.get("timed_out"):
                    summary.timed_out.append(f"#{position} {files[position][1]}")
                position += 1
                continue
            outcome = "hang" if not ready else "dead process"
            child.kill()
            code = child.wait()
            summary.counts[outcome] += 1
            summary.problems.append(f"{files[position][1]}: {outcome} (exit code {code})")
            position += 1
            break
        else:
            child.stdout.close()
            child.wait()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=2, help="frames decoded and rendered per stack")
    parser.add_argument("--timeout", type=float, default=30.0, help="decode time limit per frame, seconds")
    parser.add_argument("--keep", type=Path, help="write the corpus here (kept) instead of a temp folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child, args.frames, args.timeout)
    with tempfile.TemporaryDirectory(prefix="clinlens-fuzz-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        files = make_corpus(folder, args.files, args.seed)
        summary = run_corpus(files, args.frames, args.timeout, hang_s=args.timeout * 2 + 30, list_dir=Path(tmp))
        elapsed = time.perf_counter() - started
    for problem in summary.problems:
        print("  " + problem)
    for title, files_ in (
        ("decoder process crashed (reported as a clean error)", summary.crashed_decoder),
        ("decode time limit reached (reported as a clean error)", summary.timed_out),
    ):
        if files_:
            print(f"{title}: {', '.join(files_)}")
    print(summary.line())
    print(
        f"(seed {args.seed}, {args.frames} frame(s) per stack, decode limit {args.timeout:g} s, "
        f"{summary.decoder_restarts} decoder process(es) restarted, {elapsed:.1f} s)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "line": summary.line(),
                    "counts": summary.counts,
                    "problems": summary.problems,
                    "decoder_restarts": summary.decoder_restarts,
                    "crashed_decoder": summary.crashed_decoder,
                    "timed_out": summary.timed_out,
                }
            )
        )
    bad = sum(summary.counts[k] for k in ("other exception", "hang", "dead process"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
