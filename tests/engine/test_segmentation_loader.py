"""Loading SAM checkpoints offline through the production loader; wrong folders in one sentence."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.segmentation import SegmenterError, load_segmenter, read_segmenter_config
from tests.engine.tiny_sam import save_sam_dir


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    return save_sam_dir(tmp_path_factory.mktemp("sam"))


def test_tiny_sam_loads_on_the_cpu_in_fp32(sam_dir):
    segmenter = load_segmenter(sam_dir, device="cpu")
    assert segmenter.info.family == "SamModel"
    assert segmenter.info.device == "cpu" and segmenter.info.dtype == "float32"
    assert segmenter.info.parameters > 0 and segmenter.info.model_id == sam_dir.name


def one_sentence(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(SegmenterError) as err:
        load_segmenter(tmp_path / "nowhere")
    assert "does not exist" in one_sentence(err.value) and "nowhere" in str(err.value)


def test_an_empty_folder_says_what_is_missing(tmp_path):
    with pytest.raises(SegmenterError) as err:
        read_segmenter_config(tmp_path)
    text = one_sentence(err.value)
    assert "config.json" in text and "safetensors" in text and "preprocessor_config.json" in text


def test_another_architecture_is_refused_by_its_model_type(tmp_path, sam_dir):
    for name in ("model.safetensors", "processor_config.json"):
        (tmp_path / name).write_bytes((sam_dir / name).read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    with pytest.raises(SegmenterError) as err:
        load_segmenter(tmp_path)
    assert "'qwen2_vl'" in one_sentence(err.value) and "Segment-Anything" in str(err.value)


def test_missing_weights_are_reported(tmp_path, sam_dir):
    for name in ("config.json", "processor_config.json"):
        (tmp_path / name).write_bytes((sam_dir / name).read_bytes())
    with pytest.raises(SegmenterError, match="missing model weights"):
        load_segmenter(tmp_path)


def test_sam2_families_are_recognised_by_model_type(tmp_path, sam_dir):
    """SAM 2 folders now load (tests/engine/test_segmentation_sam2.py); a SAM v1 folder relabelled
    sam2_video is read as one and its wrong weights are one sentence."""
    for name in ("model.safetensors", "processor_config.json"):
        (tmp_path / name).write_bytes((sam_dir / name).read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam2_video"}))
    assert read_segmenter_config(tmp_path)["model_type"] == "sam2_video"
    with pytest.raises(SegmenterError, match="Could not load the segmentation model"):
        load_segmenter(tmp_path, device="cpu")


def test_damaged_weights_are_one_sentence(tmp_path, sam_dir):
    for name in ("config.json", "processor_config.json"):
        (tmp_path / name).write_bytes((sam_dir / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(SegmenterError, match="Could not load the segmentation model"):
        load_segmenter(tmp_path, device="cpu")


def test_a_gpu_asked_for_without_one_is_refused(sam_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SegmenterError, match="no CUDA GPU"):
        load_segmenter(sam_dir, device="cuda")


def test_out_of_memory_while_loading_is_a_clear_error(sam_dir, monkeypatch):
    import torch
    from transformers import SamModel

    from engine.segmentation import SegmenterOutOfMemory

    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SamModel, "from_pretrained", boom)
    with pytest.raises(SegmenterOutOfMemory, match="Not enough memory"):
        load_segmenter(sam_dir, device="cpu")


def test_importing_the_package_does_not_import_torch():
    code = "import sys, engine.segmentation; print('torch' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
