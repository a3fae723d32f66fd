"""KPL over several labelled datasets (tiny open_clip model) and the authors' logged numbers beside them."""

from __future__ import annotations

import argparse
import json

import pytest

from cli import evaluation as cli
from cli import kpl as kpl_cli
from engine.evaluation import (
    AUTHORS_LOG,
    KplDataset,
    KplSetResult,
    authors_run,
    check_kpl_sets,
    evaluate_kpl_sets,
    kpl_sets_markdown,
)
from engine.kpl import KnowledgeError, KplSettings, ProxyParams, evaluate_folder, load_clip, resolve_knowledge
from tests.engine.tiny_clip import save_tiny_clip_dir, write_image_folder

FAST = ["--k", "4", "--iterations", "200", "--batch-size", "6"]


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINLENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(kpl_cli.CLIP_ENV, raising=False)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip_dir(tmp_path_factory.mktemp("clip") / "tiny")


@pytest.fixture
def datasets(tmp_path) -> list[KplDataset]:
    tb = write_image_folder(tmp_path / "tb", per_class=5)
    cells = write_image_folder(tmp_path / "cells", per_class=4, classes=("parasitized", "uninfected"))
    return [KplDataset("Montgomery", "tuberculosis-cxr", str(tb)), KplDataset("cells", "malaria-cells", str(cells))]


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval-kpl-sets", *argv])
    return args.func(args)


def test_authors_log_lookup() -> None:
    run = authors_run("Montgomery", "ViT-L-14", "openai", 20)
    assert (run.backbone, run.k, run.text_accuracy, run.accuracy) == ("ViT-L/14", 20, 0.594, 0.725)
    assert (run.best_accuracy, run.best_k) == (0.725, 20)
    china = authors_run("ChinaSet", "ViT-L-14-336", "openai", 8)  # k=8 was not logged
    assert china.dataset == "Shenzhen" and china.k is None and china.accuracy is None
    assert (china.best_accuracy, china.best_k) == (0.788, 35)
    # the best of each sweep is the brief's "best final (k)" column
    best = {(d, b): max(s, key=lambda k: s[k][1]) for d, by in AUTHORS_LOG.items() for b, s in by.items()}
    assert best[("Cataract", "ViT-L/14")] == 5 and best[("Malaria", "ViT-L/14@336px")] == 35
    assert best[("IDRiD", "ViT-L/14@336px")] == 20 and best[("Montgomery", "ViT-L/14@336px")] == 50
    assert authors_run("Montgomery", "ViT-B-16", "openai", 20) is None  # not a logged backbone
    assert authors_run("my chest set", "ViT-L-14", "openai", 20) is None


def test_each_dataset_is_scored_by_eval_kpls_own_evaluation(clip_dir, datasets) -> None:
    clip = load_clip(f"local-dir:{clip_dir}", device="cpu")
    settings = KplSettings(k=4, params=ProxyParams(iterations=200), batch_size=6)
    stages: list[str] = []
    results = evaluate_kpl_sets(datasets, clip, settings, progress=lambda stage, done, total: stages.append(stage))
    direct = evaluate_folder(datasets[0].folder, resolve_knowledge("tuberculosis-cxr"), clip, settings)
    assert [(r.name, r.images, r.classes, r.knowledge) for r in results] == [
        ("Montgomery", 10, 2, "tuberculosis-cxr"),
        ("cells", 8, 2, "malaria-cells"),
    ]
    assert (results[0].text_accuracy, results[0].accuracy) == (direct.text_accuracy, direct.accuracy)
    assert results[0].authors is None  # a tiny model is not the authors' CLIP
    assert any(s.startswith("Montgomery: ") for s in stages) and any(s.startswith("cells: ") for s in stages)


def test_bad_datasets_fail_before_any_image_is_encoded(datasets, tmp_path) -> None:
    with pytest.raises(KnowledgeError, match=r"^cells: .*names no class"):
        check_kpl_sets([datasets[0], KplDataset("cells", "tuberculosis-cxr", datasets[1].folder)])
    with pytest.raises(KnowledgeError, match=r"^x: .*not a folder"):
        check_kpl_sets([KplDataset("x", "tuberculosis-cxr", str(tmp_path / "nowhere"))])
    with pytest.raises(ValueError, match="once"):
        check_kpl_sets([datasets[0], datasets[0]])


def test_markdown_puts_the_authors_numbers_beside_ours() -> None:
    logged = authors_run("Malaria", "ViT-L-14", "openai", 25)
    results = [
        KplSetResult("Malaria", "/d/m", "malaria-cells", 27558, 2, "kpl", 0.61, 0.7512, logged),
        KplSetResult("Mine", "/d/x", "tuberculosis-cxr", 40, 2, "kpl", 0.5, 0.55, None),
    ]
    md = kpl_sets_markdown(results, "ViT-L-14:openai", 25)
    assert "| Malaria | 27558 | 2 | 61.00 | 75.12 | 65.50 / 78.20 | 78.20 (25) |" in md
    assert "| Mine | 40 | 2 | 50.00 | 55.00 | — | — |" in md
    assert "authors' log, k=25" in md and "their own log (ViT-L/14, OpenAI CLIP)" in md


def test_eval_kpl_sets_command(clip_dir, datasets, capsys) -> None:
    sets = [a for d in datasets for a in ("--set", d.name, d.knowledge, d.folder)]
    assert run(*sets, "--clip", f"local-dir:{clip_dir}", "--device", "cpu", *FAST) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"CLIP local-dir:{clip_dir}, k=4.") and "| Montgomery | 10 | 2 |" in out
    assert "| cells | 8 | 2 |" in out and "No authors' numbers" in out
    assert run(*sets, "--clip", f"local-dir:{clip_dir}", "--device", "cpu", "--json", *FAST) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data["datasets"]] == ["Montgomery", "cells"] and data["k"] == 4
    assert 0.0 <= data["datasets"][0]["accuracy"] <= 1.0


def test_eval_kpl_sets_input_errors(datasets, tmp_path, capsys) -> None:
    assert run("--set", "x", "no-such-knowledge", datasets[0].folder, "--clip", "local-dir:/nowhere") == 2
    assert "x: " in capsys.readouterr().err
    assert run("--set", "tb", "tuberculosis-cxr", datasets[0].folder) == 2
    assert "no CLIP model" in capsys.readouterr().err
