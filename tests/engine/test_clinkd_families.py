"""Every grounded family (Qwen2.5-VL, Qwen3-VL, MedGemma / Gemma 3) through the production path.

Tiny random checkpoints built from each family's real config and processor classes load through
``load_model``, answer with ``main.py ask`` (streaming, JSON), cancel, and batch with left padding.
Where a test needs a known answer (boxes) it scripts the model's tokens through the real streamer:
the family's box dialect, its coordinates and the processor's resize are under test, never words.
"""

from __future__ import annotations

import argparse
import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from cli import clinkd as cli
from engine.clinkd import AskRequest, GenerationSettings, LoadSettings, ModelFolderError, Task, ask, ask_batch
from engine.clinkd.families import GEMMA3, QWEN2_5_VL, QWEN2_VL, QWEN3_VL, family_of_config, family_of_served_model
from engine.clinkd.loader import load_model, read_checkpoint_config
from engine.clinkd.server import ServerSettings, open_server
from engine.evaluation.protocol import score_grounding
from engine.evaluation.runner import record_dialect
from engine.grounding import GRID_FRAME
from tests.engine.openai_stub import OpenAIStub, StubBehaviour
from tests.engine.tiny_families import tiny_family_checkpoint
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS

FAMILIES = [QWEN2_5_VL, QWEN3_VL, GEMMA3]
PIXELS = {"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS}


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda f: f.model_type)
def family_dir(request, tmp_path_factory):
    return request.param, tiny_family_checkpoint(tmp_path_factory, request.param.model_type)


@pytest.fixture(scope="module")
def loaded(family_dir):
    family, folder = family_dir
    return family, load_model(LoadSettings(str(folder), device="cpu", **PIXELS))


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "chest.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(path)
    return str(path)


