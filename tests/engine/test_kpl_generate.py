"""Knowledge generation with a local causal LM: parsing, provenance, and the run through a tiny
random Llama saved to disk and loaded by the real loader (its words are noise: structure only)."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import pytest
import torch

from cli import kpl as kpl_cli
from engine.kpl import Cancelled
from engine.kpl.generate import (
    PAPER_PROMPT,
    GeneratedReply,
    LanguageModelError,
    build_knowledge,
    generate_replies,
    load_language_model,
    parse_feature_list,
)
from engine.kpl.knowledge import KnowledgeError, load_knowledge

REPLY = """Sure! Here are useful visual features for distinguishing 'parasitized' cells:

1. A purple ring inside the cell.
2) **Dark chromatin dot**
3. Brown pigment granules
 - 4. a purple ring inside the cell
5.   Enlarged cell with stippling

These features help."""

VOCAB = [
    "<unk>",
    "<pad>",
    "<s>",
    "</s>",
    "1.",
    "2.",
    "a",
    "dark",
    "round",
    "spot",
    "ring",
    "purple",
    "cell",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("lm") / "tiny-llama"
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_numbered_lists_are_parsed_cleaned_and_deduplicated():
    assert parse_feature_list(REPLY) == [
        "A purple ring inside the cell",
        "Dark chromatin dot",
        "Brown pigment granules",
        "Enlarged cell with stippling",
    ]
    assert parse_feature_list("no list here\njust text") == []


def test_build_knowledge_keeps_the_raw_replies_in_provenance(tmp_path):
    replies = [
        GeneratedReply("parasitized", PAPER_PROMPT.format(class_name="parasitized"), REPLY),
        GeneratedReply("uninfected", "q", "1. Uniform pink colour\n2. Smooth outline"),
    ]
    kb = build_knowledge("cells", "Malaria", "microscopy", replies, model_name="my-llm", settings={"temperature": 0})
    assert kb.class_names == ("parasitized", "uninfected")
    assert kb.classes[1].descriptions == ("Uniform pink colour", "Smooth outline")
    assert kb.provenance["raw_replies"]["parasitized"] == REPLY
    assert kb.provenance["model"] == "my-llm" and "numbered list" in kb.provenance["prompt"]
    bad = [replies[0], GeneratedReply("uninfected", "q", "I cannot help with that.")]
    with pytest.raises(KnowledgeError, match="reply for class 'uninfected' holds no numbered list: 'I cannot"):
        build_knowledge("cells", "Malaria", "microscopy", bad, model_name="my-llm")


def test_a_tiny_random_llm_runs_the_paper_prompt(tiny_lm):
    model, tokenizer = load_language_model(tiny_lm, "cpu")
    assert not model.training
    seen: list[tuple[str, int, int]] = []
    replies = generate_replies(
        model, tokenizer, ["parasitized", "uninfected"], max_new_tokens=12, progress=lambda *a: seen.append(a)
    )
    assert [r.class_name for r in replies] == ["parasitized", "uninfected"]
    assert replies[0].prompt == PAPER_PROMPT.format(class_name="parasitized")
    assert "'parasitized'" in replies[0].prompt
    for r in replies:
        assert 0 < len(tokenizer(r.reply, add_special_tokens=False)["input_ids"]) <= 12
    again = generate_replies(model, tokenizer, ["parasitized", "uninfected"], max_new_tokens=12)
    assert [r.reply for r in again] == [r.reply for r in replies]  # greedy: reproducible
    assert seen == [("generating", 0, 2), ("generating", 1, 2), ("generating", 2, 2)]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        generate_replies(model, tokenizer, ["x", "y"], cancel=cancel)


def test_loader_errors(tmp_path):
    with pytest.raises(LanguageModelError, match="not a transformers model folder"):
        load_language_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(LanguageModelError, match="could not load a causal language model"):
        load_language_model(tmp_path, "cpu")


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    kpl_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_with_a_tiny_llm_saves_replies_when_no_list_comes_back(tiny_lm, tmp_path, capsys):
    out = tmp_path / "cells.json"
    code = cli(
        [
            "generate-knowledge",
            "--llm",
            str(tiny_lm),
            "--out",
            str(out),
            "--classes-from",
            "malaria-cells",
            "--max-new-tokens",
            "8",
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    assert "holds no numbered list" in capsys.readouterr().err
    assert not out.exists()
    raw = json.loads(out.with_suffix(".replies.json").read_text())
    assert list(raw) == ["parasitized", "uninfected"]


def test_cli_writes_a_valid_knowledge_base(tiny_lm, tmp_path, capsys, monkeypatch):
    def canned(model, tokenizer, classes, **kwargs):
        return [GeneratedReply(c, "prompt", f"1. {c} sign one\n2. {c} sign two") for c in classes]

    monkeypatch.setattr("engine.kpl.generate.generate_replies", canned)
    out = tmp_path / "my-task.json"
    assert (
        cli(
            [
                "generate-knowledge",
                "--llm",
                str(tiny_lm),
                "--out",
                str(out),
                "--class",
                "glioma",
                "--class",
                "no tumor",
                "--modality",
                "MRI",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    kb = load_knowledge(out)
    assert kb.task == "my-task" and kb.modality == "MRI"
    assert kb.classes[1].descriptions == ("no tumor sign one", "no tumor sign two")
    assert kb.provenance["model"] == "tiny-llama"
