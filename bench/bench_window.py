"""Window-change speed: ClinLens render (LUT fast path) vs a straightforward float pipeline.

    python bench/bench_window.py [--repeats N]

Each timed call uses a window not seen before, so every call pays for building its lookup
table (no cache hits): this is what one step of a window drag costs. The baseline, measured in
the same run, is the obvious per-pixel pipeline: pydicom apply_modality_lut, then
apply_windowing, then scaling to 8 bit. Outputs are checked to agree within one grey level.

Frames (both built from real pydicom test data):
  * 512x512 CT: CT_small.dcm (128x128, int16, HU = stored - 1024) upsampled 4x by repeating
    each pixel, so values and header stay real.
  * 3000x3000 radiograph-like: CT_small stored values shifted to unsigned 12 bit and resized
    bilinearly (Pillow) to 3000x3000, stored as uint16 (like a CR/DX plate).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_windowing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.imaging import PixelParams, Window, frame_from_array, render


def ct_512() -> tuple[np.ndarray, pydicom.Dataset, PixelParams]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    stored = np.repeat(np.repeat(ds.pixel_array, 4, axis=0), 4, axis=1)
    params = PixelParams(int(ds.BitsStored), True, (float(ds.RescaleSlope), float(ds.RescaleIntercept)))
    return stored, ds, params


def radiograph_3000() -> tuple[np.ndarray, pydicom.Dataset, PixelParams]:
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array.astype(np.int32)
    twelve_bit = (ct - ct.min()) * 4095 // (ct.max() - ct.min())
    resized = Image.fromarray(twelve_bit.astype(np.int32), mode="I").resize((3000, 3000), Image.Resampling.BILINEAR)
    stored = np.clip(np.asarray(resized), 0, 4095).astype(np.uint16)
    ds = pydicom.Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored, ds.PixelRepresentation = 12, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, 0.0
    return stored, ds, PixelParams(12, False, (1.0, 0.0))


def baseline(stored: np.ndarray, ds: pydicom.Dataset, window: Window) -> np.ndarray:
    """The straightforward path: float modality values, pydicom windowing, scale to 8 bit."""
    ds = copy.copy(ds)
    ds.WindowCenter, ds.WindowWidth = window.center, window.width
    values = apply_windowing(apply_modality_lut(stored, ds), ds)
    if ds.PixelRepresentation == 0:
        y_min, y_max = 0.0, 2.0**ds.BitsStored - 1
    else:
        y_min, y_max = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
    y_min = y_min * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    y_max = y_max * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return np.clip(np.rint((values - y_min) / (y_max - y_min) * 255), 0, 255).astype(np.uint8)


def median_ms(run: Callable[[Window], np.ndarray], windows: list[Window]) -> float:
    times = []
    for window in windows:
        start = time.perf_counter()
        run(window)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def windows_for(center: float, width: float, repeats: int, offset: float) -> list[Window]:
    """Distinct windows, like the successive positions of a drag."""
    return [Window(center + offset + 3.0 * i, width + 2.0 * i) for i in range(repeats)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    cases = [
        ("512x512 CT (CT_small upsampled 4x)", *ct_512(), 40.0, 400.0, (1,)),
        ("3000x3000 16-bit radiograph-like", *radiograph_3000(), 2048.0, 3000.0, (1, 3)),
    ]
    print(f"median of {args.repeats} window changes, each with a new window (ms)\n")
    print(f"{'frame':<38} {'path':<28} {'ours':>8} {'baseline':>9} {'speed-up':>9}")
    results = []
    for name, stored, ds, params, center, width, steps in cases:
        frame = frame_from_array(stored, params=params)
        check = Window(center, width)
        diff = np.abs(render(frame, check).astype(int) - baseline(stored, ds, check).astype(int)).max()
        assert diff <= 1, f"outputs disagree by {diff} grey levels"
        for _ in range(3):  # warm both paths (allocator, imports) before timing
            baseline(stored, ds, check)
            render(frame, Window(center + 0.1, width))
        base_ms = median_ms(
            lambda w, stored=stored, ds=ds: baseline(stored, ds, w), windows_for(center, width, args.repeats, 0.5)
        )
        for step in steps:
            offset = 0.25 + step  # new windows for every measurement: no LUT cache hits
            ours_ms = median_ms(
                lambda w, frame=frame, step=step: render(frame, w, step=step),
                windows_for(center, width, args.repeats, offset),
            )
            label = "LUT, full resolution" if step == 1 else f"LUT, step {step} (~{stored.shape[1] // step} px view)"
            print(f"{name:<38} {label:<28} {ours_ms:8.2f} {base_ms:9.2f} {base_ms / ours_ms:8.1f}x")
            results.append((name, step, ours_ms, base_ms))
    full_3000 = next(ms for name, step, ms, _ in results if name.startswith("3000") and step == 1)
    worst_ratio = min(base / ours for _, step, ours, base in results if step == 1)
    print(
        f"\ntargets: >= 10x faster than the float path at full resolution: {worst_ratio:.1f}x "
        f"({'met' if worst_ratio >= 10 else 'NOT met'}); 3000x3000 window change < 30 ms: "
        f"{full_3000:.1f} ms ({'met' if full_3000 < 30 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
