"""Follow-up questions: earlier turns as chat messages, checked token by token against the chat
template of the tiny Qwen2-VL checkpoint, the budget that drops the oldest turns, the server
backend sending the same messages, and conversation files as history."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.clinkd import (
    SYSTEM_PROMPT,
    AskRequest,
    GenerationSettings,
    HistoryFileError,
    LoadSettings,
    PriorTurn,
    ServerSettings,
    Task,
    ask,
    ask_batch,
    chat_messages,
    fit_history,
    load_model,
    open_server,
    read_history_file,
)
from engine.clinkd.conversation import TURN_OVERHEAD_TOKENS, estimate_tokens
from tests.engine.openai_stub import OpenAIStub, StubBehaviour
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint

FIRST = PriorTurn(
    "Where is the left lung located in the image?",
    "The left lung is located at <|box_start|>(100,200),(500,600)<|box_end|>.",
)
SECOND = PriorTurn("What is located at <|box_start|>(100,200),(500,600)<|box_end|>?", "Pneumothorax.")


@pytest.fixture(scope="module")
def clinkd(tmp_path_factory):
    folder = tiny_checkpoint(tmp_path_factory)
    return load_model(LoadSettings(str(folder), min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))


def _image(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def captured(clinkd, monkeypatch):
    """Record the input ids generate() receives and answer with one end token."""
    seen: list[torch.Tensor] = []

    def generate(input_ids, streamer, stopping_criteria, attention_mask=None, **_):
        seen.append(input_ids[attention_mask.bool()] if attention_mask is not None else input_ids[0])
        streamer.put(input_ids)
        end = torch.full((input_ids.shape[0], 1), clinkd.eos_token_ids[0])
        streamer.end()
        return torch.cat([input_ids, end], dim=1)

    monkeypatch.setattr(clinkd.model, "generate", generate)
    return seen


def _expected_ids(clinkd, image: np.ndarray, turns: list[tuple[str, str]], question: str) -> list[int]:
    """The prompt written out by hand in Qwen2-VL's chat format, image pads expanded by the processor."""
    text = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
    for i, (q, a) in enumerate(turns):
        vision = "<|vision_start|><|image_pad|><|vision_end|>" if i == 0 else ""
        text += f"<|im_start|>user\n{vision}{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"
    vision = "" if turns else "<|vision_start|><|image_pad|><|vision_end|>"
    text += f"<|im_start|>user\n{vision}{question}<|im_end|>\n<|im_start|>assistant\n"
    inputs = clinkd.processor(text=[text], images=[Image.fromarray(image)], return_tensors="pt")
    return inputs["input_ids"][0].tolist()


def test_chat_messages_put_the_image_once_then_the_turns() -> None:
    messages = chat_messages("And its size?", [FIRST, SECOND])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == [{"type": "image"}, {"type": "text", "text": FIRST.question}]
    assert messages[2]["content"] == FIRST.answer and messages[4]["content"] == SECOND.answer
    assert messages[3]["content"] == [{"type": "text", "text": SECOND.question}]
    assert messages[5]["content"] == [{"type": "text", "text": "And its size?"}]
    assert chat_messages("Q")[1]["content"][0] == {"type": "image"}


