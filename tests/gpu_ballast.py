"""Fill a CUDA GPU's memory for real out-of-memory tests (device machine only).

Allocations go through torch's caching allocator, the one generation uses, in halving chunk
sizes until nothing more fits, so the next allocation of a question's tensors fails with a real
``torch.OutOfMemoryError``. ``release`` hands back some of it; leaving the block frees it all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class Ballast:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.chunks: list[torch.Tensor] = []

    @property
    def bytes(self) -> int:
        return sum(c.numel() for c in self.chunks)

    def fill(self) -> None:
        size = 1 << 30
        while size >= 512:
            try:
                self.chunks.append(torch.empty(size, dtype=torch.uint8, device=self.device))
            except torch.OutOfMemoryError:
                size //= 2

    def release(self, nbytes: int) -> None:
        """Free at least ``nbytes`` (largest chunks first) so a small question fits again."""
        self.chunks.sort(key=lambda c: c.numel())
        freed = 0
        while self.chunks and freed < nbytes:
            freed += self.chunks.pop().numel()
        torch.cuda.empty_cache()


@contextmanager
def gpu_memory_filled(device: str | torch.device = "cuda") -> Iterator[Ballast]:
    ballast = Ballast(torch.device(device))
    try:
        ballast.fill()
        yield ballast
    finally:
        ballast.chunks.clear()
        torch.cuda.empty_cache()
