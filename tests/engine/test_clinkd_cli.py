"""`ask` sub-command: the model sees the displayed frame; answers and errors reach the terminal."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

import engine.clinkd
from cli import clinkd as cli
from cli.options import MODEL_ENV
from engine.clinkd import GenerationOutOfMemory
from engine.imaging import Window, open_image, render_rgb
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_checkpoint(tmp_path_factory))


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("img") / "chest.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(path)
    return str(path)


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ask", *argv])
    return args.func(args)


def tiny(model_dir: str) -> list[str]:
    return [
        "--model",
        model_dir,
        "--device",
        "cpu",
        "--min-pixels",
        str(TINY_MIN_PIXELS),
        "--max-pixels",
        str(TINY_MAX_PIXELS),
    ]


def test_ask_prints_the_answer(png, model_dir, capsys) -> None:
    assert run(png, "left lung", "--task", "vg", "--max-new-tokens", "6", *tiny(model_dir)) == 0
    out = capsys.readouterr().out
    assert out.strip() != ""


def test_json_carries_the_whole_result(png, model_dir, capsys) -> None:
    code = run(png, "--task", "roc", "--box", "10,20,60,45", "--max-new-tokens", "5", "--json", *tiny(model_dir))
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["task"] == "roc"
    assert data["question"] == "What anatomical structure is present at the <|box_start|>(83,222),(500,500)<|box_end|>?"
    assert data["model"]["model_id"] == model_dir.rsplit("/", 1)[-1]
    assert data["settings"]["max_new_tokens"] == 5 and data["new_tokens"] <= 5
    assert {"raw_text", "text", "boxes", "time_to_first_token_s", "tokens_per_second", "prompt_tokens"} <= set(data)


def test_stream_prints_tokens_then_no_repeat(png, model_dir, capsys) -> None:
    assert run(png, "what is this?", "--stream", "--max-new-tokens", "30", *tiny(model_dir)) == 0
    streamed = capsys.readouterr().out
    assert run(png, "what is this?", "--json", "--max-new-tokens", "30", *tiny(model_dir)) == 0
    raw = json.loads(capsys.readouterr().out)["raw_text"]
    assert streamed == raw + "\n"


def test_the_model_sees_the_frame_in_the_chosen_window(model_dir, monkeypatch, capsys) -> None:
    seen = []

    def fake_ask(clinkd, request, settings, on_text=None):
        seen.append(request)
        raise GenerationOutOfMemory("out of memory at max_pixels=1; lower max_pixels")

    monkeypatch.setattr(engine.clinkd, "ask", fake_ask)
    ct = get_testdata_file("CT_small.dcm")
    code = run(ct, "", "--task", "rc", "--box", "0,0,64,64", "--window=40,400", *tiny(model_dir))
    assert code == 1 and "max_pixels" in capsys.readouterr().err
    (request,) = seen
    frame = open_image(ct).frame(0)
    assert np.array_equal(request.image, render_rgb(frame, Window(40, 400)))
    assert not np.array_equal(request.image, render_rgb(frame, Window(40, 4000)))
    assert request.size == (128, 128) and request.box == (0.0, 0.0, 64.0, 64.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "roc"], "needs a box"),
        (["--box", "1,2,3"], "X1,Y1,X2,Y2"),
        (["--frame", "2"], "out of range"),
        (["--window", "40,-5"], "positive"),
        (["--quantization", "8bit"], "8bit loading is not available"),
    ],
)
def test_bad_options_exit_2(png, model_dir, capsys, argv: list[str], message: str) -> None:
    assert run(png, "x", *argv, *tiny(model_dir)) == 2
    assert message in capsys.readouterr().err


def test_wrong_model_folder_exits_2_and_says_what_is_missing(png, tmp_path, capsys) -> None:
    assert run(png, "x", "--model", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "config.json" in err and "Traceback" not in err


def test_no_model_folder_exits_2(png, monkeypatch, capsys) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ask", png, "x"])
    assert args.func(args) == 2
    assert MODEL_ENV in capsys.readouterr().err


def test_bad_image_exits_2(tmp_path, model_dir, capsys) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert run(str(broken), "x", *tiny(model_dir)) == 2
    assert "broken.png" in capsys.readouterr().err


def test_history_file_sends_earlier_turns(png, model_dir, tmp_path, capsys) -> None:
    from tests.engine.openai_stub import OpenAIStub, StubBehaviour

    conversation = {
        "format": "clinlens-conversation",
        "version": 1,
        "turns": [
            {
                "question": "heart",
                "task": "vg",
                "status": "done",
                "prompt": "Where is the heart located in the image?",
                "raw_answer": "Here " * 100,
            },
            {
                "question": "left lung",
                "task": "vg",
                "status": "done",
                "prompt": "Where is the left lung located in the image?",
                "raw_answer": "It is at <|box_start|>(1,2),(300,400)<|box_end|>.",
            },
        ],
    }
    history = tmp_path / "conversation.json"
    history.write_text(json.dumps(conversation))
    with OpenAIStub(StubBehaviour(answer=lambda body: "Small.")) as stub:
        assert run(png, "And its size?", "--server", stub.url, "--history", str(history), "--json") == 0
        data = json.loads(capsys.readouterr().out)
        assert (
            run(png, "And its size?", "--server", stub.url, "--history", str(history), "--history-tokens", "200") == 0
        )
        cut_err = capsys.readouterr().err
        full, cut = stub.behaviour.requests
    assert data["history_turns"] == 2 and data["history_dropped"] == 0
    assert [m["role"] for m in full["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert full["messages"][4]["content"] == "It is at <|box_start|>(1,2),(300,400)<|box_end|>."
    # the long, oldest turn is left out; the image moves to the kept turn
    assert [m["role"] for m in cut["messages"]] == ["system", "user", "assistant", "user"]
    assert cut["messages"][1]["content"][0]["type"] == "image_url"
    assert cut["messages"][1]["content"][1]["text"] == "Where is the left lung located in the image?"
    assert "the 1 oldest turn(s) did not fit --history-tokens 200" in cut_err


def test_bad_history_file_is_one_sentence(png, model_dir, tmp_path, capsys) -> None:
    bad = tmp_path / "nope.json"
    bad.write_text("{")
    assert run(png, "Q?", "--history", str(bad), *tiny(model_dir)) == 2
    assert "nope.json: not valid JSON (line 1" in capsys.readouterr().err
