"""`train`, `distill` and `reflect` sub-commands: progress on stderr, results on stdout, exit codes,
and the documented loop (reflect writes samples that distill / train read next to the original data)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cli import training
from tests.engine.test_training_data import make_medgrit
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint

PIXELS = ["--min-pixels", str(TINY_MIN_PIXELS), "--max-pixels", str(TINY_MAX_PIXELS)]
FAST = ["--batch-size", "2", "--grad-accum", "1", "--logging-steps", "1", "--warmup", "0", "--device", "cpu", *PIXELS]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="main.py")
    training.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_medgrit(tmp_path_factory.mktemp("cli-medgrit"), n=2)


def test_train_prints_progress_and_a_json_result(
    base: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(
        [
            "train",
            "--model",
            str(base),
            "--data",
            str(data),
            "--output",
            str(tmp_path / "out"),
            "--max-steps",
            "2",
            "--lr",
            "1e-3",
            "--json",
            *FAST,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "step 1/2" in captured.err and "step 2/2" in captured.err and "loss " in captured.err
    result = json.loads(captured.out)
    assert result["global_step"] == 2 and result["conversations"] == 2 and result["skipped_records"] == []
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_reflect_then_distill_on_the_corrections(
    base: Path,
    data: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reflected = tmp_path / "reflected.json"
    code = _run(
        [
            "reflect",
            "--model",
            str(base),
            "--data",
            str(data),
            "--output",
            str(reflected),
            "--candidates",
            "1",
            "--max-new-tokens",
            "4",
            "--max-samples",
            "1",
            "--similarity-threshold",
            "2",
            "--device",
            "cpu",
            *PIXELS,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "checked 3/3 questions, 3 flagged" in captured.err
    assert "wrote 3 samples (0 from candidates, 3 references)" in captured.out
    assert len(json.loads(reflected.read_text())) == 3

    teacher = tiny_checkpoint(tmp_path_factory, "tiny-training-teacher", seed=1)
    code = _run(
        [
            "distill",
            "--model",
            str(base),
            "--teacher",
            str(teacher),
            "--data",
            str(data),
            str(reflected),
            "--output",
            str(tmp_path / "kd"),
            "--max-steps",
            "1",
            "--curriculum",
            "weight",
            *FAST,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "teacher scoring batch 1/2" in captured.err and " kl " in captured.err
    assert "on 5 conversations" in captured.out and "model written to" in captured.out


def test_bad_input_exits_2_with_one_sentence(
    base: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    assert _run(["train", "--model", str(tmp_path / "missing"), "--data", str(data), "--output", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    assert _run(["train", "--model", str(base), "--data", str(tmp_path / "bad.json"), "--output", out]) == 2
    assert "JSON list" in capsys.readouterr().err
    assert (
        _run(
            ["train", "--model", str(base), "--data", str(data), "--output", out, "--method", "lora", "--train-vision"]
        )
        == 2
    )
    assert "vision tower" in capsys.readouterr().err
    assert (
        _run(
            [
                "distill",
                "--model",
                str(base),
                "--teacher",
                str(base),
                "--data",
                str(data),
                "--output",
                out,
                "--temperature",
                "0",
            ]
        )
        == 2
    )
    assert "temperature" in capsys.readouterr().err
    assert _run(["reflect", "--model", str(base), "--data", str(data), "--output", out, "--iou-threshold", "2"]) == 2
    assert "iou_threshold" in capsys.readouterr().err
