"""GPU behaviour of the ClinKD engine (device machine only): bf16 default, peak memory, MCG batches,
8-bit / 4-bit bitsandbytes loading, and a real CUDA out-of-memory with recovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.clinkd import (
    AskRequest,
    GenerationOutOfMemory,
    GenerationSettings,
    LoadSettings,
    Task,
    ask,
    ask_batch,
    load_model,
)
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint
from tests.gpu_ballast import gpu_memory_filled

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


@pytest.mark.parametrize("mode", ["8bit", "4bit"])
def test_gpu_quantized_loading_through_bitsandbytes_answers(mode: str, tmp_path_factory) -> None:
    pytest.importorskip("bitsandbytes", reason="requirements.txt installs bitsandbytes; this env lacks it")
    import bitsandbytes as bnb

    folder = tiny_checkpoint(tmp_path_factory)
    clinkd = load_model(
        LoadSettings(
            str(folder), device="cuda", quantization=mode, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS
        )
    )
    assert clinkd.info.quantization == mode and clinkd.info.device.startswith("cuda")
    layer = bnb.nn.Linear8bitLt if mode == "8bit" else bnb.nn.Linear4bit
    quantized = [m for m in clinkd.model.modules() if isinstance(m, layer)]
    assert quantized, f"no {layer.__name__} layer: the checkpoint was not quantized"
    full = load_model(LoadSettings(str(folder), device="cuda", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
    assert clinkd.info.memory_bytes < full.info.memory_bytes
    result = ask(clinkd, AskRequest(_image(3), "left lung", Task.VG), GenerationSettings(max_new_tokens=6))
    assert 1 <= result.new_tokens <= 6 and result.peak_gpu_memory_bytes > 0


def test_gpu_real_out_of_memory_is_explained_freed_and_recovered(tmp_path_factory) -> None:
    folder = tiny_checkpoint(tmp_path_factory)
    clinkd = load_model(
        LoadSettings(str(folder), device="cuda", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    )
    request, settings = AskRequest(_image(4), "left lung", Task.VG), GenerationSettings(max_new_tokens=6)
    ask(clinkd, request, settings)  # warm-up: cuBLAS handles and workspaces exist before memory runs out
    with gpu_memory_filled(clinkd.model.device) as ballast:
        assert ballast.bytes > 0
        before = torch.cuda.memory_allocated()
        with pytest.raises(GenerationOutOfMemory, match="ran out of memory") as err:
            ask(clinkd, request, settings)
        assert "Memory was freed" in str(err.value) and "max_pixels" in str(err.value)
        assert err.value.__context__ is None  # no traceback keeps the question's tensors alive
        assert torch.cuda.memory_allocated() == before  # everything the question allocated is freed
        ballast.release(512 << 20)  # most of the GPU stays full
        answer = ask(clinkd, request, settings)
    assert 1 <= answer.new_tokens <= 6 and not answer.cancelled
