"""Fine-tuning and distillation on the tiny random Qwen2-VL: loss goes down, the right weights move,
checkpoints resume, the exported folder loads in the ClinKD engine (MCG-RoPE on) and answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.clinkd import AskRequest, GenerationSettings, LoadSettings, RopeGaps, Task, ask, installed_gaps, load_model
from engine.training import ChatDataset, DistillSettings, TrainSettings, distill, prepare_model, train
from tests.engine.test_training_data import make_medgrit
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint

FAST = {
    "min_pixels": TINY_MIN_PIXELS,
    "max_pixels": TINY_MAX_PIXELS,
    "batch_size": 2,
    "grad_accum": 1,
    "warmup_steps": 0,
    "lr_scheduler": "constant",
    "logging_steps": 1,
    "save_steps": 1000,
    "device": "cpu",  # these tests check CPU training; tests/engine/test_training_gpu.py covers CUDA
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_medgrit(tmp_path_factory.mktemp("medgrit"), n=4)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _losses(result: object) -> list[float]:
    return [entry["loss"] for entry in result.log_history if "loss" in entry]


def test_full_fine_tune_lowers_the_loss_and_exports_an_engine_checkpoint(
    base: Path, data: Path, tmp_path: Path
) -> None:
    progress = []
    out = tmp_path / "sft"
    result = train(
        TrainSettings(str(base), (str(data),), str(out), max_steps=6, learning_rate=3e-3, **FAST),
        on_progress=progress.append,
    )
    losses = _losses(result)
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.2
    assert [p.step for p in progress] == [1, 2, 3, 4, 5, 6] and all(p.total == 6 for p in progress)
    assert result.global_step == 6 and result.conversations == 4 and result.peak_gpu_memory_bytes is None

    config = json.loads((out / "config.json").read_text())
    assert config["mcg_rope"] == {"gap_in": 2, "gap_out": 2}
    before, after = _weights(base), _weights(out)
    assert before.keys() == after.keys()
    visual = [k for k in before if "visual" in k]
    language = [k for k in before if k.startswith("model.layers.")]
    assert visual and all(torch.equal(before[k], after[k]) for k in visual)  # vision tower and merger frozen
    assert any(not torch.equal(before[k], after[k]) for k in language)
    record = json.loads((out / "training_record.json").read_text())
    assert record["settings"]["method"] == "full" and record["result"]["global_step"] == 6

    clinkd = load_model(LoadSettings(str(out), device="cpu", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
    assert clinkd.info.mcg_rope == RopeGaps(2, 2) and installed_gaps(clinkd.model) == RopeGaps(2, 2)
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    answer = ask(clinkd, AskRequest(image, "left lung", Task.VG), GenerationSettings(max_new_tokens=5))
    assert 1 <= answer.new_tokens <= 5 and answer.image_tokens > 0 and not answer.cancelled


def test_lora_trains_adapters_only_and_merges_into_a_plain_checkpoint(base: Path, data: Path, tmp_path: Path) -> None:
    settings = TrainSettings(
        str(base), (str(data),), str(tmp_path / "lora"), method="lora", max_steps=4, learning_rate=1e-2, **FAST
    )
    prepared = prepare_model(settings)
    assert 0 < prepared.trainable_parameters < prepared.total_parameters / 2
    trainable = [n for n, p in prepared.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "visual" not in n for n in trainable)
    assert installed_gaps(prepared.clinkd.model) == RopeGaps(2, 2)  # the instance peft wraps trains with MCG
    result = train(settings)
    assert _losses(result)[-1] < _losses(result)[0]
    out = tmp_path / "lora"
    before, after = _weights(base), _weights(out)
    assert before.keys() == after.keys()  # merged: no adapter tensors left
    q_proj = [k for k in before if k.endswith("q_proj.weight")]
    assert q_proj and all(not torch.equal(before[k], after[k]) for k in q_proj)
    assert all(torch.equal(before[k], after[k]) for k in before if "mlp.fc1" in k or "embed_tokens" in k)
    assert json.loads((out / "config.json").read_text())["mcg_rope"] == {"gap_in": 2, "gap_out": 2}


def test_training_resumes_from_its_last_checkpoint(base: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumable"
    fast = {**FAST, "save_steps": 2}
    first = train(TrainSettings(str(base), (str(data),), str(out), max_steps=2, mcg_rope=False, **fast))
    assert first.global_step == 2 and (out / "checkpoint-2" / "trainer_state.json").is_file()
    assert json.loads((out / "checkpoint-2" / "config.json").read_text())["mcg_rope"] is False
    again = TrainSettings(str(base), (str(data),), str(out), max_steps=3, mcg_rope=False, resume="auto", **fast)
    resumed = train(again)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-2")
    assert resumed.global_step == 3
    assert [e["step"] for e in resumed.log_history if "loss" in e] == [1, 2, 3]  # history carried over
    clinkd = load_model(LoadSettings(str(out), device="cpu", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
    assert clinkd.info.mcg_rope is None  # trained with stock positions: the engine keeps them
    with pytest.raises(Exception, match="does not exist"):
        train(TrainSettings(str(base), (str(data),), str(out), max_steps=3, resume=str(tmp_path / "nowhere"), **fast))


def test_distillation_mixes_kl_and_ce_and_orders_by_teacher_margin(
    base: Path,
    data: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    teacher = tiny_checkpoint(tmp_path_factory, "tiny-training-teacher", seed=1)
    out = tmp_path / "kd"
    phases = []
    seen: list[str] = []  # sample ids in the order the data loaders read them
    read = ChatDataset.__getitem__

    def recording(self: ChatDataset, index: int) -> dict:
        seen.append(self.conversations[index].sample_id)
        return read(self, index)

    monkeypatch.setattr(ChatDataset, "__getitem__", recording)
    result = distill(
        TrainSettings(str(base), (str(data),), str(out), max_steps=4, learning_rate=3e-3, **FAST),
        DistillSettings(str(teacher), margin_batch_size=2),
        on_progress=phases.append,
    )
    assert [p.phase for p in phases] == ["scoring", "scoring", "training", "training", "training", "training"]
    logged = [e for e in result.log_history if "loss" in e]
    assert all(e["kl"] > 0 for e in logged)
    for entry in logged:  # batch of 2, no accumulation: the logged loss is (0.5 kl + ce) / 1.5 of that batch
        assert entry["loss"] == pytest.approx((0.5 * entry["kl"] + entry["ce"]) / 1.5, abs=2e-3)
    assert logged[-1]["loss"] < logged[0]["loss"]
    margins = json.loads((out / "teacher_margins.json").read_text())
    assert len(margins["margins"]) == 4 and all(0 <= m <= 1 for m in margins["margins"])
    assert margins["ids"][0].startswith("x_00") and margins["ids"][1].startswith("ct_00")
    by_margin = [margins["ids"][i] for i in np.argsort(-np.asarray(margins["margins"]), kind="stable")]
    assert seen[:4] == margins["ids"]  # the scoring pass reads the data in file order
    assert seen[4:] == by_margin * 2  # training: most confident first, same order each epoch
    record = json.loads((out / "training_record.json").read_text())
    assert record["distill"]["temperature"] == 0.5 and record["distill"]["curriculum"] == "order"
