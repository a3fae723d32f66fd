"""GPU behaviour of the ClinKD engine (device machine only): bf16 default, peak memory, MCG batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.clinkd import AskRequest, GenerationSettings, LoadSettings, Task, ask, ask_batch, load_model
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (80, 120, 3), dtype=np.uint8)


def test_gpu_defaults_bf16_and_reports_peak_memory(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tiny_checkpoint(tmp_path_factory)
    clinkd = load_model(LoadSettings(str(folder), min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
    assert clinkd.info.dtype == "bfloat16" and clinkd.info.device.startswith("cuda")
    result = ask(clinkd, AskRequest(_image(0), "left lung", Task.VG), GenerationSettings(max_new_tokens=8))
    assert result.peak_gpu_memory_bytes is not None and result.peak_gpu_memory_bytes > 0
    assert result.new_tokens <= 8


def test_gpu_mcg_batch(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tiny_checkpoint(tmp_path_factory)
    clinkd = load_model(
        LoadSettings(str(folder), min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS, mcg_rope=True)
    )
    requests = [AskRequest(_image(1), "left lung", Task.VG), AskRequest(_image(2), "", Task.MIA)]
    results = ask_batch(clinkd, requests, GenerationSettings(max_new_tokens=6))
    assert [r.task for r in results] == [Task.VG, Task.MIA] and all(r.new_tokens <= 6 for r in results)
