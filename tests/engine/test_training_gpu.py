"""Training on a GPU (device machine only): bf16 mixed precision by default, peak memory reported,
LoRA and distillation on CUDA, and the exported folder answering in the engine on the GPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.clinkd import AskRequest, GenerationSettings, LoadSettings, Task, ask, load_model
from engine.training import DistillSettings, TrainSettings, distill, prepare_model, train
from tests.engine.test_training_data import make_medgrit
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

FAST = {
    "min_pixels": TINY_MIN_PIXELS,
    "max_pixels": TINY_MAX_PIXELS,
    "batch_size": 2,
    "grad_accum": 2,
    "warmup_steps": 0,
    "lr_scheduler": "constant",
    "logging_steps": 1,
    "save_steps": 1000,
}


def test_gpu_mixed_precision_defaults_and_export(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tiny_checkpoint(tmp_path_factory)
    data = make_medgrit(tmp_path / "data", n=4)
    settings = TrainSettings(str(base), (str(data),), str(tmp_path / "out"), max_steps=6, learning_rate=3e-3, **FAST)
    prepared = prepare_model(settings)
    assert prepared.precision == "bf16" and prepared.device.startswith("cuda")
    dtypes = {p.dtype for p in prepared.model.model.visual.parameters()}
    assert dtypes == {torch.bfloat16}  # frozen: bf16
    assert {p.dtype for p in prepared.model.parameters() if p.requires_grad} == {torch.float32}  # fp32 masters
    del prepared

    result = train(settings)
    losses = [e["loss"] for e in result.log_history if "loss" in e]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert result.peak_gpu_memory_bytes is not None and result.peak_gpu_memory_bytes > 0
    out = Path(result.output_dir)
    weights = load_file(str(out / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}  # the tiny base checkpoint's dtype
    assert json.loads((out / "config.json").read_text())["mcg_rope"] == {"gap_in": 2, "gap_out": 2}
    clinkd = load_model(LoadSettings(str(out), min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    answer = ask(clinkd, AskRequest(image, "left lung", Task.VG), GenerationSettings(max_new_tokens=4))
    assert clinkd.info.device.startswith("cuda") and 1 <= answer.new_tokens <= 4


def test_gpu_lora_and_distillation(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tiny_checkpoint(tmp_path_factory)
    teacher = tiny_checkpoint(tmp_path_factory, "tiny-training-teacher", seed=1)
    data = make_medgrit(tmp_path / "data", n=4)
    lora = train(
        TrainSettings(
            str(base), (str(data),), str(tmp_path / "lora"), method="lora", max_steps=4, learning_rate=1e-2, **FAST
        )
    )
    assert lora.peak_gpu_memory_bytes > 0 and lora.trainable_parameters < lora.total_parameters
    kd = distill(
        TrainSettings(str(base), (str(data),), str(tmp_path / "kd"), max_steps=3, precision="pure-bf16", **FAST),
        DistillSettings(str(teacher), curriculum="weight"),
    )
    logged = [e for e in kd.log_history if "loss" in e]
    assert logged and all(e["kl"] > 0 and np.isfinite(e["loss"]) for e in logged)
