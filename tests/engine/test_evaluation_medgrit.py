"""Med-GRIT evaluation end to end on a small fixture written by the tests (images + JSON in tmp_path).

Through the stub server the answers are fixed text with boxes (the server's answer, not a model):
the metrics must come out exactly as hand-counted. Through the tiny local Qwen2-VL the answers are
random: those tests check the plumbing (batches, records, resume, reports), never the words.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli import evaluation as cli
from engine.clinkd import ServerSettings, Task, open_server
from engine.evaluation import (
    PREDICTIONS_FILE,
    DatasetError,
    clean_question,
    load_medgrit,
    modality_of,
    pending,
    run_medgrit,
    task_from_name,
)
from engine.files import read_jsonl
from tests.engine.openai_stub import OpenAIStub, StubBehaviour
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint

IMG = "Picture 1: <img>/data/SAMed2D/images/{id}.png</img>\n"

# (id, question after the <img> tag, reference, what the stub server answers)
VG_ITEMS = [
    (
        "ct_00--AbdomenCT1K--Case_00011--x_0040",
        "Where is the liver located in the image?",
        "The liver is located at <box>(100,100),(400,400)</box>.",
        "The liver is located at <|box_start|>(100,100),(400,400)<|box_end|>.",
    ),  # hit
    (
        "ct_00--AbdomenCT1K--Case_00011--x_0041",
        "Where is the spleen located in the image?",
        "The spleen is located at <box>(600,100),(800,300)</box>.",
        "The spleen is located at <|box_start|>(100,600),(300,800)<|box_end|>.",
    ),  # miss
    (
        "mr_00--BraTS--Case_001--z_0070",
        "Where is the tumor located in the image?",
        "The tumor is located at <box>(200,200),(700,700)</box>.",
        "The tumor is located at <|box_start|>(200, 200), (700, 700)<|box_end|>.",
    ),  # spaces: papers miss, tolerant hit
    (
        "x_ray--Montgomery--MCUCXR_0001",
        "Where is the left lung located in the image?",
        "The left lung is located at <box>(100,200),(450,800)</box>.",
        "The left lung is located at <|box_start|>(110,200),(450,800)<|box_end|>.",
    ),  # hit (IoU 0.97)
    (
        "x_ray--Montgomery--MCUCXR_0002",
        "Where is the heart located in the image?",
        "The heart is located at <box>(400,400),(600,700)</box>.",
        "I cannot find it.",
    ),  # miss
    (
        "endoscopy_01--Kvasir--polyp_12",
        "Where is the polyp located in the image?",
        "The polyp is located at <box>(300,300),(500,500)</box>.",
        "The polyp is located at <|box_start|>(300,300),(500,500)<|box_end|>.",
    ),  # hit
]


def write_fixture(folder: Path, items, name: str = "Test_VG.json", *, seed: int = 0) -> tuple[Path, Path]:
    """A Med-GRIT-shaped test file and its images (grey PNGs, colour for endoscopy)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for sample_id, question, reference, *_ in items:
        colour = sample_id.startswith("endoscopy")
        shape = (48, 64, 3) if colour else (64, 56)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(images / f"{sample_id}.png")
        entries.append({"id": sample_id, "conversations": [[IMG.format(id=sample_id) + question, reference]]})
    data = folder / name
    data.write_text(json.dumps(entries), encoding="utf-8")
    return data, images


def stub_answers(items):
    by_question = {question: answer for _, question, _, answer in items}

    def answer(body: dict) -> str:
        return by_question[body["messages"][1]["content"][1]["text"]]

    return answer


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval-medgrit", *argv])
    return args.func(args)


# ------------------------------------------------------------------ reading the data


def test_questions_lose_image_tags_and_chat_wrappers_and_get_model_boxes() -> None:
    assert clean_question(IMG.format(id="ct_1") + "Where is the liver?") == "Where is the liver?"
    wrapped = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<img>a.png</img>"
        "What is located at <box>(1,2),(30,40)</box>?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert clean_question(wrapped) == "What is located at <|box_start|>(1,2),(30,40)<|box_end|>?"
    assert clean_question("<image>\nDescribe <ref>the liver</ref>.") == (
        "Describe <|object_ref_start|>the liver<|object_ref_end|>."
    )


def test_task_and_modality_from_names() -> None:
    assert task_from_name("Test_VG.json") is Task.VG
    assert task_from_name("/d/Test_RO_chatlm_OneConv.json") is Task.ROC
    assert task_from_name("Test_GC.json") is Task.RC and task_from_name("Test_MII.json") is Task.MIA
    assert task_from_name("data.json") is None and task_from_name("VG_and_RO.json") is None
    assert modality_of("ct_00--AbdomenCT1K--Case_00011--x_0040") == "ct"
    assert modality_of("x_ray--Montgomery--1") == "x" and modality_of("Fundus_3--x.png") == "fundus"


