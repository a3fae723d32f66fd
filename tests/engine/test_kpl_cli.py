"""The KPL sub-commands as a user runs them (tiny open_clip model, temporary cache and config)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cli import kpl as kpl_cli
from tests.engine.tiny_clip import save_tiny_clip_dir, write_image_folder

FAST = ["--k", "4", "--iterations", "200", "--batch-size", "5", "--device", "cpu"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="main.py")
    kpl_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINLENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CLINLENS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv(kpl_cli.CLIP_ENV, raising=False)


@pytest.fixture(scope="module")
def clip_arg(tmp_path_factory) -> str:
    return f"local-dir:{save_tiny_clip_dir(tmp_path_factory.mktemp('clip') / 'tiny')}"


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "data")


def test_classify_prints_labels_scores_and_descriptions(clip_arg, folder, capsys):
    assert run(["classify", str(folder), "--knowledge", "tuberculosis-cxr", "--clip", clip_arg, "--json", *FAST]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["images"]) == 12 and data["method"] == "kpl" and data["cache_misses"] == 12
    assert data["settings"]["k"] == 4 and data["settings"]["iterations"] == 200
    first = data["images"][0]
    assert first["label"] in ("normal", "tuberculosis") and len(first["scores"]) == 2
    assert len(first["evidence"]) == 4

    argv = ["classify", str(folder), "--knowledge", "tuberculosis-cxr", "--clip", clip_arg, "--top", "2", *FAST]
    assert run(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("12 image(s), Tuberculosis screening on chest X-ray; method kpl, k=4")
    assert lines[-1] == "features: 12 from cache, 0 encoded"
    title, label, score = lines[1].split("\t")
    assert title == "normal_0.png" and label in ("normal", "tuberculosis") and 0.5 <= float(score) <= 1
    assert lines[2].startswith("    0.") and lines[3].startswith("    0.") and "\t" in lines[4]


def test_classify_one_image_says_it_used_the_text_proxy(clip_arg, folder, capsys):
    image = folder / "normal" / "normal_2.png"
    assert run(["classify", str(image), "--knowledge", "tuberculosis-cxr", "--clip", clip_arg]) == 0
    out = capsys.readouterr().out
    assert "method text" in out and "note: single image" in out


def test_classify_methods_and_env_default(clip_arg, folder, capsys, monkeypatch):
    monkeypatch.setenv(kpl_cli.CLIP_ENV, clip_arg)
    for method in ("text", "inmap"):
        argv = ["classify", str(folder), "--knowledge", "tuberculosis-cxr", "--method", method, "--json", *FAST]
        assert run(argv) == 0
        assert json.loads(capsys.readouterr().out)["method"] == method


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--knowledge", "nope"], "no knowledge base named 'nope'"),
        (["--knowledge", "tuberculosis-cxr", "--clip", "ViT-B-32"], "gives no weights"),
        (["--knowledge", "tuberculosis-cxr", "--clip", "local-dir:/no/such/folder"], "does not exist"),
        (["--knowledge", "tuberculosis-cxr"], "no CLIP model: give --clip"),
        (["--knowledge", "tuberculosis-cxr", "--window", "40"], "--window expects CENTER,WIDTH"),
        (["--knowledge", "tuberculosis-cxr", "--template", "{class} only"], "lacks {description}"),
        (["--knowledge", "tuberculosis-cxr", "--k", "0"], "k and batch_size must be at least 1"),
    ],
)
def test_classify_bad_input_exits_2_with_one_sentence(clip_arg, folder, capsys, extra, message):
    argv = ["classify", str(folder), *extra]
    if "--clip" not in extra and "no CLIP" not in message:
        argv += ["--clip", clip_arg]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_classify_empty_folder(clip_arg, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run(["classify", str(tmp_path / "empty"), "--knowledge", "malaria-cells", "--clip", clip_arg]) == 2
    assert "no images found" in capsys.readouterr().err


def test_eval_kpl_prints_accuracies_and_confusion(clip_arg, folder, capsys):
    assert run(["eval-kpl", str(folder), "--knowledge", "tuberculosis-cxr", "--clip", clip_arg, *FAST]) == 0
    out = capsys.readouterr().out
    assert out.startswith("12 images in 2 class folders")
    assert "text proxy accuracy: 0." in out or "text proxy accuracy: 1.0000" in out
    assert "\nkpl accuracy: " in out
    assert out.count(" 0 normal") == 2 and out.count(" 1 tuberculosis") == 2

    assert run(["eval-kpl", str(folder), "--knowledge", "tuberculosis-cxr", "--clip", clip_arg, "--json", *FAST]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["images"] == 12 and sum(map(sum, data["confusion"])) == 12
    assert data["accuracy"] == pytest.approx((data["confusion"][0][0] + data["confusion"][1][1]) / 12)


def test_eval_kpl_rejects_unknown_class_folders(clip_arg, folder, capsys):
    (folder / "covid").mkdir()
    assert run(["eval-kpl", str(folder), "--knowledge", "tuberculosis-cxr", "--clip", clip_arg]) == 2
    assert "folder 'covid' names no class" in capsys.readouterr().err


def test_knowledge_lists_and_checks(tmp_path, capsys):
    assert run(["knowledge"]) == 0
    names = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["brain-tumor-mri", "diabetic-retinopathy", "fundus-disease", "malaria-cells", "tuberculosis-cxr"]
    assert run(["knowledge", "malaria-cells"]) == 0
    out = capsys.readouterr().out
    assert "parasitized (also: infected, parasitised, positive): 31 descriptions" in out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": "t", "modality": "m", "classes": [], "provenance": {"source": "me"}}))
    assert run(["knowledge", str(bad)]) == 2
    assert "need at least two classes" in capsys.readouterr().err


def test_eval_kpl_warns_about_classes_without_a_folder(clip_arg, folder, capsys):
    for image in (folder / "tuberculosis").iterdir():
        image.unlink()
    (folder / "tuberculosis").rmdir()
    assert run(["eval-kpl", str(folder), "--knowledge", "tuberculosis-cxr", "--clip", clip_arg, *FAST]) == 0
    captured = capsys.readouterr()
    assert "warning: no folder for tuberculosis" in captured.err
    assert captured.out.startswith("6 images in 1 class folders")