def _image(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ask", *argv])
    return args.func(args)


# ---------------------------------------------------------------- loading and asking, every family


def test_each_family_loads_through_the_production_loader(loaded) -> None:
    family, clinkd = loaded
    assert clinkd.family is family and clinkd.info.family == family.model_type
    assert type(clinkd.model).__name__ == family.model_class
    assert clinkd.info.mcg_rope is None  # ClinKD's positions stay with Qwen2-VL


def test_ask_command_streams_and_prints_json(family_dir, png, capsys) -> None:
    family, folder = family_dir
    tiny = ["--model", str(folder), "--device", "cpu", "--min-pixels", str(TINY_MIN_PIXELS)]
    tiny += ["--max-pixels", str(TINY_MAX_PIXELS)]
    code = _run_cli(png, "--task", "roc", "--box", "10,20,60,45", "--max-new-tokens", "5", "--stream", "--json", *tiny)
    captured = capsys.readouterr()
    assert code == 0
    data = json.loads(captured.out)
    assert data["model"]["family"] == family.model_type and data["dialect"] == family.dialect
    assert f'"{family.dialect}"' in data["question"]  # the box prompt is written in the family's dialect
    assert data["new_tokens"] >= 1 and captured.err.strip() != ""  # streamed to stderr beside --json


def test_cancel_mid_answer_stops_and_drops_boxes(loaded) -> None:
    _, clinkd = loaded
    cancel = threading.Event()
    steps: list[int] = []

    def on_step(n: int) -> None:
        steps.append(n)
        if n == 2:
            cancel.set()

    result = ask(
        clinkd,
        AskRequest(_image(), "left lung", Task.VG),
        GenerationSettings(max_new_tokens=40),
        cancel=cancel,
        on_step=on_step,
    )
    assert result.cancelled and result.boxes == () and result.new_tokens <= 3


def test_batch_of_two_with_left_padding_equals_single_answers(loaded) -> None:
    _, clinkd = loaded
    requests = [
        AskRequest(_image(64, 96, 1), "left lung", Task.VG),
        AskRequest(_image(56, 56, 3), "What can you interpret from this long question about the image?"),
    ]
    settings = GenerationSettings(max_new_tokens=6)
    batch = ask_batch(clinkd, requests, settings)
    singles = [ask(clinkd, r, settings) for r in requests]
    assert [b.raw_text for b in batch] == [s.raw_text for s in singles]
    assert [b.prompt_tokens for b in batch] == [s.prompt_tokens for s in singles]
    assert batch[0].prompt_tokens != batch[1].prompt_tokens  # the batch really was padded


# ---------------------------------------------------------------- boxes on the right pixels


def script_answer(monkeypatch, model_class: type, tokenizer, end_id: int, answer: str) -> None:
    """Make ``model_class.generate`` write ``answer`` token by token through the real streamer."""
    tokens = [*tokenizer(answer, add_special_tokens=False).input_ids, end_id]

    def generate(self, input_ids=None, streamer=None, stopping_criteria=(), **_):
        streamer.put(input_ids)
        out = input_ids
        for token in tokens:
            column = torch.full((input_ids.shape[0], 1), token)
            out = torch.cat([out, column], dim=1)
            streamer.put(column[:, 0])
        streamer.end()
        return out

    monkeypatch.setattr(model_class, "generate", generate)


# Each family's answer for the box covering the right half and lower half of a displayed 120 x 90
# frame of a 240 x 180 original: pixels (120, 90)-(240, 180). Qwen2.5-VL's numbers are pixels of
# the processor's resized input: 120 x 90 within 56²..112² pixels resizes to 112 x 84 (28-multiples).
ANSWERS = {
    "qwen2_5_vl": 'Here:\n```json\n[{"bbox_2d": [56, 42, 112, 84], "label": "heart"}]\n```',
    "qwen3_vl": '```json\n[{"bbox_2d": [500, 500, 1000, 1000], "label": "heart"}]\n```',
    "gemma3": 'Thinking done. Final Answer: ```json\n[{"box_2d": [500, 500, 1000, 1000], "label": "heart"}]\n```',
}


def test_answer_boxes_land_on_the_original_pixels(loaded, monkeypatch) -> None:
    family, clinkd = loaded
    answer = ANSWERS[family.model_type]
    script_answer(monkeypatch, type(clinkd.model), clinkd.processor.tokenizer, clinkd.eos_token_ids[0], answer)
    request = AskRequest(_image(90, 120), "heart", Task.VG, width=240, height=180)
    result = ask(clinkd, request)
    (box,) = result.boxes
    assert box.pixels == pytest.approx((120, 90, 240, 180))
    assert box.grid == pytest.approx((500, 500, 1000, 1000)) and box.phrase == "heart"
    assert box.markup == family.dialect and result.issues == () and "heart" in result.text


def test_qwen25_frame_is_the_processors_own_resize(tmp_path_factory) -> None:
    family = QWEN2_5_VL
    folder = tiny_family_checkpoint(tmp_path_factory, family.model_type)
    clinkd = load_model(LoadSettings(str(folder), device="cpu", **PIXELS))
    image_processor = clinkd.processor.image_processor
    for h, w in ((90, 120), (300, 41), (57, 200)):
        frame = family.frame(w, h, TINY_MIN_PIXELS, TINY_MAX_PIXELS)
        grid = image_processor(images=[Image.fromarray(_image(h, w))], return_tensors="pt")["image_grid_thw"][0]
        assert frame == (grid[2] * image_processor.patch_size, grid[1] * image_processor.patch_size)
    result = ask(
        clinkd,
        AskRequest(_image(90, 120), "", Task.ROC, box=(120, 90, 240, 180), width=240, height=180),
        GenerationSettings(max_new_tokens=1),
    )
    assert result.frame == (112, 84) and '{"bbox_2d": [56, 42, 112, 84]}' in result.question


# ---------------------------------------------------------------- family selection


def test_unknown_architecture_is_one_sentence_naming_the_supported(family_dir, tmp_path) -> None:
    _, folder = family_dir
    for item in folder.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["LlavaForConditionalGeneration"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError) as err:
        read_checkpoint_config(tmp_path)
    message = str(err.value)
    assert "LlavaForConditionalGeneration" in message and "\n" not in message
    assert all(f.name in message for f in (QWEN2_VL, QWEN2_5_VL, QWEN3_VL, GEMMA3))


def test_mcg_rope_is_refused_outside_qwen2vl(family_dir) -> None:
    family, folder = family_dir
    with pytest.raises(Exception, match="MCG-RoPE") as err:
        load_model(LoadSettings(str(folder), device="cpu", mcg_rope=True, **PIXELS))
    assert family.name in str(err.value)


def test_family_from_config_and_served_names() -> None:
    assert family_of_config({"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"]})
    assert family_of_config({"model_type": "gemma3"}) is GEMMA3
    assert family_of_config({"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"]}) is None
    assert family_of_config({"model_type": "qwen2_vl", "architectures": ["LlavaForConditionalGeneration"]}) is None
    names = {
        "Qwen/Qwen2.5-VL-7B-Instruct": QWEN2_5_VL,
        "Qwen/Qwen3-VL-8B-Instruct": QWEN3_VL,
        "google/medgemma-1.5-4b-it": GEMMA3,
        "Qwen/Qwen2-VL-7B-Instruct": QWEN2_VL,
        "clinkd-7b": QWEN2_VL,
        "my-finetune": QWEN2_VL,
    }
    assert {name: family_of_served_model(name) for name in names} == names
    assert family_of_served_model("my-finetune", "qwen3_vl") is QWEN3_VL


