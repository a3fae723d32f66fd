"""Tiny random checkpoints of the other grounded families: Qwen2.5-VL, Qwen3-VL and Gemma 3 (MedGemma).

Why: every family must load through the production loader and answer through the same
generation code as ClinKD's Qwen2-VL, without downloads. Each is built from the family's real
config, model and processor classes (``Qwen2_5_VLConfig`` / ``Qwen3VLConfig`` / ``Gemma3Config``
with a tiny SigLIP vision tower) and saved as safetensors with a tokenizer and a chat template, so
``engine.clinkd.load_model`` reads it exactly as it reads a download. Answers are random: tests
assert structure and behaviour, never words.
"""

from __future__ import annotations

from pathlib import Path

from tests.engine.tiny_qwen import (
    _CORPUS,
    INSTRUCT_SAMPLING,
    SPECIAL_TOKENS,
    TINY_MAX_PIXELS,
    TINY_MIN_PIXELS,
    _train_tokenizer,
)

_QWEN_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 4096,
}


def _qwen_ids(tokenizer: object) -> dict[str, int]:
    return {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}


def _save(model: object, processor: object, folder: Path, pad: int, eos: int) -> Path:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=pad, pad_token_id=pad, eos_token_id=[eos, pad], repetition_penalty=1.05, **INSTRUCT_SAMPLING
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_qwen25vl(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny random Qwen2.5-VL-Instruct-shaped checkpoint (windowed vision tower, 14-pixel patches)."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from engine.clinkd.prompts import QWEN2VL_CHAT_TEMPLATE

    tokenizer = _train_tokenizer()
    ids = _qwen_ids(tokenizer)
    pad, eos = ids["<|endoftext|>"], ids["<|im_end|>"]
    config = Qwen2_5_VLConfig(
        text_config={
            **_QWEN_TEXT,
            "vocab_size": len(tokenizer),
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": pad,
            "eos_token_id": eos,
            "pad_token_id": pad,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": 32,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2VL_CHAT_TEMPLATE,
    )
    return _save(model, processor, Path(folder), pad, eos)


def build_tiny_qwen3vl(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny random Qwen3-VL-Instruct-shaped checkpoint (16-pixel patches, one deepstack layer)."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    from engine.clinkd.prompts import QWEN2VL_CHAT_TEMPLATE

    tokenizer = _train_tokenizer()
    ids = _qwen_ids(tokenizer)
    pad, eos = ids["<|endoftext|>"], ids["<|im_end|>"]
    config = Qwen3VLConfig(
        text_config={
            **_QWEN_TEXT,
            "head_dim": 16,
            "vocab_size": len(tokenizer),
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
                "rope_theta": 10000.0,
            },
            "bos_token_id": pad,
            "eos_token_id": eos,
            "pad_token_id": pad,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": 32,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=64 * 64, max_pixels=128 * 128, patch_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3
        ),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=QWEN2VL_CHAT_TEMPLATE,
    )
    return _save(model, processor, Path(folder), pad, eos)


GEMMA_SPECIAL = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>")
GEMMA_IMAGE = ("<start_of_image>", "<end_of_image>", "<image_soft_token>")

# Gemma 3's chat template, shortened to what a one-image conversation needs: the system prompt
# goes in front of the first user turn, the image is <start_of_image>, turns end <end_of_turn>.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% set prefix = namespace(text='') %}{% set loop_messages = messages %}"
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% if messages[0]['content'] is string %}{% set prefix.text = messages[0]['content'] + '\n\n' %}"
    "{% else %}{% set prefix.text = messages[0]['content'][0]['text'] + '\n\n' %}{% endif %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{% if loop.first %}{{ prefix.text }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _gemma_tokenizer() -> object:
    import json

    from tokenizers import Tokenizer, models, normalizers, trainers
    from transformers import GemmaTokenizer

    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    bpe = Tokenizer(models.BPE(byte_fallback=True))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    trainer = trainers.BpeTrainer(
        vocab_size=700, special_tokens=[*GEMMA_SPECIAL, *GEMMA_IMAGE, *byte_tokens], show_progress=False
    )
    bpe.train_from_iterator(list(_CORPUS) * 4, trainer)
    model = json.loads(bpe.to_str())["model"]
    return GemmaTokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) for m in model["merges"]],
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>", *GEMMA_IMAGE],
        extra_special_tokens={"boi_token": GEMMA_IMAGE[0], "eoi_token": GEMMA_IMAGE[1], "image_token": GEMMA_IMAGE[2]},
        model_max_length=8192,
    )


def build_tiny_gemma3(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny random Gemma 3 (MedGemma-shaped) checkpoint: SigLIP tower of 28-pixel images, 4 image tokens."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    tokenizer = _gemma_tokenizer()
    token = tokenizer.convert_tokens_to_ids
    pad, eos, end_of_turn = token("<pad>"), token("<eos>"), token("<end_of_turn>")
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "sliding_window": 64,
            "bos_token_id": token("<bos>"),
            "eos_token_id": [eos, end_of_turn],
            "pad_token_id": pad,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
            "vision_use_head": False,
        },
        mm_tokens_per_image=4,
        boi_token_index=token(GEMMA_IMAGE[0]),
        eoi_token_index=token(GEMMA_IMAGE[1]),
        image_token_index=token(GEMMA_IMAGE[2]),
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": 28, "width": 28}),
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=4,
    )
    from transformers import GenerationConfig

    folder = Path(folder)
    model.generation_config = GenerationConfig(
        bos_token_id=token("<bos>"), pad_token_id=pad, eos_token_id=[eos, end_of_turn], **INSTRUCT_SAMPLING
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


BUILDERS = {
    "qwen2_5_vl": build_tiny_qwen25vl,
    "qwen3_vl": build_tiny_qwen3vl,
    "gemma3": build_tiny_gemma3,
}
"""config.json model_type -> the tiny builder of that family."""

_BUILT: dict[str, Path] = {}


def tiny_family_checkpoint(tmp_path_factory: object, model_type: str) -> Path:
    """Build the tiny checkpoint of ``model_type`` once per test session."""
    if model_type not in _BUILT:
        _BUILT[model_type] = BUILDERS[model_type](tmp_path_factory.mktemp(f"tiny-{model_type}"))
    return _BUILT[model_type]
