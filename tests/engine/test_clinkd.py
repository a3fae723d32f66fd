"""Prompts and generation through the tiny Qwen2-VL: greedy, streaming, cancel, batches, OOM.

The tiny model's words are random: these tests assert structure and behaviour only. Where a test
needs a known answer (boxes, cancel mid-answer) it scripts the model's tokens explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import threading

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
    build_prompt,
    chat_messages,
    load_model,
)
from tests.engine.tiny_qwen import REAL_SAMPLING, TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint


@pytest.fixture(scope="module")
def clinkd(tmp_path_factory: pytest.TempPathFactory):
    folder = tiny_checkpoint(tmp_path_factory)
    return load_model(LoadSettings(str(folder), device="cpu", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))


def _image(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def scripted(clinkd, monkeypatch):
    """Make generate() emit a given answer token by token, through the real streamer and criteria."""

    def script(answer: str) -> None:
        tokenizer = clinkd.processor.tokenizer
        tokens = [*tokenizer(answer, add_special_tokens=False).input_ids, clinkd.eos_token_ids[0]]

        def generate(input_ids, streamer, stopping_criteria, **_):
            streamer.put(input_ids)
            out = input_ids
            for token in tokens:
                out = torch.cat([out, torch.tensor([[token]])], dim=1)
                streamer.put(torch.tensor([token]))
                if any(bool(c(out, None).all()) for c in stopping_criteria):
                    break
            streamer.end()
            return out

        monkeypatch.setattr(clinkd.model, "generate", generate)

    return script


# ------------------------------------------------------------------ prompts


def test_vg_prompt_follows_med_grit() -> None:
    prompt = build_prompt(Task.VG, "left lung")
    assert prompt.question == "Where is the left lung located in the image?" and prompt.phrase == "left lung"
    assert build_prompt(Task.VG, "The heart.").question == "Where is The heart located in the image?"
    kept = build_prompt(Task.VG, "Where is the first indication of pneumothorax located in the image?")
    assert kept.question.startswith("Where is the first") and kept.phrase is None


def test_box_prompts_use_the_model_box_format_on_the_original_size() -> None:
    roc = build_prompt(Task.ROC, box=(10, 10, 100, 100), width=200, height=100)
    assert roc.question == "What anatomical structure is present at the <|box_start|>(50,100),(500,1000)<|box_end|>?"
    rc = build_prompt(Task.RC, box=(0, 0, 50, 25), width=200, height=100)
    assert rc.question == "Can you describe the content within the <|box_start|>(0,0),(250,250)<|box_end|>?"


def test_mia_and_free_prompts() -> None:
    assert build_prompt(Task.MIA).question == "What can you interpret from the overall image?"
    assert build_prompt(Task.MIA, "Which modality is this?").question == "Which modality is this?"
    placed = build_prompt(Task.FREE, "Is {box} abnormal?", box=(0, 0, 10, 10), width=10, height=10)
    assert placed.question == "Is <|box_start|>(0,0),(1000,1000)<|box_end|> abnormal?"
    appended = build_prompt(Task.FREE, "What is located here?", box=(0, 0, 5, 5), width=10, height=10)
    assert appended.question == "What is located here? <|box_start|>(0,0),(500,500)<|box_end|>"
    legacy = build_prompt(Task.FREE, "What is at the <box>(1,2),(3,4)</box>?")
    assert legacy.question == "What is at the <|box_start|>(1,2),(3,4)<|box_end|>?"


@pytest.mark.parametrize(
    ("task", "text", "box", "match"),
    [
        (Task.ROC, "", None, "needs a box"),
        (Task.RC, "", None, "needs a box"),
        (Task.VG, "  ", None, "structure to find"),
        (Task.FREE, "", None, "needs text"),
        (Task.FREE, "Is {box} ok?", None, "placeholder"),
    ],
)
def test_prompt_errors(task: Task, text: str, box, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_prompt(task, text, box, 10, 10)


def test_box_without_image_size_is_refused() -> None:
    with pytest.raises(ValueError, match="width and height"):
        build_prompt(Task.ROC, box=(0, 0, 1, 1))


# ------------------------------------------------------------------ generation


def _bare_inputs(clinkd, question: str, image: np.ndarray):
    from PIL import Image

    text = clinkd.processor.apply_chat_template(chat_messages(question), add_generation_prompt=True, tokenize=False)
    return clinkd.processor(text=[text], images=[Image.fromarray(image)], return_tensors="pt")


def test_greedy_answer_equals_a_bare_transformers_generate(clinkd) -> None:
    image = _image()
    result = ask(clinkd, AskRequest(image, "left lung", Task.VG), GenerationSettings(max_new_tokens=16))
    inputs = _bare_inputs(clinkd, "Where is the left lung located in the image?", image)
    with torch.inference_mode():
        output = clinkd.model.generate(**inputs, max_new_tokens=16, do_sample=False, repetition_penalty=1.05)
    new = output[0, inputs["input_ids"].shape[1] :].tolist()
    end = next((i for i, t in enumerate(new) if t in clinkd.eos_token_ids), len(new))
    assert result.raw_text == clinkd.processor.tokenizer.decode(new[:end], skip_special_tokens=False)
    assert result.new_tokens == end <= 16
    assert result.prompt_tokens == inputs["input_ids"].shape[1]
    assert result.image_tokens == int(inputs["image_grid_thw"][0].prod()) // 4 > 0
    assert result.settings.repetition_penalty == 1.05  # the checkpoint's value, recorded
    assert not result.settings.do_sample and result.question == "Where is the left lung located in the image?"


def test_result_is_frozen_plain_data_with_timings(clinkd) -> None:
    result = ask(clinkd, AskRequest(_image(), "", Task.MIA), GenerationSettings(max_new_tokens=8))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.text = "x"  # type: ignore[misc]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["task"] == "mia" and data["model"]["model_id"] == result.model.model_id
    assert data["settings"]["max_new_tokens"] == 8
    assert 0 < result.time_to_first_token_s <= result.total_s
    assert result.tokens_per_second is None or result.tokens_per_second > 0
    assert result.peak_gpu_memory_bytes is None  # CPU
    assert result.generated_tokens == result.new_tokens and not result.cancelled


def test_answers_are_greedy_even_when_the_checkpoint_would_sample(tmp_path_factory) -> None:
    folder = tiny_checkpoint(tmp_path_factory, "tiny-qwen2vl-sampling", sampling=REAL_SAMPLING)
    clinkd = load_model(LoadSettings(str(folder), device="cpu", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
    assert clinkd.model.generation_config.do_sample and clinkd.model.generation_config.top_k == 50
    image = _image(seed=3)
    inputs = _bare_inputs(clinkd, "What is this?", image)

    def bare(seed: int, **flags) -> list[int]:
        torch.manual_seed(seed)
        with torch.inference_mode():
            output = clinkd.model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, **flags)
        return output[0, inputs["input_ids"].shape[1] :].tolist()

    sampled = {tuple(bare(seed)) for seed in range(4)}
    assert len(sampled) > 1  # left to the checkpoint's flags, generate() really samples
    greedy = bare(0, do_sample=False)

    request, settings = AskRequest(image, "What is this?"), GenerationSettings(max_new_tokens=12)
    answers = []
    for seed in range(3):
        torch.manual_seed(seed)
        answers.append(ask(clinkd, request, settings))
    assert len({a.raw_text for a in answers}) == 1 and not answers[0].settings.do_sample
    end = next((i for i, t in enumerate(greedy) if t in clinkd.eos_token_ids), len(greedy))
    assert answers[0].raw_text == clinkd.processor.tokenizer.decode(greedy[:end], skip_special_tokens=False)


def test_streaming_delivers_the_answer_in_the_callers_thread(clinkd) -> None:
    chunks: list[str] = []
    seen: list[tuple[int, bool]] = []

    def on_text(chunk: str) -> None:
        chunks.append(chunk)
        seen.append((threading.get_ident(), torch.is_inference_mode_enabled()))

    request = AskRequest(_image(), "left lung", Task.VG)
    result = ask(clinkd, request, GenerationSettings(max_new_tokens=40), on_text=on_text)
    assert "".join(chunks) == result.raw_text and len(chunks) > 1
    assert set(seen) == {(threading.get_ident(), True)}
    assert not torch.is_inference_mode_enabled()


def test_works_from_a_worker_thread(clinkd) -> None:
    results = []
    worker = threading.Thread(
        target=lambda: results.append(ask(clinkd, AskRequest(_image(), "x"), GenerationSettings(max_new_tokens=4)))
    )
    worker.start()
    worker.join()
    assert len(results) == 1 and results[0].new_tokens <= 4


def test_cancel_before_start_stops_after_one_token(clinkd) -> None:
    cancel = threading.Event()
    cancel.set()
    result = ask(clinkd, AskRequest(_image(), "x"), GenerationSettings(max_new_tokens=50), cancel=cancel)
    assert result.cancelled and result.new_tokens <= 1 and result.boxes == ()


def test_cancel_mid_answer_stops_and_drops_boxes(clinkd, scripted) -> None:
    scripted("The <|box_start|>(100,100),(500,500)<|box_end|> lung is located at the left and more words follow")
    cancel = threading.Event()
    chunks: list[str] = []

    def on_text(chunk: str) -> None:
        chunks.append(chunk)
        if "lung" in "".join(chunks):
            cancel.set()

    result = ask(clinkd, AskRequest(_image(), "left lung", Task.VG), on_text=on_text, cancel=cancel)
    assert result.cancelled and result.boxes == ()
    assert "<|box_start|>" in result.raw_text and "follow" not in result.raw_text
    assert "<|box_start|>" not in result.text


def test_boxes_come_back_in_original_pixels_with_phrases(clinkd, scripted) -> None:
    scripted(
        "It is at <|box_start|>(100,200),(300,400)<|box_end|> near the "
        "<|object_ref_start|>heart<|object_ref_end|><|box_start|>(500,500),(600,600)<|box_end|>."
    )
    # rendered at half resolution: the boxes still refer to the 400 x 200 original
    request = AskRequest(_image(100, 200), "left lung", Task.VG, width=400, height=200)
    result = ask(clinkd, request)
    assert [b.phrase for b in result.boxes] == ["left lung", "heart"]
    assert result.boxes[0].pixels == (40.0, 40.0, 120.0, 80.0)
    assert result.text == "It is at near the heart."
    assert not result.cancelled and result.issues == ()


def test_out_of_memory_frees_and_explains(clinkd, monkeypatch) -> None:
    def explode(**_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(clinkd.model, "generate", explode)
    with pytest.raises(GenerationOutOfMemory) as err:
        ask(clinkd, AskRequest(_image(), "x"))
    assert f"max_pixels={TINY_MAX_PIXELS}" in str(err.value) and str(TINY_MAX_PIXELS // 2) in str(err.value)
    assert err.value.__context__ is None  # the traceback holding GPU tensors is gone
    monkeypatch.undo()
    assert ask(clinkd, AskRequest(_image(), "x"), GenerationSettings(max_new_tokens=2)).new_tokens <= 2


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((8, 8, 4), dtype=np.uint8), "RGB"),
    ],
)
def test_bad_images_are_refused(clinkd, image: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ask(clinkd, AskRequest(image, "x"))


def test_grey_frames_are_accepted(clinkd) -> None:
    grey = _image()[..., 0]
    rgb = np.stack([grey] * 3, axis=-1)
    settings = GenerationSettings(max_new_tokens=6)
    assert ask(clinkd, AskRequest(grey, "x"), settings).raw_text == ask(clinkd, AskRequest(rgb, "x"), settings).raw_text


def test_batch_equals_single_requests(clinkd) -> None:
    requests = [
        AskRequest(_image(64, 96, 1), "left lung", Task.VG),
        AskRequest(_image(150, 60, 2), "", Task.ROC, box=(5, 5, 40, 90)),
        AskRequest(_image(56, 56, 3), "What can you interpret from this long question about the image?"),
    ]
    settings = GenerationSettings(max_new_tokens=10)
    batch = ask_batch(clinkd, requests, settings)
    singles = [ask(clinkd, r, settings) for r in requests]
    assert [b.raw_text for b in batch] == [s.raw_text for s in singles]
    assert [b.prompt_tokens for b in batch] == [s.prompt_tokens for s in singles]
    assert len({b.prompt_tokens for b in batch}) == 3  # the batch really was padded
    assert [b.task for b in batch] == [Task.VG, Task.ROC, Task.FREE]


def test_batch_edge_cases(clinkd) -> None:
    assert ask_batch(clinkd, []) == []
    with pytest.raises(ValueError, match="best-of"):
        ask_batch(clinkd, [AskRequest(_image(), "x")], GenerationSettings(best_of=2))
    cancel = threading.Event()
    cancel.set()
    results = ask_batch(clinkd, [AskRequest(_image(), "x")] * 2, GenerationSettings(max_new_tokens=20), cancel=cancel)
    assert all(r.cancelled and r.new_tokens <= 1 for r in results)


def test_settings_are_validated() -> None:
    for bad in ({"max_new_tokens": 0}, {"best_of": 0}, {"temperature": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match="must be"):
            GenerationSettings(**bad)
    assert GenerationSettings().max_new_tokens == 80 and not GenerationSettings().samples


def test_step_callback_counts_every_decoding_step(clinkd):
    steps: list[int] = []
    result = ask(clinkd, AskRequest(_image(), "Describe."), GenerationSettings(max_new_tokens=6), on_step=steps.append)
    assert steps == list(range(1, len(steps) + 1))
    assert len(steps) >= result.new_tokens >= 1