def test_server_family_from_the_served_name_writes_and_reads_its_dialect() -> None:
    answer = '[{"bbox_2d": [56, 42, 112, 84], "label": "heart"}]'
    behaviour = StubBehaviour(answer=lambda body: answer, models=("Qwen/Qwen2.5-VL-7B-Instruct",))
    with OpenAIStub(behaviour) as stub:
        backend = open_server(ServerSettings(stub.url, **PIXELS))
        request = AskRequest(_image(90, 120), "", Task.ROC, box=(120, 90, 240, 180), width=240, height=180)
        result = backend.ask(request)
        question = stub.behaviour.requests[0]["messages"][1]["content"][1]["text"]
    assert backend.info.family == "qwen2_5_vl"
    assert '{"bbox_2d": [56, 42, 112, 84]}' in question  # smart_resize of 120 x 90 with the server's budget
    (box,) = result.boxes
    assert box.pixels == pytest.approx((120, 90, 240, 180)) and result.frame == (112, 84)


def test_server_family_setting_overrides_the_name() -> None:
    answer = 'Final Answer: [{"box_2d": [0, 500, 500, 1000], "label": "lung"}]'
    with OpenAIStub(StubBehaviour(answer=lambda body: answer, models=("my-model",))) as stub:
        backend = open_server(ServerSettings(stub.url, family="gemma3"))
        result = backend.ask(AskRequest(_image(), "lung", Task.VG, width=200, height=100))
    assert backend.info.family == "gemma3" and result.image_tokens == 256
    (box,) = result.boxes
    assert box.pixels == pytest.approx((100, 0, 200, 50)) and box.phrase == "lung"
    with pytest.raises(ValueError, match="server family"):
        ServerSettings("http://x:1", family="llava")


# ---------------------------------------------------------------- evaluation reads every dialect


def test_grounding_score_reads_json_boxes_on_the_original_grid() -> None:
    reference = "<ref>heart</ref><box>(500,500),(1000,1000)</box>"
    qwen25 = '[{"bbox_2d": [56, 42, 112, 84], "label": "heart"}]'
    medgemma = 'Final Answer: [{"box_2d": [500, 500, 1000, 1000], "label": "heart"}]'
    wrong = '[{"bbox_2d": [0, 0, 20, 20]}]'
    assert score_grounding(reference, qwen25, "bbox_2d", (112, 84)).hits == 1
    assert score_grounding(reference, medgemma, "box_2d").tolerant_hits == 1
    assert score_grounding(reference, wrong, "bbox_2d", (112, 84)).hits == 0
    assert score_grounding(reference, qwen25).hits == 0  # read as Qwen2-VL, JSON holds no box


def test_records_say_their_dialect_or_it_is_read_from_the_markup() -> None:
    assert record_dialect({"response": "x", "dialect": "bbox_2d", "frame": [112, 84]}) == ("bbox_2d", (112.0, 84.0))
    assert record_dialect({"response": '[{"box_2d": [1, 2, 3, 4]}]'}) == ("box_2d", GRID_FRAME)
    assert record_dialect({"response": "<|box_start|>(1,2),(3,4)<|box_end|>"}) == ("qwen2vl", GRID_FRAME)
    assert record_dialect({"response": "no box"}, "bbox_2d") == ("bbox_2d", GRID_FRAME)
