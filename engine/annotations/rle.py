"""COCO run-length encoding of one frame's mask: how masks are stored, saved and exported.

A mask covers whole frames of a series, most of it background; COCO RLE (pycocotools) keeps a
512x512 frame in a few hundred bytes, is exact, and is what COCO-format tools read directly, so
the same string serves the sidecar and the COCO export. Counts are kept as ``str`` (pycocotools
returns bytes) so that the frozen dataclasses hold plain, JSON-ready, hashable values.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as coco_mask


@contextmanager
def _quiet() -> Iterator[None]:
    """pycocotools (2.0.8-2.0.10) calls numpy with ``copy=False`` inside decode/area/toBbox and
    numpy 2 warns about it on every call; the result is right, the warning is noise in our logs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        yield


@dataclass(frozen=True)
class Rle:
    """One frame's mask: ``size`` is (rows, columns), ``counts`` the compressed COCO string."""

    rows: int
    columns: int
    counts: str

    def __post_init__(self) -> None:
        for name in ("rows", "columns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"mask {name} must be a positive integer, got {value!r}")
        if not isinstance(self.counts, str):
            raise TypeError("mask counts must be text (COCO compressed RLE)")

    def coco(self) -> dict[str, object]:
        """The pycocotools/COCO JSON form: ``{"size": [rows, columns], "counts": str}``."""
        return {"size": [self.rows, self.columns], "counts": self.counts}

    def decode(self) -> np.ndarray:
        """The boolean mask, shape (rows, columns)."""
        try:
            with _quiet():
                array = coco_mask.decode({"size": [self.rows, self.columns], "counts": self.counts.encode("ascii")})
        except (ValueError, UnicodeEncodeError, TypeError) as err:
            raise ValueError(f"mask counts are not valid COCO RLE: {err}") from None
        return array.astype(bool)

    def check(self) -> None:
        """ValueError unless ``counts`` is the exact encoding of a rows x columns mask.

        pycocotools decodes damaged counts into some mask without complaint; re-encoding tells,
        since its compressed form is canonical (one string per mask)."""
        if encode(self.decode()).counts != self.counts:
            raise ValueError("mask counts are not valid COCO RLE for its size")

    @property
    def area(self) -> int:
        """Pixels inside."""
        with _quiet():
            return int(coco_mask.area(self._raw()))

    def bbox(self) -> tuple[float, float, float, float]:
        """COCO ``[x, y, w, h]`` of the pixels inside (pixel-edge convention, as our boxes)."""
        with _quiet():
            return tuple(float(v) for v in coco_mask.toBbox(self._raw()))  # type: ignore[return-value]

    def _raw(self) -> dict[str, object]:
        return {"size": [self.rows, self.columns], "counts": self.counts.encode("ascii")}


def encode(mask: np.ndarray) -> Rle:
    """Compress a 2-D mask (bool, or any values where non-zero is inside)."""
    array = np.asarray(mask)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"a frame mask must be a 2-D array of rows x columns, got shape {array.shape}")
    encoded = coco_mask.encode(np.asfortranarray(array != 0, dtype=np.uint8))
    return Rle(int(array.shape[0]), int(array.shape[1]), encoded["counts"].decode("ascii"))


def from_coco(segmentation: object, rows: int, columns: int) -> Rle:
    """An RLE from a COCO ``segmentation`` object: compressed (ours, pycocotools) or the
    uncompressed ``counts`` list other tools write; ValueError for anything else."""
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        raise ValueError("segmentation must be an RLE object with size and counts")
    size, counts = segmentation.get("size"), segmentation["counts"]
    if size != [rows, columns]:
        raise ValueError(f"RLE size {size} is not the image's [{rows}, {columns}] (rows, columns)")
    if isinstance(counts, list):
        if (
            not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
            or sum(counts) != rows * columns
        ):
            raise ValueError("uncompressed RLE counts must be non-negative integers covering the image")
        with _quiet():
            counts = coco_mask.frPyObjects({"size": [rows, columns], "counts": counts}, rows, columns)["counts"].decode(
                "ascii"
            )
    if not isinstance(counts, str):
        raise TypeError("RLE counts must be text or a list of integers")
    rle = Rle(rows, columns, counts)
    rle.check()
    return rle
