"""A tiny random Qwen2-VL checkpoint for tests: real config, tokenizer, processor and weights files.

Why: tests must drive the production loader, prompt builder and generation without downloads.
The checkpoint is built with the same classes a real one uses (Qwen2VLConfig, a byte-level BPE
Qwen2 tokenizer trained here with the ``tokenizers`` library holding every Qwen2-VL special token
in its real role, the Qwen2-VL image and video processors, the Instruct chat template) and saved
as safetensors, so ``engine.clinkd.load_model`` reads it exactly as it reads Qwen2-VL-2B. Its
answers are random: tests assert structure and behaviour, never words.

Reused by the GUI tests: call ``build_tiny_qwen2vl(folder)`` once per session.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",  # pad, and a second end-of-text id
    "<|im_start|>",
    "<|im_end|>",  # eos of the Instruct models
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

_CORPUS = (
    "You are a helpful assistant.",
    "Where is the left lung located in the image?",
    "The left lung is located at (123,456),(789,1000).",
    "What is located at the region? Pneumothorax.",
    "Can you describe the content within the region?",
    "What can you interpret from the overall image?",
    "The CT image in the coronal plane shows the liver, the heart, the spine and both kidneys.",
    "0123456789 (),.?!:;-",
)

TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 112 * 112
"""Pixel budget to load the tiny model with: 4 to 16 image tokens keep the tests fast."""


def _train_tokenizer() -> object:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(_CORPUS) * 4, trainer)
    model = json.loads(bpe.to_str())["model"]
    return Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) for m in model["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        errors="replace",
        model_max_length=32768,
    )


# The Instruct checkpoints' generation_config: sampling flags that amount to greedy.
INSTRUCT_SAMPLING = {"do_sample": True, "temperature": 0.1, "top_k": 1, "top_p": 0.001}
# Flags that really sample (transformers' defaults with do_sample on), as some fine-tunes ship.
REAL_SAMPLING = {"do_sample": True, "temperature": 1.0, "top_k": 50, "top_p": 0.9}


def build_tiny_qwen2vl(
    folder: str | Path, *, seed: int = 0, mcg_rope: bool | dict | None = None, sampling: dict | None = None
) -> Path:
    """Write a tiny random Qwen2-VL-Instruct-shaped checkpoint into ``folder`` and return it.

    ``mcg_rope`` is written into config.json as the MCG-RoPE flag (a fine-tune trained with it);
    ``sampling`` replaces the generation_config's sampling flags (default INSTRUCT_SAMPLING).
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from engine.clinkd.prompts import QWEN2VL_CHAT_TEMPLATE

    folder = Path(folder)
    tokenizer = _train_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    pad, eos = ids["<|endoftext|>"], ids["<|im_end|>"]
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            # head_dim 16 -> 8 rotary frequencies split (t, h, w) like the real [16, 24, 24]
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": pad,
            "eos_token_id": eos,
            "pad_token_id": pad,
        },
        vision_config={
            "depth": 1,
            "embed_dim": 16,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=pad,
        pad_token_id=pad,
        eos_token_id=[eos, pad],
        repetition_penalty=1.05,
        **(INSTRUCT_SAMPLING if sampling is None else sampling),
    )
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2VL_CHAT_TEMPLATE,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if mcg_rope is not None:
        config_path = folder / "config.json"
        saved = json.loads(config_path.read_text())
        saved["mcg_rope"] = mcg_rope
        config_path.write_text(json.dumps(saved, indent=2))
    return folder


_BUILT: dict[str, Path] = {}


def tiny_checkpoint(tmp_path_factory: object, name: str = "tiny-qwen2vl", **options: object) -> Path:
    """Build the named tiny checkpoint once per test session (cached across test modules).

    ``tmp_path_factory`` is pytest's session fixture; ``options`` go to build_tiny_qwen2vl.
    """
    if name not in _BUILT:
        _BUILT[name] = build_tiny_qwen2vl(tmp_path_factory.mktemp(name), **options)
    return _BUILT[name]
