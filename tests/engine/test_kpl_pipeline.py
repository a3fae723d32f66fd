"""KPL through a tiny random open_clip model loaded by the real loader: weights, cache, pools."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pydicom.data import get_testdata_file

from engine.imaging import Window, open_image, render_rgb
from engine.kpl import (
    Cancelled,
    ClipLoadError,
    ClipSpec,
    ClipSpecError,
    ClipWeightsMissing,
    FeatureCache,
    KplSettings,
    Pool,
    ProxyParams,
    classify_pool,
    description_features,
    encode_pool,
    evaluate_folder,
    load_clip,
    resolve_knowledge,
)
from engine.kpl.knowledge import KnowledgeError
from tests.engine.tiny_clip import build_tiny_clip, save_tiny_clip_checkpoint, save_tiny_clip_dir, write_image_folder

FAST = KplSettings(k=4, params=ProxyParams(iterations=200), batch_size=5)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: loading must be offline."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_tiny_clip_dir(tmp_path_factory.mktemp("clip") / "tiny")


@pytest.fixture(scope="module")
def clip(tiny_dir):
    return load_clip(f"local-dir:{tiny_dir}", device="cpu")


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "data")


@pytest.fixture(scope="module")
def tb():
    return resolve_knowledge("tuberculosis-cxr")


def fake_hub_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """The layout huggingface_hub writes: refs/main -> snapshots/<commit>/<files>."""
    commit = "0" * 40
    base = cache / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


def test_spec_strings():
    assert ClipSpec.parse("ViT-L-14:openai") == ClipSpec("ViT-L-14", "openai")
    assert ClipSpec.parse("ViT-B-16:/models/b16.pt") == ClipSpec("ViT-B-16", "/models/b16.pt")
    assert ClipSpec.parse("hf-hub:org/repo") == ClipSpec("hf-hub:org/repo")
    assert str(ClipSpec.parse("ViT-L-14-336:openai")) == "ViT-L-14-336:openai"
    with pytest.raises(ClipSpecError, match="gives no weights"):
        ClipSpec.parse("ViT-L-14")
    with pytest.raises(ClipSpecError, match="names no folder"):
        ClipSpec.parse("local-dir:")


def test_local_dir_and_checkpoint_file_load_the_same_weights(tiny_dir, clip, tmp_path):
    name, checkpoint = save_tiny_clip_checkpoint(tmp_path)
    from_file = load_clip(f"{name}:{checkpoint}", device="cpu")
    assert from_file.weight_files == (str(checkpoint),)
    assert ClipSpec.parse(f"{tiny_dir}") == ClipSpec(f"local-dir:{tiny_dir}")  # a bare folder is a local-dir
    tokens = clip.tokenizer(["a photo of a cat"])
    with torch.inference_mode():
        reference = build_tiny_clip().encode_text(tokens)
        assert torch.allclose(clip.model.encode_text(tokens), reference)
        assert torch.allclose(from_file.model.encode_text(tokens), reference)
    assert not clip.model.training and clip.precision == "fp32" and clip.device.type == "cpu"


def test_hugging_face_cache_entries_load_offline(tiny_dir, tmp_path, monkeypatch):
    files = {
        "open_clip_config.json": tiny_dir / "open_clip_config.json",
        "open_clip_pytorch_model.bin": tiny_dir / "open_clip_pytorch_model.bin",
    }
    fake_hub_cache(tmp_path / "hub", "clinlens-test/tiny-clip", files)
    hub = load_clip("hf-hub:clinlens-test/tiny-clip", device="cpu", cache_dir=str(tmp_path / "hub"))
    assert hub.weight_files[1].endswith("open_clip_pytorch_model.bin")
    # A pretrained tag resolves through the same cache (as ViT-L-14:openai does).
    name, _ = save_tiny_clip_checkpoint(tmp_path / "cfg")
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, name, {"tiny": {"hf_hub": "clinlens-test/tiny-clip/"}})
    tagged = load_clip(f"{name}:tiny", device="cpu", cache_dir=str(tmp_path / "hub"))
    tokens = hub.tokenizer(["x"])
    with torch.inference_mode():
        assert torch.allclose(tagged.model.encode_text(tokens), hub.model.encode_text(tokens))


def test_missing_weights_say_what_to_do(tmp_path):
    with pytest.raises(ClipWeightsMissing, match="--allow-download") as err:
        load_clip("ViT-B-32:openai", cache_dir=str(tmp_path))
    assert "timm/vit_base_patch32_clip_224.openai" in str(err.value)
    with pytest.raises(ClipWeightsMissing, match="not in the local Hugging Face cache"):
        load_clip("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", cache_dir=str(tmp_path))
    with pytest.raises(ClipWeightsMissing, match="does not exist"):
        load_clip(f"local-dir:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "open_clip_config.json").write_text("{}")
    with pytest.raises(ClipWeightsMissing, match="no weights"):
        load_clip(f"local-dir:{tmp_path / 'empty'}")
    with pytest.raises(ClipWeightsMissing, match="does not exist"):
        load_clip(f"ViT-B-32:{tmp_path / 'absent.pt'}")
    with pytest.raises(ClipSpecError, match="no pretrained tag 'nope'"):
        load_clip("ViT-B-32:nope")
    with pytest.raises(ClipSpecError, match="unknown open_clip model"):
        load_clip("NoSuchNet:openai")


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_checkpoints_load_with_weights_only(tiny_dir, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    shutil.copy(tiny_dir / "open_clip_config.json", evil)
    torch.save({"state_dict": build_tiny_clip().state_dict(), "extra": Payload()}, evil / "open_clip_pytorch_model.bin")
    with pytest.raises(ClipLoadError, match="Weights only load failed"):
        load_clip(f"local-dir:{evil}")


def bare_features(clip, paths: list[Path]) -> torch.Tensor:
    """What a plain open_clip loop computes for these PNGs."""
    batch = torch.stack([clip.preprocess(Image.open(p).convert("RGB")) for p in paths])
    with torch.inference_mode():
        return F.normalize(clip.model.encode_image(batch), dim=-1)


def test_classify_a_folder_end_to_end_with_cache(clip, folder, tb, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    first = classify_pool(Pool.from_paths([folder]), tb, clip, FAST, cache=cache)
    assert (first.cache_hits, first.cache_misses) == (0, 12)
    assert first.method == "kpl" and first.transductive and first.classes == ("normal", "tuberculosis")
    assert [r.image.title for r in first.images] == sorted(p.name for p in folder.rglob("*.png"))
    assert [r.image.index for r in first.images] == list(range(12))
    for r in first.images:
        assert r.label in first.classes and r.text_label in first.classes
        assert sum(r.scores) == pytest.approx(1.0, abs=1e-5)
        assert r.score == r.scores[first.classes.index(r.label)] == max(r.scores)
        assert len(r.evidence) == 4
        assert [e.relevance for e in r.evidence] == sorted((e.relevance for e in r.evidence), reverse=True)
        assert {e.description for e in r.evidence} == set(first.selected[first.classes.index(r.label)])
    assert json.loads(json.dumps(first.to_json()))["images"][0]["image"]["frame_number"] == 1

    second = classify_pool(Pool.from_paths([folder]), tb, clip, FAST, cache=cache)
    assert (second.cache_hits, second.cache_misses) == (12, 0)
    assert [r.label for r in second.images] == [r.label for r in first.images]
    assert [r.scores for r in second.images] == [r.scores for r in first.images]

    changed = folder / "normal" / "normal_0.png"
    Image.fromarray(np.full((40, 48), 200, np.uint8)).save(changed)
    third = classify_pool(Pool.from_paths([folder]), tb, clip, FAST, cache=cache)
    assert (third.cache_hits, third.cache_misses) == (11, 1)


def test_pool_features_and_relevance_match_a_bare_open_clip_loop(clip, folder, tb, tmp_path):
    pool = Pool.from_paths([folder])
    encoded = encode_pool(pool, clip, batch_size=5)
    expected = bare_features(clip, [Path(im.path) for im in pool.images])
    torch.testing.assert_close(encoded.features, expected, rtol=0, atol=1e-5)
    cached = encode_pool(pool, clip, cache=FeatureCache(tmp_path / "c"))
    again = encode_pool(pool, clip, cache=FeatureCache(tmp_path / "c"))
    assert again.cache_hits == 12 and torch.equal(again.features, cached.features)

    result = classify_pool(pool, tb, clip, FAST)
    blocks, _ = description_features(tb, clip)
    label = tb.class_names.index(result.images[3].label)
    prompts = tb.prompts()[label]
    for e in result.images[3].evidence:
        j = tb.classes[label].descriptions.index(e.description)
        assert e.relevance == pytest.approx(float(expected[3] @ blocks[label][j]), abs=1e-5)
        assert prompts[j].endswith(e.description)


def test_dicom_is_encoded_as_displayed_and_keyed_by_window(clip, tmp_path):
    ct = Path(get_testdata_file("CT_small.dcm"))
    as_shown = Pool.from_paths([ct])
    lung = Pool.from_paths([ct], Window(-600, 1500))
    assert np.array_equal(as_shown.render(0), render_rgb(open_image(ct).frame(0)))
    assert np.array_equal(lung.render(0), render_rgb(open_image(ct).frame(0), Window(-600, 1500)))
    assert not np.array_equal(as_shown.render(0), lung.render(0))
    assert as_shown.content_key(0) != lung.content_key(0)
    cache = FeatureCache(tmp_path / "cache")
    encode_pool(as_shown, clip, cache=cache)
    assert encode_pool(lung, clip, cache=cache).cache_misses == 1
    assert encode_pool(Pool.from_paths([ct], Window(-600, 1500)), clip, cache=cache).cache_hits == 1


def test_a_single_image_uses_the_text_proxy_and_says_so(clip, folder, tb):
    result = classify_pool(Pool.from_paths([folder / "normal" / "normal_1.png"]), tb, clip, FAST)
    assert result.method == "text" and not result.transductive
    assert "single image" in result.note
    assert result.images[0].label == result.images[0].text_label


def test_unreadable_files_are_reported_not_fatal(clip, folder, tb):
    (folder / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    result = classify_pool(Pool.from_paths([folder]), tb, clip, FAST)
    assert len(result.images) == 12
    assert any("broken.png" in e.path for e in result.errors)
    assert all(r.image.title != "broken.png" for r in result.images)


def test_cancel_stops_encoding_and_keeps_finished_batches(clip, folder, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cancel = threading.Event()

    def stop_after_first_batch(stage, done, total):
        if stage == "encoding" and done >= 4:
            cancel.set()

    pool = Pool.from_paths([folder])
    with pytest.raises(Cancelled):
        encode_pool(pool, clip, cache=cache, batch_size=4, progress=stop_after_first_batch, cancel=cancel)
    assert encode_pool(pool, clip, cache=cache, batch_size=4).cache_hits == 4


def test_evaluate_a_folder_per_class_layout(clip, folder, tb, tmp_path):
    (folder / "tuberculosis").rename(folder / "TB")  # an alias of the class
    report = evaluate_folder(folder, tb, clip, FAST, cache=FeatureCache(tmp_path / "cache"))
    assert report.classes == ("normal", "tuberculosis")
    assert report.folders["tuberculosis"].endswith("TB")
    assert report.confusion.sum() == report.text_confusion.sum() == 12
    assert report.confusion.sum(1).tolist() == [6, 6]
    assert report.accuracy == pytest.approx(np.trace(report.confusion) / 12)
    assert report.text_accuracy == pytest.approx(np.trace(report.text_confusion) / 12)
    (folder / "pneumonia").mkdir()
    with pytest.raises(KnowledgeError, match="folder 'pneumonia' names no class of tuberculosis-cxr"):
        evaluate_folder(folder, tb, clip, FAST)
