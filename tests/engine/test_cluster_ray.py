"""The --ray path of annotate and classify on a local Ray cluster, against the local path.

One two-CPU cluster serves the whole module (Ray starts in seconds, not for free); it is shut
down, its processes with it, when the module ends. The models are the tiny random-weight ones,
greedy: the test checks that scheduling over Ray changes nothing in what is proposed, never the
model's words.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import threading

import psutil
import pytest

from cli import annotate as annotate_cli
from cli import kpl as kpl_cli
from engine.annotations import load_document
from engine.preannotate import DONE, log_path, read_log
from tests.engine.openai_stub import OpenAIStub, StubBehaviour
from tests.engine.test_preannotate import grounding_answer, write_images
from tests.engine.tiny_clip import save_tiny_clip_dir, write_image_folder
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint

ray = pytest.importorskip("ray", reason="the cluster extra (pip install '.[cluster]') is not installed")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """A private two-CPU Ray cluster for the module; --ray local finds it connected and uses it."""
    from engine.cluster.session import quiet

    quiet(ray)
    before = set(psutil.Process().children(recursive=True))  # e.g. multiprocessing's resource tracker
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    started = [p for p in psutil.Process().children(recursive=True) if p not in before]
    assert started  # the cluster's own processes (GCS, raylet, workers) are children of this one
    yield
    ray.shutdown()
    assert not ray.is_initialized()
    _gone, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, f"Ray left processes running: {[p.pid for p in alive]}"


def run(module, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def proposals(project) -> dict[str, list[tuple]]:
    """Per image title, what was proposed: kind, label, note, box corners, source, review state."""
    doc = load_document(project)
    out = {}
    for ref in doc.images:
        found = [
            (type(a).__name__, a.label, a.note, getattr(a, "x1", None), getattr(a, "y2", None), a.source, a.review)
            for a in doc.annotations(ref.image_id)
        ]
        out[ref.title] = sorted(found, key=repr)
    return out


def test_annotate_on_ray_proposes_what_the_local_run_proposes(tmp_path, tmp_path_factory, capsys) -> None:
    model = tiny_checkpoint(tmp_path_factory)
    images = write_images(tmp_path / "images", 3)  # and one broken file, which fails alone either way
    common = [
        "annotate",
        str(images),
        "--task",
        "mia",
        "--model",
        str(model),
        "--min-pixels",
        str(TINY_MIN_PIXELS),
        "--max-pixels",
        str(TINY_MAX_PIXELS),
        "--max-new-tokens",
        "6",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    assert run(annotate_cli, *common, "--out", str(tmp_path / "local.json")) == 0
    assert run(annotate_cli, *common, "--out", str(tmp_path / "ray.json"), "--ray", "local") == 0
    local, on_ray = proposals(tmp_path / "local.json"), proposals(tmp_path / "ray.json")
    assert len(local) == 3 and all(len(found) == 1 for found in local.values())  # the broken file is no image
    assert on_ray == local
    records = read_log(log_path(tmp_path / "ray.json"))
    assert sorted(r["status"] for r in records) == [DONE, DONE, DONE, "failed"]
    assert {r["model"] for r in records} == {model.name}


def test_classify_on_ray_gives_the_local_labels(tmp_path, tmp_path_factory, capsys) -> None:
    clip = f"local-dir:{save_tiny_clip_dir(tmp_path_factory.mktemp('clip') / 'tiny')}"
    folder = write_image_folder(tmp_path / "data")
    argv = ["classify", str(folder), "--knowledge", "tuberculosis-cxr", "--clip", clip, "--json", "--no-cache"]
    fast = ["--k", "4", "--iterations", "200", "--batch-size", "5", "--device", "cpu"]
    assert run(kpl_cli, *argv, *fast) == 0
    local = json.loads(capsys.readouterr().out)
    assert run(kpl_cli, *argv, *fast, "--ray", "local") == 0
    on_ray = json.loads(capsys.readouterr().out)
    assert on_ray["cache_misses"] == 12 and len(on_ray["images"]) == 12
    labels = lambda data: [(r["image"]["title"], r["label"]) for r in data["images"]]  # noqa: E731
    assert labels(on_ray) == labels(local)
    assert [r["score"] for r in on_ray["images"]] == pytest.approx([r["score"] for r in local["images"]], abs=1e-4)


def test_a_ray_run_stopped_halfway_resumes_without_asking_again(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images", 5, broken=False)
    out = tmp_path / "project.json"
    with OpenAIStub(StubBehaviour(answer=grounding_answer)) as stub:
        argv = ["annotate", str(images), "--task", "vg", "--labels", "left lung,heart", "--server", stub.url]
        argv += ["--ray", "local", "--out", str(out)]
        assert run(annotate_cli, *argv, "--limit", "2") == 0  # stopped after two images
        asked_first = len(stub.behaviour.requests)
        assert run(annotate_cli, *argv) == 0
        asked = len(stub.behaviour.requests)
    assert asked_first == 4 and asked == 10  # the rerun asked about the three images left, only
    assert "2 skipped, already done" in capsys.readouterr().out
    records = read_log(log_path(out))
    assert len(records) == 5 and {r["status"] for r in records} == {DONE}
    boxes = proposals(out)
    assert len(boxes) == 5 and all(len(found) == 3 for found in boxes.values())  # 1 left lung + 2 heart boxes


def test_without_ray_installed_ray_is_one_sentence_saying_what_to_install(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    images = write_images(tmp_path / "images", 1, broken=False)
    argv = ["annotate", str(images), "--task", "mia", "--server", "http://127.0.0.1:9", "--ray"]
    assert run(annotate_cli, *argv, "--out", str(tmp_path / "p.json")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --ray needs Ray") and 'pip install ".[cluster]"' in err and err.count("\n") == 0
    argv = ["classify", str(images), "--knowledge", "tuberculosis-cxr", "--clip", "ViT-B-32:openai", "--ray", "auto"]
    assert run(kpl_cli, *argv) == 2
    assert 'pip install ".[cluster]"' in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_a_wrong_model_folder_is_one_sentence_before_the_cluster_is_used(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images", 1, broken=False)
    argv = ["annotate", str(images), "--task", "mia", "--model", str(tmp_path / "nowhere"), "--ray"]
    assert run(annotate_cli, *argv, "--out", str(tmp_path / "p.json")) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_a_vllm_engine_stage_without_vllm_is_one_sentence(tmp_path, tmp_path_factory, capsys) -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: the engine stage's own check has nothing to refuse")
    images = write_images(tmp_path / "images", 1, broken=False)
    argv = ["annotate", str(images), "--task", "mia", "--model", str(tmp_path), "--ray", "--ray-vllm"]
    assert run(annotate_cli, *argv, "--out", str(tmp_path / "p.json")) == 2
    err = capsys.readouterr().err
    assert "needs the vllm package" in err and "--server URL" in err


def test_eval_medgrit_on_ray_resumes_and_scores_as_locally(tmp_path, monkeypatch, capsys) -> None:
    from cli import evaluation as evaluation_cli
    from tests.engine.test_evaluation_medgrit import VG_ITEMS, stub_answers, write_fixture

    monkeypatch.delenv("CLINLENS_CLINKD_MODEL", raising=False)
    data, images = write_fixture(tmp_path, VG_ITEMS)
    out = tmp_path / "out"
    argv = ["eval-medgrit", "--data", str(data), "--images", str(images), "--out", str(out), "--no-java"]
    with OpenAIStub(StubBehaviour(answer=stub_answers(VG_ITEMS))) as stub:
        argv += ["--server", stub.url, "--ray", "local"]
        assert run(evaluation_cli, *argv, "--limit", "2", "--batch-size", "1") == 0
        assert len(stub.behaviour.requests) == 2
        assert run(evaluation_cli, *argv, "--batch-size", "4") == 0  # the first two are not asked again
        assert len(stub.behaviour.requests) == 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["answered"] == metrics["samples"] == 6 and metrics["model"] == ["clinkd-7b"]
    assert metrics["mean_papers"]["recall@0.5"] == pytest.approx(2 / 8)  # the hand count of the local test
    assert "answering: 6/6" in capsys.readouterr().err


def test_a_cancelled_ray_run_keeps_what_was_reported_and_stops(tmp_path) -> None:
    from engine.clinkd import ServerSettings, open_server
    from engine.cluster import ModelRecipe
    from engine.imaging import open_paths
    from engine.preannotate import ImageWork, PreannotateSpec, PreTask
    from engine.preannotate.ray_run import run_preannotation_ray

    folder = write_images(tmp_path / "images", 6, broken=False)
    works = [ImageWork.of(stack) for stack in open_paths([str(folder)]).stacks]
    cancel = threading.Event()
    outcomes = []

    def on_image(outcome) -> None:
        outcomes.append(outcome)
        cancel.set()  # the user cancels as the first image comes back

    with OpenAIStub(StubBehaviour(answer=grounding_answer)) as stub:
        recipe = ModelRecipe(servers=(open_server(ServerSettings(stub.url)).settings,), concurrency=1)
        spec = PreannotateSpec(PreTask.VG, ("left lung",))
        stats = run_preannotation_ray(
            works, spec, recipe, model_id="clinkd-7b", on_image=on_image, cancel=cancel, images_per_call=2
        )
    assert stats.cancelled and len(outcomes) == stats.done == 1 < len(works)
