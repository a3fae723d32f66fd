"""What decoding compressed frames in decoder processes costs, against decoding in process.

    python bench/bench_decode_isolation.py [--repeats N]

Frames (JPEG 2000 lossless, encoded here with pydicom + pylibjpeg-openjpeg from real data):
  * 512x512: CT_small.dcm (128x128 int16) upsampled 4x by repeating each pixel;
  * 3000x3000: CT_small resized bilinearly (Pillow) to 3000x3000, shifted to unsigned 12 bit.

Raster files (Pillow), made here from the same data:
  * 512x512 PNG: the 512x512 frame as 16-bit grayscale;
  * 3000x3000 TIFF: the 3000x3000 frame as 16-bit grayscale, uncompressed (Pillow maps the
    file; the isolated decode pays the whole 18 MB crossing the pipe) and LZW (libtiff decodes).

For each, the median time of the decode called here (`decode_pixels`, `read_raster_frame`: the
baseline, same run, how frames were decoded before isolation) and of the call the viewer makes
now: through the DecoderPool (request over a pipe, the JPEG 2000 size check, decode in the child,
array pickled back). Process start-up is excluded (the pool is warmed first); it is printed on its own.
Then the throughput of a 24-frame 512x512 series: in process one after another, and through
the pool's two processes from two threads (as the viewer's frame loader and prefetch do).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.imaging.decoder_pool import DecoderPool
from engine.imaging.decoders import decode_pixels, decoder_label
from engine.imaging.raster import read_raster_frame


def j2k_file(folder: Path, name: str, pixels: np.ndarray) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.BitsStored = 16 if pixels.dtype.kind == "i" else 12
    ds.HighBit = ds.BitsStored - 1
    ds.compress(JPEG2000Lossless, pixels, encoding_plugin="pylibjpeg")
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


def frames(folder: Path) -> dict[str, Path]:
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array
    small = np.repeat(np.repeat(ct, 4, axis=0), 4, axis=1)
    unsigned = np.clip(ct.astype(np.int32) + 1024, 0, 4095).astype(np.float32)
    large = np.asarray(Image.fromarray(unsigned).resize((3000, 3000), Image.Resampling.BILINEAR))
    large = np.rint(large).astype(np.uint16)
    return {
        "512x512 J2K": j2k_file(folder, "j2k_512.dcm", small),
        "3000x3000 J2K": j2k_file(folder, "j2k_3000.dcm", large),
        "512x512 PNG": raster_file(folder / "ct_512.png", (small.astype(np.int32) + 1024).astype(np.uint16)),
        "3000x3000 TIFF": raster_file(folder / "ct_3000.tif", large),
        "3000x3000 TIFF LZW": raster_file(folder / "ct_3000_lzw.tif", large, compression="tiff_lzw"),
    }


def raster_file(path: Path, pixels: np.ndarray, **options) -> Path:
    Image.fromarray(pixels).save(path, **options)
    return path


def median_ms(call, repeats: int) -> float:
    call()  # warm caches and imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    pool = DecoderPool(workers=2)
    label = decoder_label(JPEG2000Lossless)
    try:
        started = time.perf_counter()
        pool.warm()
        pool.run("warm", label, time.perf_counter)
        print(f"decoder process start-up (spawn + imports, once per process): {time.perf_counter() - started:.2f} s")
        with tempfile.TemporaryDirectory() as tmp:
            files = frames(Path(tmp))
            print(f"{'frame':>18} {'in-process ms':>14} {'isolated ms':>12} {'ratio':>6}")
            for name, path in files.items():
                if path.suffix != ".dcm":
                    continue
                header = pydicom.dcmread(path, stop_before_pixels=True)
                syntax, size = header.file_meta.TransferSyntaxUID, (header.Rows, header.Columns)
                expected = decode_pixels(str(path), syntax, None)
                isolated = pool.run(str(path), label, decode_pixels, str(path), syntax, None, size)
                assert np.array_equal(expected, isolated), "isolated decode differs"
                inproc = median_ms(lambda p=path, s=syntax: decode_pixels(str(p), s, None), args.repeats)
                pooled = median_ms(
                    lambda p=path, s=syntax, z=size: pool.run(str(p), label, decode_pixels, str(p), s, None, z),
                    args.repeats,
                )
                print(f"{name:>18} {inproc:14.1f} {pooled:12.1f} {pooled / inproc:6.2f}")
            for name, path in files.items():
                if path.suffix == ".dcm":
                    continue
                raster_label = f"{path.suffix[1:].upper()} (Pillow)"
                expected, _ = read_raster_frame(str(path), 0)
                isolated, _ = pool.run(str(path), raster_label, read_raster_frame, str(path), 0)
                assert np.array_equal(expected, isolated), "isolated decode differs"
                inproc = median_ms(lambda p=path: read_raster_frame(str(p), 0), args.repeats)
                pooled = median_ms(
                    lambda p=path, lb=raster_label: pool.run(str(p), lb, read_raster_frame, str(p), 0), args.repeats
                )
                print(f"{name:>18} {inproc:14.1f} {pooled:12.1f} {pooled / inproc:6.2f}")
            path = files["512x512 J2K"]
            syntax, size = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID, (512, 512)
            n = 24
            started = time.perf_counter()
            for _ in range(n):
                decode_pixels(str(path), syntax, None)
            inproc_fps = n / (time.perf_counter() - started)
            with ThreadPoolExecutor(2) as threads:  # start the second decoder process outside the timing
                list(
                    threads.map(
                        lambda _i: pool.run(str(path), label, decode_pixels, str(path), syntax, None, size), range(2)
                    )
                )
            started = time.perf_counter()
            with ThreadPoolExecutor(2) as threads:
                list(
                    threads.map(
                        lambda _i: pool.run(str(path), label, decode_pixels, str(path), syntax, None, size), range(n)
                    )
                )
            pooled_fps = n / (time.perf_counter() - started)
            print(
                f"512x512 series, {n} frames: in process {inproc_fps:.0f} frames/s, "
                f"2 decoder processes {pooled_fps:.0f} frames/s (ratio {pooled_fps / inproc_fps:.2f})"
            )
    finally:
        pool.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
