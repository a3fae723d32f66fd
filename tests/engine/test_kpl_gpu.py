"""KPL on a CUDA GPU (device machine only): fp16 CLIP encoding and the proxy math on device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.kpl import Pool, encode_pool, kpl_predict, load_clip
from tests.engine.test_kpl_math import collapsed_pool, descriptions_around
from tests.engine.tiny_clip import save_tiny_clip_dir, write_image_folder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_clip_encodes_in_fp16_on_the_gpu_close_to_cpu_fp32(tmp_path):
    folder = save_tiny_clip_dir(tmp_path / "tiny")
    gpu = load_clip(f"local-dir:{folder}", device="cuda")
    cpu = load_clip(f"local-dir:{folder}", device="cpu")
    assert gpu.precision == "fp16" and gpu.device.type == "cuda"
    pool = Pool.from_paths([write_image_folder(tmp_path / "data")])
    on_gpu = encode_pool(pool, gpu, batch_size=5)
    on_cpu = encode_pool(pool, cpu, batch_size=5)
    assert on_gpu.features.dtype == torch.float32 and on_gpu.features.device.type == "cpu"
    cosines = (on_gpu.features * on_cpu.features).sum(1)
    assert float(cosines.min()) > 0.99


def test_kpl_predict_runs_on_gpu_tensors_and_agrees_with_cpu():
    x, w_text, y = collapsed_pool(seed=0)
    blocks = descriptions_around(w_text, m=20, seed=0, spread=0.0)
    cpu = kpl_predict(x, blocks)
    gpu = kpl_predict(x.cuda(), [b.cuda() for b in blocks])
    assert isinstance(gpu.predictions, np.ndarray)
    assert (gpu.predictions == cpu.predictions).mean() >= 0.99
    assert (gpu.predictions == y.numpy()).mean() >= 0.7
