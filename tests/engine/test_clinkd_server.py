"""The server backend against a stub OpenAI chat server: the wire format, streaming, cancel, errors.

The stub's answers are fixed text standing for the server's answer: these tests check what we send
(the displayed pixels, the question in the model's box format, decoding settings), how we read
the answer back (the same box codec as local answers, token counts), and what the user is told
when the server misbehaves.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from cli import clinkd as cli
from engine.clinkd import (
    SYSTEM_PROMPT,
    AskRequest,
    GenerationSettings,
    ServerError,
    ServerSettings,
    Task,
    open_server,
)
from engine.clinkd.families import QWEN2_VL
from tests.engine.openai_stub import OpenAIStub, StubBehaviour

BOXED = "The left lung is located at <|box_start|>(100,200),(500,600)<|box_end|>."


def _image(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _decoded_image(body: dict) -> np.ndarray:
    content = body["messages"][1]["content"]
    url = content[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_streamed_answer_reaches_the_callback_and_parses_like_a_local_one() -> None:
    image = _image()
    with OpenAIStub(StubBehaviour(answer=lambda body: BOXED + "<|im_end|>")) as stub:
        backend = open_server(ServerSettings(stub.url))
        chunks: list[str] = []
        result = backend.ask(AskRequest(image, "left lung", Task.VG, width=1200, height=900), on_text=chunks.append)
        (body,) = stub.behaviour.requests
    assert backend.info.model_id == "clinkd-7b"
    assert len(chunks) > 5 and "".join(chunks) == BOXED + "<|im_end|>"
    assert result.raw_text == BOXED and result.text == "The left lung is located at."
    (box,) = result.boxes
    assert box.grid == (100, 200, 500, 600) and box.phrase == "left lung"
    assert box.pixels == pytest.approx((120.0, 180.0, 600.0, 540.0))  # pixels of the 1200 x 900 original
    assert result.prompt_tokens == 42 and result.new_tokens == len(BOXED.split()) + 0 * len(chunks)
    assert result.image_tokens == QWEN2_VL.image_tokens(120, 90, 512 * 512, 1024 * 1024) > 0
    assert result.time_to_first_token_s is not None and result.total_s >= result.time_to_first_token_s
    assert not result.cancelled and result.model.path == stub.url + "/v1"
    # what went over the wire
    assert body["model"] == "clinkd-7b" and body["stream"] is True and body["stream_options"]["include_usage"]
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    content = body["messages"][1]["content"]
    assert [c["type"] for c in content] == ["image_url", "text"]  # image first, as ClinKD was trained
    assert content[1]["text"] == "Where is the left lung located in the image?"
    assert np.array_equal(_decoded_image(body), image)  # lossless: the server sees the displayed pixels
    assert body["temperature"] == 0.0 and body["n"] == 1 and body["max_tokens"] == 80
    assert body["skip_special_tokens"] is False and "top_k" not in body


def test_box_questions_carry_the_box_on_the_grid_of_the_original_image() -> None:
    with OpenAIStub(StubBehaviour(answer=lambda body: "Pneumothorax.")) as stub:
        backend = open_server(ServerSettings(stub.url))
        result = backend.ask(AskRequest(_image(), task=Task.ROC, box=(10, 10, 100, 100), width=200, height=100))
        (body,) = stub.behaviour.requests
    question = body["messages"][1]["content"][1]["text"]
    assert question == "What anatomical structure is present at the <|box_start|>(50,100),(500,1000)<|box_end|>?"
    assert body["stream"] is False and "stream_options" not in body
    assert result.text == "Pneumothorax." and result.boxes == () and result.tokens_per_second is None


def test_without_usage_the_streamed_deltas_count_the_tokens() -> None:
    with OpenAIStub(StubBehaviour(answer=lambda body: "abcdefghij", usage=False, chunk_size=2)) as stub:
        result = open_server(ServerSettings(stub.url)).ask(AskRequest(_image(), "x"), on_text=lambda s: None)
    assert result.new_tokens == 5 and result.prompt_tokens == 0


def test_best_of_asks_for_n_samples_and_keeps_the_consensus_answer() -> None:
    answers = iter(["It is at (10,10),(50,50).", "It is at (10,10),(50,50).", "Nothing here."])

    def embed(texts):
        vectors = np.array([[1.0, 0.0] if "It is" in t else [0.0, 1.0] for t in texts])
        return vectors

    with OpenAIStub(StubBehaviour(answer=lambda body: next(answers))) as stub:
        backend = open_server(ServerSettings(stub.url), embed=embed)
        settings = GenerationSettings(best_of=3, temperature=0.9)
        result = backend.ask(AskRequest(_image(), "the liver", Task.VG), settings, on_text=lambda s: None)
        (body,) = stub.behaviour.requests
    assert body["n"] == 3 and body["temperature"] == 0.9 and body["top_k"] == -1 and body["stream"] is False
    assert len(result.candidates) == 3
    assert result.text == "It is at." and result.boxes[0].grid == (10, 10, 50, 50)
    assert [c.penalty for c in result.candidates] == [0.0, 0.0, 0.5]  # no box on a grounding task


def test_batch_keeps_the_order_of_the_requests() -> None:
    def echo(body: dict) -> str:
        return "answer to " + body["messages"][1]["content"][1]["text"]

    questions = [f"question {i}?" for i in range(7)]
    with OpenAIStub(StubBehaviour(answer=echo)) as stub:
        backend = open_server(ServerSettings(stub.url, concurrency=3))
        results = backend.ask_batch([AskRequest(_image(seed=i), q) for i, q in enumerate(questions)])
        assert len(stub.behaviour.requests) == 7
    assert [r.text for r in results] == [f"answer to {q}" for q in questions]
    with pytest.raises(ValueError, match="best-of"):
        backend.ask_batch([AskRequest(_image(), "x")], GenerationSettings(best_of=2))


def test_cancel_closes_a_stalled_stream_promptly() -> None:
    stall = threading.Event()
    cancel = threading.Event()
    with OpenAIStub(StubBehaviour(answer=lambda body: BOXED, stall=stall)) as stub:
        backend = open_server(ServerSettings(stub.url))
        chunks: list[str] = []

        def first_chunk_then_cancel(text: str) -> None:
            chunks.append(text)
            cancel.set()  # the user presses Cancel while the server is still generating

        started = time.perf_counter()
        result = backend.ask(AskRequest(_image(), "left lung", Task.VG), on_text=first_chunk_then_cancel, cancel=cancel)
        elapsed = time.perf_counter() - started
    assert result.cancelled and result.boxes == () and result.raw_text == chunks[0] == BOXED[:3]
    assert elapsed < 5  # the stall lasts 10 s unless the connection is closed


def test_cancel_interrupts_a_request_waiting_for_its_first_token() -> None:
    stall = threading.Event()
    cancel = threading.Event()
    with OpenAIStub(StubBehaviour(answer=lambda body: BOXED, stall=stall, chunk_size=len(BOXED))) as stub:
        backend = open_server(ServerSettings(stub.url))
        timer = threading.Timer(0.2, cancel.set)
        timer.start()
        started = time.perf_counter()
        # non-streaming: nothing comes back until the (stalled) answer is complete
        result = backend.ask(AskRequest(_image(), "x"), cancel=cancel)
        timer.join()
    assert result.cancelled and time.perf_counter() - started < 5


def test_a_cancel_set_before_asking_sends_nothing() -> None:
    cancel = threading.Event()
    cancel.set()
    with OpenAIStub() as stub:
        result = open_server(ServerSettings(stub.url)).ask(AskRequest(_image(), "x"), cancel=cancel)
        assert stub.behaviour.requests == []
    assert result.cancelled


def test_the_api_key_goes_in_the_authorization_header_only() -> None:
    with OpenAIStub() as stub:
        settings = ServerSettings(stub.url, api_key="sk-secret")
        open_server(settings).ask(AskRequest(_image(), "x"))
        assert stub.behaviour.authorizations == ["Bearer sk-secret"]
        assert "sk-secret" not in json.dumps(stub.behaviour.requests) and "sk-secret" not in repr(settings)


def test_the_model_is_chosen_when_the_server_serves_one() -> None:
    with OpenAIStub(StubBehaviour(models=("a", "b"))) as stub:
        with pytest.raises(ServerError, match=r"serves 2 models \(a, b\); choose one with --server-model"):
            open_server(ServerSettings(stub.url))
        with pytest.raises(ServerError, match=r"does not serve model 'c' \(it serves: a, b\)"):
            open_server(ServerSettings(stub.url, model="c"))
        assert open_server(ServerSettings(stub.url + "/v1/", model="b")).info.model_id == "b"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (
            StubBehaviour(status=500, error_message="CUDA error: device-side assert"),
            r"failed \(HTTP 500\): CUDA error: device-side assert",
        ),
        (StubBehaviour(status=401, error_message="bad key"), r"refused the request \(HTTP 401\): bad key.*api-key-env"),
        (StubBehaviour(malformed=True), r"not JSON: '<html>this is not json'"),
    ],
)
def test_server_failures_become_sentences(behaviour: StubBehaviour, message: str) -> None:
    with OpenAIStub(behaviour) as stub:
        backend = open_server(ServerSettings(stub.url))
        with pytest.raises(ServerError, match=message):
            backend.ask(AskRequest(_image(), "x"))


def test_a_model_that_disappears_is_named_with_what_is_served() -> None:
    with OpenAIStub() as stub:
        backend = open_server(ServerSettings(stub.url))
        stub.behaviour.models = ("other-model",)  # the server was restarted with another model
        with pytest.raises(ServerError, match=r"does not serve model 'clinkd-7b' \(it serves: other-model\)"):
            backend.ask(AskRequest(_image(), "x"))


def test_a_url_that_is_not_an_openai_server_says_so() -> None:
    with OpenAIStub() as stub:
        backend = open_server(ServerSettings(stub.url + "/api", model="clinkd-7b"))  # /models missing: tolerated
        with pytest.raises(ServerError, match=r"no OpenAI endpoint /api/v1/chat/completions \(HTTP 404"):
            backend.ask(AskRequest(_image(), "x"))


def test_connection_refused_and_bad_urls() -> None:
    with pytest.raises(ServerError, match=r"connection refused\. Is vLLM or SGLang running"):
        open_server(ServerSettings(f"http://127.0.0.1:{_free_port()}"))
    with pytest.raises(ValueError, match="http://host:8000"):
        ServerSettings("gpu-server:8000")


def test_a_silent_server_times_out_with_a_clear_message() -> None:
    stall = threading.Event()
    with OpenAIStub(StubBehaviour(answer=lambda body: BOXED, stall=stall)) as stub:
        backend = open_server(ServerSettings(stub.url, timeout_s=0.3))
        with pytest.raises(ServerError, match=r"did not answer within 0.3 s"):
            backend.ask(AskRequest(_image(), "x"), on_text=lambda s: None)


# ------------------------------------------------------------------ the ask command


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ask", *argv])
    return args.func(args)


@pytest.fixture
def png(tmp_path) -> str:
    path = tmp_path / "chest.png"
    Image.fromarray(_image()).save(path)
    return str(path)


def test_ask_command_answers_through_the_server(png, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STUB_KEY", "k1")
    with OpenAIStub(StubBehaviour(answer=lambda body: BOXED)) as stub:
        code = run(
            png,
            "left lung",
            "--task",
            "vg",
            "--server",
            stub.url,
            "--server-model",
            "clinkd-7b",
            "--api-key-env",
            "STUB_KEY",
            "--json",
        )
        assert stub.behaviour.authorizations == ["Bearer k1"]
        (body,) = stub.behaviour.requests
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["model_id"] == "clinkd-7b" and data["boxes"][0]["grid"] == [100, 200, 500, 600]
    assert np.array_equal(_decoded_image(body), _image())


def test_ask_command_streams_from_the_server(png, capsys) -> None:
    with OpenAIStub(StubBehaviour(answer=lambda body: BOXED)) as stub:
        assert run(png, "left lung", "--task", "vg", "--server", stub.url, "--stream") == 0
    out = capsys.readouterr().out
    assert out.startswith(BOXED + "\n") and "box 1: left lung 12.0,18.0,60.0,54.0 px" in out


def test_ask_command_server_errors(png, monkeypatch, capsys) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    assert run(png, "x", "--server", "http://127.0.0.1:9", "--api-key-env", "NO_SUCH_KEY_VAR") == 2
    assert "NO_SUCH_KEY_VAR" in capsys.readouterr().err
    assert run(png, "x", "--server", f"http://127.0.0.1:{_free_port()}") == 1
    err = capsys.readouterr().err
    assert "connection refused" in err and "Traceback" not in err
