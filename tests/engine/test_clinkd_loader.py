"""Loading a Qwen2-VL checkpoint folder offline: settings applied, wrong folders explained."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from engine.clinkd import (
    ClinKDError,
    LoadSettings,
    ModelFolderError,
    QuantizationUnavailable,
    chat_messages,
    load_model,
)
from tests.engine.tiny_qwen import SPECIAL_TOKENS, TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory):
    return tiny_checkpoint(tmp_path_factory)


def _settings(folder, **options) -> LoadSettings:
    """CPU unless a test asks otherwise: these tests check CPU behaviour on GPU machines too."""
    options.setdefault("device", "cpu")
    return LoadSettings(str(folder), min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS, **options)


def test_auto_device_is_the_gpu_when_there_is_one(folder) -> None:
    clinkd = load_model(_settings(folder, device="auto"))
    on_gpu = torch.cuda.is_available()
    assert clinkd.info.device == ("cuda:0" if on_gpu else "cpu")
    assert clinkd.info.dtype == ("bfloat16" if on_gpu else "float32")


def test_loads_with_cpu_defaults_and_reports_what_it_did(folder) -> None:
    clinkd = load_model(_settings(folder))
    info = clinkd.info
    assert (info.device, info.dtype, info.attn_implementation, info.quantization) == ("cpu", "float32", "sdpa", None)
    assert info.model_id == folder.name and info.path == str(folder.resolve())
    assert info.parameters == sum(p.numel() for p in clinkd.model.parameters()) > 0
    assert 4 * info.parameters <= info.memory_bytes < 4 * info.parameters * 1.1  # float32 weights + buffers
    assert not clinkd.model.training
    assert clinkd.model.config._attn_implementation == "sdpa"
    tokenizer = clinkd.processor.tokenizer
    assert tokenizer.padding_side == "left"
    assert set(clinkd.eos_token_ids) == {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    assert clinkd.pad_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")


def test_pixel_budget_reaches_the_image_processor(folder) -> None:
    clinkd = load_model(LoadSettings(str(folder), device="cpu", min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 9))
    size = clinkd.processor.image_processor.size
    assert (size.shortest_edge, size.longest_edge) == (28 * 28 * 4, 28 * 28 * 9)
    assert (clinkd.info.min_pixels, clinkd.info.max_pixels) == (28 * 28 * 4, 28 * 28 * 9)


def test_default_pixel_budget_is_clinkds() -> None:
    settings = LoadSettings("x")
    assert (settings.min_pixels, settings.max_pixels) == (512 * 512, 1024 * 1024)


def test_dtype_can_be_chosen(folder) -> None:
    clinkd = load_model(_settings(folder, dtype="bfloat16"))
    assert clinkd.info.dtype == "bfloat16"
    assert next(clinkd.model.parameters()).dtype == torch.bfloat16


def test_bad_settings_are_refused(folder) -> None:
    with pytest.raises(ValueError, match="dtype"):
        load_model(_settings(folder, dtype="float8"))
    with pytest.raises(ValueError, match="min_pixels"):
        load_model(LoadSettings(str(folder), min_pixels=10_000, max_pixels=5_000))


def test_cuda_without_gpu_is_a_clear_error(folder, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # what a machine without a GPU says
    with pytest.raises(ClinKDError, match="no CUDA GPU"):
        load_model(_settings(folder, device="cuda"))


@pytest.mark.parametrize("mode", ["8bit", "4bit"])
def test_quantization_on_the_cpu_says_why(folder, mode: str) -> None:
    with pytest.raises(QuantizationUnavailable) as err:
        load_model(_settings(folder, quantization=mode))
    message = str(err.value)
    assert mode in message and "CUDA GPU" in message
    if importlib_missing("bitsandbytes"):
        assert "pip install bitsandbytes" in message


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


def test_unknown_quantization_is_refused(folder) -> None:
    with pytest.raises(QuantizationUnavailable, match="one of"):
        load_model(_settings(folder, quantization="3bit"))


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_model(LoadSettings(str(tmp_path / "nope")))


def test_empty_folder_lists_everything_missing(tmp_path) -> None:
    with pytest.raises(ModelFolderError) as err:
        load_model(LoadSettings(str(tmp_path)))
    message = str(err.value)
    for item in ("config.json", "safetensors", "tokenizer.json", "preprocessor_config.json", "Qwen2-VL-2B-Instruct"):
        assert item in message


def test_folder_without_weights_names_only_the_weights(folder, tmp_path) -> None:
    copy = tmp_path / "no-weights"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelFolderError) as err:
        load_model(_settings(copy))
    assert "model weights" in str(err.value)
    assert "tokenizer.json" not in str(err.value).split("missing:")[1].split(". Point")[0]


def test_other_model_type_is_refused(folder, tmp_path) -> None:
    copy = shutil.copytree(folder, tmp_path / "llava")
    config = json.loads((copy / "config.json").read_text())
    config["model_type"] = "llava"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="model_type 'llava'"):
        load_model(_settings(copy))


def test_remote_code_is_never_run(folder, tmp_path) -> None:
    copy = shutil.copytree(folder, tmp_path / "remote")
    marker = tmp_path / "remote-code-ran"
    (copy / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit('ran')\n")
    config = json.loads((copy / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.Evil", "AutoConfig": "evil.EvilConfig"}
    (copy / "config.json").write_text(json.dumps(config))
    clinkd = load_model(_settings(copy))
    assert type(clinkd.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert not marker.exists()


def test_torch_weight_files_load_with_weights_only(folder, tmp_path) -> None:
    copy = shutil.copytree(folder, tmp_path / "bin", ignore=shutil.ignore_patterns("*.safetensors"))
    reference = load_model(_settings(folder))
    torch.save(reference.model.state_dict(), copy / "pytorch_model.bin")
    clinkd = load_model(_settings(copy))
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(clinkd.model.state_dict()[name], tensor), name


def test_chat_template_is_the_instruct_one_and_has_a_fallback(folder, tmp_path) -> None:
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Where?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with_template = load_model(_settings(folder))
    render = lambda clinkd: clinkd.processor.apply_chat_template(  # noqa: E731
        chat_messages("Where?"), add_generation_prompt=True, tokenize=False
    )
    assert render(with_template) == expected
    copy = shutil.copytree(folder, tmp_path / "no-template", ignore=shutil.ignore_patterns("chat_template*"))
    assert render(load_model(_settings(copy))) == expected


def test_tiny_tokenizer_has_every_qwen2vl_special_token_in_role(folder) -> None:
    tokenizer = load_model(_settings(folder)).processor.tokenizer
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS) and tokenizer.unk_token_id not in ids[1:]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    # special tokens are single tokens and survive decoding
    text = "<|box_start|>(1,2),(3,4)<|box_end|>"
    encoded = tokenizer(text, add_special_tokens=False).input_ids
    assert encoded[0] == tokenizer.convert_tokens_to_ids("<|box_start|>")
    assert tokenizer.decode(encoded, skip_special_tokens=False) == text