def test_follow_up_prompt_matches_the_chat_template_token_by_token(clinkd, captured) -> None:
    image = _image()
    result = ask(clinkd, AskRequest(image, "What is located here?", Task.FREE, history=(FIRST, SECOND)))
    expected = _expected_ids(
        clinkd, image, [(FIRST.question, FIRST.answer), (SECOND.question, SECOND.answer)], "What is located here?"
    )
    (sent,) = captured
    assert sent.tolist() == expected
    # the processor's own template renders the same messages to the same tokens
    text = clinkd.processor.apply_chat_template(
        chat_messages("What is located here?", [FIRST, SECOND]), add_generation_prompt=True, tokenize=False
    )
    templated = clinkd.processor(text=[text], images=[Image.fromarray(image)], return_tensors="pt")
    assert templated["input_ids"][0].tolist() == expected
    image_pad = clinkd.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert expected.count(clinkd.processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")) == 1
    assert result.image_tokens == expected.count(image_pad) > 0
    assert result.prompt_tokens == len(expected)
    assert (result.history_turns, result.history_dropped) == (2, 0)


def test_without_history_the_prompt_is_the_single_turn_one(clinkd, captured) -> None:
    image = _image(seed=3)
    result = ask(clinkd, AskRequest(image, "left lung", Task.VG))
    assert captured[0].tolist() == _expected_ids(clinkd, image, [], "Where is the left lung located in the image?")
    assert (result.history_turns, result.history_dropped) == (0, 0)


def test_budget_drops_the_oldest_turns_and_says_so(clinkd, captured) -> None:
    image = _image()
    count = lambda text: len(clinkd.processor.tokenizer(text, add_special_tokens=False).input_ids)  # noqa: E731
    second_cost = count(SECOND.question) + count(SECOND.answer) + TURN_OVERHEAD_TOKENS
    settings = GenerationSettings(history_tokens=second_cost)  # room for the newest turn only
    result = ask(clinkd, AskRequest(image, "And now?", history=(FIRST, SECOND)), settings)
    assert (result.history_turns, result.history_dropped) == (1, 1)
    # the image moves to the first kept turn
    assert captured[0].tolist() == _expected_ids(clinkd, image, [(SECOND.question, SECOND.answer)], "And now?")
    none = ask(clinkd, AskRequest(image, "And now?", history=(FIRST, SECOND)), GenerationSettings(history_tokens=0))
    assert (none.history_turns, none.history_dropped) == (0, 2)


def test_batches_carry_each_request_s_own_history(clinkd, captured) -> None:
    a, b = _image(seed=1), _image(seed=2)
    results = ask_batch(clinkd, [AskRequest(a, "Q one?", history=(FIRST,)), AskRequest(b, "Q two?")])
    assert [r.history_turns for r in results] == [1, 0]
    (batch,) = captured  # one left-padded batch: rows are compared without their padding
    first = _expected_ids(clinkd, a, [(FIRST.question, FIRST.answer)], "Q one?")
    assert batch.tolist() == first + _expected_ids(clinkd, b, [], "Q two?")


def test_fit_history_keeps_whole_turns_newest_first() -> None:
    turns = [PriorTurn("q" * 10, "a" * 10), PriorTurn("q" * 50, "a" * 50), PriorTurn("q", "a")]
    cost = [20 + TURN_OVERHEAD_TOKENS, 100 + TURN_OVERHEAD_TOKENS, 2 + TURN_OVERHEAD_TOKENS]
    assert fit_history(turns, sum(cost)).turns == tuple(turns)
    fitted = fit_history(turns, cost[2] + cost[0])  # the middle turn does not fit: nothing older is kept
    assert fitted.turns == (turns[2],) and fitted.dropped == 2
    assert estimate_tokens("é") == 2
    with pytest.raises(ValueError, match="history token budget must be >= 0"):
        fit_history(turns, -1)


def test_server_sends_the_same_messages() -> None:
    image = _image()
    with OpenAIStub(StubBehaviour(answer=lambda body: "Its size is small.")) as stub:
        backend = open_server(ServerSettings(stub.url))
        result = backend.ask(AskRequest(image, "And its size?", history=(FIRST, SECOND)))
        (body,) = stub.behaviour.requests
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"][0]["type"] == "image_url"
    assert messages[1]["content"][1] == {"type": "text", "text": FIRST.question}
    assert messages[2]["content"] == FIRST.answer and messages[4]["content"] == SECOND.answer
    assert (
        sum(
            1
            for m in messages
            for c in (m["content"] if isinstance(m["content"], list) else [])
            if c["type"] == "image_url"
        )
        == 1
    )
    local_shape = chat_messages("And its size?", [FIRST, SECOND])
    assert [m["role"] for m in local_shape] == [m["role"] for m in messages]
    assert (result.history_turns, result.history_dropped) == (2, 0)


def test_history_file_from_the_window_export(tmp_path) -> None:
    data = {
        "format": "clinlens-conversation",
        "version": 1,
        "images": ["a.png"],
        "turns": [
            {
                "question": "left lung",
                "task": "vg",
                "box_prompt": None,
                "status": "done",
                "prompt": FIRST.question,
                "raw_answer": FIRST.answer,
                "answer": "The left lung is located at.",
            },
            {
                "question": "",
                "task": "roc",
                "box_prompt": [10, 20, 50, 60],
                "status": "done",
                "raw_answer": "Pneumothorax.",
                "answer": "Pneumothorax.",
            },
            {"question": "x", "task": "free", "status": "cancelled", "answer": "Par"},
        ],
    }
    path = tmp_path / "conversation.json"
    path.write_text(json.dumps(data))
    history = read_history_file(path, 100, 100)
    assert history == (
        FIRST,
        PriorTurn(
            "What anatomical structure is present at the <|box_start|>(100,200),(500,600)<|box_end|>?", "Pneumothorax."
        ),
    )
    path.write_text(json.dumps({"turns": []}))
    with pytest.raises(HistoryFileError, match="not a ClinLens conversation"):
        read_history_file(path, 100, 100)


def test_a_turn_recording_its_dialect_is_rebuilt_in_it(tmp_path) -> None:
    """A turn without its prompt is rebuilt in the dialect its export records (MedGemma: y first);
    an older export records none and was Qwen2-VL's. An unknown dialect is one clear sentence."""
    turn = {"question": "", "task": "roc", "box_prompt": [10, 20, 50, 60], "status": "done", "raw_answer": "Rib."}
    data = {"format": "clinlens-conversation", "version": 1, "turns": [{**turn, "dialect": "box_2d"}, turn]}
    path = tmp_path / "conversation.json"
    path.write_text(json.dumps(data))
    medgemma, qwen2vl = read_history_file(path, 100, 100)
    assert medgemma.question == 'What anatomical structure is present at the {"box_2d": [200, 100, 600, 500]}?'
    assert qwen2vl.question.endswith("<|box_start|>(100,200),(500,600)<|box_end|>?")
    data["turns"][0]["dialect"] = "pixels"
    path.write_text(json.dumps(data))
    with pytest.raises(HistoryFileError, match="unknown box dialect 'pixels'"):
        read_history_file(path, 100, 100)
