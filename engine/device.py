"""What the status bar says about the compute device, and freeing GPU memory on request."""

from __future__ import annotations

import gc

import torch


def describe_device(device: str) -> str:
    """'NVIDIA H100 · 3.1 / 79.1 GB in use' for a CUDA device, 'CPU' otherwise."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return "CPU"
    index = torch.device(device).index or 0
    free, total = torch.cuda.mem_get_info(index)
    return f"{torch.cuda.get_device_name(index)} · {(total - free) / 1e9:.1f} / {total / 1e9:.1f} GB in use"


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
