"""KPL benchmarks, each against a baseline measured in the same run (CPU; a few minutes).

1. Proxy learning (StableGreenkhorn + 2000-step proxy descent) on CLIP-like synthetic pools,
   n = 1000 and 10000 images, C = 2 and 5 classes, d = 768: engine.kpl against a straight port
   of the authors' code (tests/engine/kpl_reference.py) in the same process, with the speed-up
   and the agreement of labels and selected descriptions (must be n/n and C/C).
2. Image encoding throughput of engine.kpl.encode_pool (imaging render, hashing, cache writes,
   threaded preprocessing) against a bare open_clip loop over the same PNGs and tiny model.

    .venv/bin/python bench/bench_kpl.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.kpl import FeatureCache, Pool, encode_pool, load_clip
from engine.kpl.proxies import learn_proxies, stable_greenkhorn, text_proxies
from tests.engine.kpl_reference import authors_image_opt, authors_stable_greenkhorn, authors_text_proxies
from tests.engine.test_kpl_math import collapsed_pool, descriptions_around
from tests.engine.tiny_clip import save_tiny_clip_dir


def bench_proxies(sizes: list[int], classes: list[int], seed: int) -> None:
    print(f"proxy learning, d=768, CPU threads={torch.get_num_threads()}")
    print(
        f"{'n':>6} {'C':>2} {'reference s':>12} {'ours s':>8} {'speed-up':>9} {'iters':>6} {'cycle':>5}"
        f" {'labels equal':>13} {'descr.':>6} {'acc text/kpl':>13}"
    )
    for n in sizes:
        for c in classes:
            x, w_seed, y = collapsed_pool(n=n, c=c, d=768, seed=seed)
            blocks = descriptions_around(w_seed, m=40, seed=seed, spread=0.02)
            start = time.perf_counter()
            ref_text, ref_selected = authors_text_proxies(x, blocks, 8)
            ref_logits = x @ ref_text
            ref_plan = authors_stable_greenkhorn(ref_logits)
            ref_w, _ = authors_image_opt(x, ref_text, ref_plan)
            ref_s = time.perf_counter() - start

            start = time.perf_counter()
            w_text, selected = text_proxies(x, blocks, 8)
            logits = x @ w_text
            run = learn_proxies(x, w_text, stable_greenkhorn(logits))
            ours_s = time.perf_counter() - start

            picked = sum(torch.equal(a, b) for a, b in zip(selected, ref_selected, strict=True))
            ref_labels = (x @ ref_w).argmax(1)
            labels = (x @ run.proxies).argmax(1)
            same = int((ref_labels == labels).sum())
            text_acc = float((logits.argmax(1) == y).float().mean())
            acc = float((labels == y).float().mean())
            print(
                f"{n:>6} {c:>2} {ref_s:>12.2f} {ours_s:>8.3f} {ref_s / ours_s:>8.1f}x {run.iterations:>6}"
                f" {run.period:>5} {same:>6}/{n:<6} {picked:>3}/{c:<2} {text_acc:>6.3f}/{acc:.3f}",
                flush=True,
            )


def write_pngs(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    paths = []
    for i in range(count):
        base = 128 + 60 * np.sin(xx / (20 + i % 7)) * np.cos(yy / (25 + i % 5))
        pixels = np.clip(base + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def bare_loop(clip, paths: list[Path], batch_size: int) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            batch = torch.stack([clip.preprocess(Image.open(p).convert("RGB")) for p in chunk])
            out.append(F.normalize(clip.model.encode_image(batch), dim=-1))
    return torch.cat(out)


def bench_encoding(count: int, size: int, batch_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = load_clip(f"local-dir:{save_tiny_clip_dir(root / 'clip', image_size=224)}")
        paths = write_pngs(root / "images", count, size)
        bare_loop(clip, paths[:batch_size], batch_size)  # warm-up (allocator, kernels)
        encode_pool(Pool.from_paths(paths[:batch_size]), clip, batch_size=batch_size)

        start = time.perf_counter()
        bare = bare_loop(clip, paths, batch_size)
        bare_s = time.perf_counter() - start

        cache = FeatureCache(root / "cache")
        start = time.perf_counter()
        ours = encode_pool(Pool.from_paths([root / "images"]), clip, cache=cache, batch_size=batch_size)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        again = encode_pool(Pool.from_paths([root / "images"]), clip, cache=cache, batch_size=batch_size)
        cached_s = time.perf_counter() - start

        assert again.cache_hits == count and ours.cache_misses == count
        max_diff = float((ours.features - bare).abs().max())
        print(
            f"\nimage encoding, tiny open_clip (224 px), {count} PNGs {size}x{size}, batch {batch_size}, "
            f"{os.cpu_count()} CPUs"
        )
        print(f"bare open_clip loop: {count / bare_s:7.1f} img/s ({bare_s:.2f} s)")
        print(f"engine encode_pool:  {count / ours_s:7.1f} img/s ({ours_s:.2f} s, cold cache, with hashing, writes)")
        print(
            f"throughput ratio ours/bare: {bare_s / ours_s:.2f} (target >= 0.95); max feature difference {max_diff:.1e}"
        )
        print(f"second run from the cache: {count / cached_s:7.1f} img/s ({cached_s:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 1000 only and fewer images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bench_proxies([1000] if args.quick else [1000, 10000], [2, 5], args.seed)
    bench_encoding(64 if args.quick else 256, 512, 32)


if __name__ == "__main__":
    main()