def test_load_finds_images_and_reads_both_conversation_layouts(tmp_path) -> None:
    images = tmp_path / "imgs"
    (images / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "ct_a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "sub" / "fundus_b.jpg")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "microscopy_c.png")
    data = tmp_path / "questions.json"
    data.write_text(
        json.dumps(
            [
                {"id": "ct_a", "conversations": [["<img>x</img>Q1?", " A1 "], ["Q1b?", "A1b"]]},
                {
                    "id": "fundus_b",
                    "conversations": [
                        {"from": "human", "value": "Q2 <box>(1,1),(5,5)</box>?"},
                        {"from": "gpt", "value": "A2"},
                    ],
                },
                {"id": "microscopy_c", "conversations": [["Q3?", "A3"]]},
            ]
        )
    )
    loaded = load_medgrit(data, images, Task.ROC)
    assert [(s.index, s.modality, s.question, s.annotation) for s in loaded.samples] == [
        (0, "ct", "Q1?", "A1"),
        (1, "fundus", "Q2 <|box_start|>(1,1),(5,5)<|box_end|>?", "A2"),
        (2, "microscopy", "Q3?", "A3"),
    ]
    assert loaded.samples[1].image == images / "sub" / "fundus_b.jpg"
    assert "1 conversations have several turns" in loaded.warnings[0] and "microscopy" in loaded.warnings[1]


@pytest.mark.parametrize(
    ("content", "task", "message"),
    [
        ('[{"id": "ct_a", "conversations": [["Q", "A"]]}]', None, "cannot tell the task"),
        ("{not json", Task.VG, "not valid JSON"),
        ('{"id": 1}', Task.VG, "JSON list"),
        ('[{"id": "ct_a", "conversations": "Q"}]', Task.VG, "item 0"),
        (
            '[{"id": "ct_a", "conversations": [["Q", "A"]]}, {"id": "ct_zz", "conversations": [["Q", "A"]]}]',
            Task.VG,
            "1 of 2 images are not in",
        ),
    ],
)
def test_bad_data_is_reported(tmp_path, content, task, message) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ct_a.png")
    data = tmp_path / "questions.json"
    data.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_medgrit(data, tmp_path, task)


# ------------------------------------------------------------------ through the stub server


def test_eval_medgrit_through_a_server_gives_the_hand_counted_metrics(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("CLINLENS_CLINKD_MODEL", raising=False)
    data, images = write_fixture(tmp_path, VG_ITEMS)
    out = tmp_path / "out"
    argv = ["--data", str(data), "--images", str(images), "--out", str(out), "--no-java"]
    with OpenAIStub(StubBehaviour(answer=stub_answers(VG_ITEMS))) as stub:
        assert run_cli(*argv, "--server", stub.url, "--limit", "2", "--batch-size", "1") == 0
        assert len(stub.behaviour.requests) == 2
        assert run_cli(*argv, "--server", stub.url, "--batch-size", "4") == 0  # the first two are not asked again
        assert len(stub.behaviour.requests) == 6
        requests = list(stub.behaviour.requests)
    assert run_cli(*argv) == 0  # everything answered: rescoring needs no model or server
    printed = capsys.readouterr()
    # what the server was sent: the questions without image tags, and the images' pixels as RGB
    sent = {r["messages"][1]["content"][1]["text"]: r for r in requests}
    assert sorted(sent) == sorted(q for _, q, _, _ in VG_ITEMS)
    body = sent[VG_ITEMS[0][1]]
    url = body["messages"][1]["content"][0]["image_url"]["url"]
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    stored = np.asarray(Image.open(images / f"{VG_ITEMS[0][0]}.png"))
    assert np.array_equal(pixels, np.repeat(stored[:, :, None], 3, axis=2))
    # the records, in the papers' prediction-file fields
    lines = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert [r["index"] for r in lines] == [0, 1, 2, 3, 4, 5] and {r["model"] for r in lines} == {"clinkd-7b"}
    assert lines[0]["response"] == VG_ITEMS[0][3] and lines[0]["boxes"] == [[100, 100, 400, 400]]
    assert {"id", "image", "question", "annotation", "response"} <= set(lines[0])
    # hand-counted: ct 1/2, mr 0/1 (1/1 tolerant), x 1/2, endoscopy 1/1
    metrics = json.loads((out / "metrics.json").read_text())
    recall = {m: v["recall@0.5"] for m, v in metrics["modalities"].items()}
    assert recall == pytest.approx({"ct": 0.5, "mr": 0.0, "x": 0.5, "endoscopy": 1.0})
    assert metrics["modalities"]["mr"]["recall@0.5 tolerant"] == 1.0
    assert metrics["mean_papers"]["recall@0.5"] == pytest.approx(2 / 8)
    assert metrics["mean_present"]["recall@0.5"] == pytest.approx(0.5)
    assert metrics["answered"] == metrics["samples"] == 6 and metrics["model"] == ["clinkd-7b"]
    assert "| mean (8 modalities, papers) | 6 | 25.00 |" in printed.out
    assert "Headline: **recall@0.5** = 25.00" in (out / "metrics.md").read_text()
    assert "answering: 6/6" in printed.err and "2 of 6 questions to answer" not in printed.err


def test_cancel_stops_between_batches_and_a_rerun_finishes(tmp_path) -> None:
    data, images = write_fixture(tmp_path, VG_ITEMS)
    samples = load_medgrit(data, images).samples
    out = tmp_path / "out"
    cancel = threading.Event()
    seen: list[tuple[str, int, int]] = []

    def progress(stage: str, done: int, total: int) -> None:
        seen.append((stage, done, total))
        if done >= 2:
            cancel.set()  # the user cancels after the first batch

    with OpenAIStub(StubBehaviour(answer=stub_answers(VG_ITEMS))) as stub:
        backend = open_server(ServerSettings(stub.url))
        first = run_medgrit(samples, backend, out, batch_size=2, progress=progress, cancel=cancel)
        assert first.cancelled and first.answered == 2 and len(stub.behaviour.requests) == 2
        assert seen == [("answering", 0, 6), ("answering", 2, 6)]
        assert [s.index for s in pending(samples, out)] == [2, 3, 4, 5]
        second = run_medgrit(samples, backend, out, batch_size=4)
    assert (second.already, second.answered, second.cancelled) == (2, 4, False)
    assert pending(samples, out) == []


def test_a_crash_mid_line_and_foreign_files_are_handled(tmp_path) -> None:
    data, images = write_fixture(tmp_path, VG_ITEMS)
    samples = load_medgrit(data, images).samples
    out = tmp_path / "out"
    with OpenAIStub(StubBehaviour(answer=stub_answers(VG_ITEMS))) as stub:
        run_medgrit(samples[:2], open_server(ServerSettings(stub.url)), out)
        predictions = out / PREDICTIONS_FILE
        with predictions.open("a") as handle:
            handle.write('{"index": 2, "id": "mr_00')  # the process died while writing
        assert [s.index for s in pending(samples, out)] == [2, 3, 4, 5]  # reading leaves the file alone
        resumed = run_medgrit(samples[:3], open_server(ServerSettings(stub.url)), out)
        assert resumed.answered == 1 and "predictions.jsonl is damaged (line 3 is cut off" in (resumed.repaired or "")
        assert read_jsonl(predictions).problems == [] and len(read_jsonl(predictions).records) == 3
        assert len(list(out.glob("predictions.jsonl.damaged-*"))) == 1
        stub.behaviour.models = ("another-model",)
        with pytest.raises(DatasetError, match=r"holds answers of model 'clinkd-7b'.*'another-model'"):
            run_medgrit(samples, open_server(ServerSettings(stub.url)), out)
    other, other_images = write_fixture(tmp_path / "other", list(reversed(VG_ITEMS)))
    with pytest.raises(DatasetError, match="answers for another data file"):
        pending(load_medgrit(other, other_images).samples, out)


def test_an_unreadable_image_is_recorded_as_an_empty_answer(tmp_path) -> None:
    data, images = write_fixture(tmp_path, VG_ITEMS[:2])
    (images / f"{VG_ITEMS[1][0]}.png").write_bytes(b"\x89PNG broken")
    samples = load_medgrit(data, images).samples
    with OpenAIStub(StubBehaviour(answer=stub_answers(VG_ITEMS))) as stub:
        summary = run_medgrit(samples, open_server(ServerSettings(stub.url)), tmp_path / "out")
        assert len(stub.behaviour.requests) == 1
    assert summary.unreadable == 1 and summary.answered == 2
    records = [json.loads(line) for line in (tmp_path / "out" / PREDICTIONS_FILE).read_text().splitlines()]
    broken = next(r for r in records if r["index"] == 1)
    assert broken["response"] == "" and "not a DICOM or image file" in broken["error"]


def test_cli_input_errors(tmp_path, monkeypatch, capsys) -> None:
    data, images = write_fixture(tmp_path, VG_ITEMS[:1])
    monkeypatch.delenv("CLINLENS_CLINKD_MODEL", raising=False)
    assert run_cli("--data", str(data), "--images", str(images), "--out", str(tmp_path / "o")) == 2
    assert "no model" in capsys.readouterr().err
    assert run_cli("--data", str(tmp_path / "missing.json"), "--images", str(images), "--task", "vg") == 2
    assert "cannot read" in capsys.readouterr().err
    assert run_cli("--data", str(data), "--images", str(images), "--limit", "0") == 2


# ------------------------------------------------------------------ through the tiny local model

ROC_ITEMS = [
    ("ct_00--A--1", "What is located at <box>(100,100),(400,400)</box>?", "Liver"),
    ("mr_00--B--2", "What anatomical structure is present at the <box>(0,0),(500,500)</box>?", "Brain tumor"),
    ("x_ray--C--3", "What is located at <box>(100,200),(450,800)</box>?", "Left lung"),
    ("fundus_00--D--4", "What is located at <box>(300,300),(600,600)</box>?", "Optic disc"),
]


def test_eval_medgrit_with_the_tiny_local_model(tmp_path, tmp_path_factory, capsys) -> None:
    model = tiny_checkpoint(tmp_path_factory)
    data, images = write_fixture(tmp_path, ROC_ITEMS, "Test_RO.json")
    out = tmp_path / "out"
    argv = [
        "--data",
        str(data),
        "--images",
        str(images),
        "--model",
        str(model),
        "--out",
        str(out),
        "--min-pixels",
        str(TINY_MIN_PIXELS),
        "--max-pixels",
        str(TINY_MAX_PIXELS),
        "--max-new-tokens",
        "4",
        "--batch-size",
        "2",
        "--no-java",
    ]
    assert run_cli(*argv, "--limit", "3") == 0
    err = capsys.readouterr().err
    assert f"3 of 3 questions to answer with {model.name}" in err and "answering: 3/3" in err
    assert run_cli(*argv) == 0
    assert "1 of 4 questions to answer" in capsys.readouterr().err
    records = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    assert records[0]["question"] == "What is located at <|box_start|>(100,100),(400,400)<|box_end|>?"
    assert all(isinstance(r["response"], str) and r["model"] == model.name for r in records)
    assert all(0 <= r["new_tokens"] <= 4 for r in records)  # --max-new-tokens reached the model
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["modalities"]) == {"ct", "mr", "x", "fundus"} and metrics["task"] == "roc"
    assert all(0.0 <= v["accuracy"] <= 1.0 for v in metrics["modalities"].values())


def test_all_turns_evaluates_every_turn_after_its_reference_history(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("CLINLENS_CLINKD_MODEL", raising=False)
    (_, q1, _, ans1), (_, q2, ref2, ans2) = VG_ITEMS[0], VG_ITEMS[1]
    data, images = write_fixture(tmp_path, [VG_ITEMS[0]])
    entries = json.loads(data.read_text())
    entries[0]["conversations"].append([q2, ref2])  # a second turn about the same image
    data.write_text(json.dumps(entries))
    first_only = load_medgrit(data, images)
    assert [s.key for s in first_only.samples] == [(0, 0)] and "--all-turns" in first_only.warnings[0]
    both = load_medgrit(data, images, all_turns=True)
    assert [s.key for s in both.samples] == [(0, 0), (0, 1)] and not both.warnings
    assert both.samples[1].history[0].answer == "The liver is located at <|box_start|>(100,100),(400,400)<|box_end|>."
    out = tmp_path / "out"
    argv = ["--data", str(data), "--images", str(images), "--out", str(out), "--no-java", "--all-turns"]
    answers = {q1: ans1, q2: ans2}
    with OpenAIStub(StubBehaviour(answer=lambda body: answers[body["messages"][-1]["content"][-1]["text"]])) as stub:
        assert run_cli(*argv, "--server", stub.url) == 0
        assert run_cli(*argv, "--server", stub.url) == 0  # a rerun asks nothing again
        requests = list(stub.behaviour.requests)
    assert len(requests) == 2
    later = next(r for r in requests if len(r["messages"]) > 2)
    assert [m["role"] for m in later["messages"]] == ["system", "user", "assistant", "user"]
    assert later["messages"][1]["content"][1]["text"] == q1  # the first question, with the image
    assert later["messages"][2]["content"] == both.samples[1].history[0].answer  # its reference answer
    lines = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert sorted((r["index"], r["turn"]) for r in lines) == [(0, 0), (0, 1)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["modalities"]["ct"]["recall@0.5"] == pytest.approx(0.5)  # turn 1 hit, turn 2 miss
    assert "2 of 2 questions to answer" in capsys.readouterr().err
