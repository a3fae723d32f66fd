"""How long does one mask's label volume take to build (what the three planes cut their fills from)?

    python bench/bench_mask_labels.py [--slices 300] [--size 512] [--repeats 5]

A liver-sized mask (a disc of radius 80-160 pixels on every slice of a 512 x 512 x 300 CT), stored
as the document stores masks (RLE per frame), decoded and stacked by ``label_volume`` exactly as
app/volumes/mask_planes.py does on its build thread. The median is printed: what the window would
freeze for, per mask and per edit, if the build ran on the GUI thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from engine.annotations import AnnotationDocument  # noqa: E402
from engine.annotations.image_ref import FrameSource, ImageRef  # noqa: E402
from engine.imaging.volume_labels import label_volume  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, size = args.slices, args.size
    frames = tuple(FrameSource(f"/bench/{i}.dcm", f"1.2.826.0.1.{i}", 1) for i in range(n))
    ref = ImageRef("series:bench", tuple(f.path for f in frames), size, size, n, frames, kind="dicom")
    doc = AnnotationDocument()
    doc.add_image(ref)
    yy, xx = np.mgrid[:size, :size]
    centre = size / 2
    arrays = {k: (yy - centre) ** 2 + (xx - centre) ** 2 < (120 + 40 * np.sin(k / 30)) ** 2 for k in range(n)}
    mask = doc.new_mask(ref.image_id, arrays, "liver")
    volume = types.SimpleNamespace(geometry=types.SimpleNamespace(frame_indices=list(range(n))))  # all it reads
    times = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        labels = label_volume(volume, mask.arrays())
        times.append(time.perf_counter() - began)
    print(
        f"label volume of a {size}x{size}x{n} mask ({'x'.join(map(str, labels.data.shape))} kept): "
        f"median {1000 * statistics.median(times):.0f} ms over {args.repeats}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
