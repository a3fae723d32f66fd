"""Build a knowledge base with a local instruction-tuned language model and the paper's prompt.

KPL's knowledge came from gpt-3.5-turbo asked, once per class, for "useful visual features"
as a numbered list. This runs the same prompt on a transformers causal LM from a local folder
(offline, no remote code), parses the numbered list and keeps every raw reply in the
provenance so a reader can check what the model actually said.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.clinkd.loader import no_progress_bars
from engine.kpl.knowledge import FORMAT, MAX_DESCRIPTION_CHARS, KnowledgeBase, KnowledgeError, parse_knowledge
from engine.kpl.progress import CancelFlag, ProgressFn, check_cancel, report

SYSTEM_PROMPT = "You are a helpful assistant."
PAPER_PROMPT = (
    "what are useful visual features for distinguishing '{class_name}' in an image. List as many features "
    "as possible, at least 50, Provide the features in a numbered list."
)
_ITEM = re.compile(r"^\s*(?:[-*]\s*)?\(?\d{1,3}[.)]\s+(.+?)\s*$")


class LanguageModelError(Exception):
    """The language model folder cannot be loaded; ``str(err)`` says why."""


@dataclass(frozen=True)
class GeneratedReply:
    class_name: str
    prompt: str
    reply: str


def parse_feature_list(reply: str) -> list[str]:
    """The items of a numbered list ("1. ...", "2) ..."), cleaned and de-duplicated, in order."""
    items: list[str] = []
    seen: set[str] = set()
    for line in reply.splitlines():
        match = _ITEM.match(line)
        if not match:
            continue
        text = match.group(1).replace("**", "").strip().rstrip(".").strip()
        key = text.casefold()
        if text and key not in seen and len(text) <= MAX_DESCRIPTION_CHARS:
            seen.add(key)
            items.append(text)
    return items


def load_language_model(folder: str | Path, device: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) from a local transformers folder; bf16 on GPU, fp32 on CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise LanguageModelError(f"{path} is not a transformers model folder (no config.json)")
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    try:
        with no_progress_bars():
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, trust_remote_code=False, dtype=dtype
            )
    except (OSError, ValueError, KeyError) as exc:
        raise LanguageModelError(f"could not load a causal language model from {path}: {exc}") from exc
    return model.to(dev).eval(), tokenizer


def _prompt_ids(tokenizer: Any, prompt: str) -> dict[str, torch.Tensor]:
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, return_tensors="pt", add_special_tokens=False)
    return tokenizer(f"{SYSTEM_PROMPT}\n\n{prompt}\n\n", return_tensors="pt")


def generate_replies(
    model: Any,
    tokenizer: Any,
    class_names: Sequence[str],
    *,
    max_new_tokens: int = 1024,
    temperature: float = 0.0,
    progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
) -> list[GeneratedReply]:
    """One reply per class to the paper's prompt; greedy unless ``temperature`` > 0."""
    replies = []
    device = next(model.parameters()).device
    for done, name in enumerate(class_names):
        check_cancel(cancel)
        report(progress, "generating", done, len(class_names))
        prompt = PAPER_PROMPT.format(class_name=name)
        inputs = {k: v.to(device) for k, v in _prompt_ids(tokenizer, prompt).items()}
        sampling: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            sampling["temperature"] = temperature
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                **sampling,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        replies.append(GeneratedReply(name, prompt, tokenizer.decode(new_tokens, skip_special_tokens=True)))
    report(progress, "generating", len(class_names), len(class_names))
    return replies


def build_knowledge(
    name: str,
    task: str,
    modality: str,
    replies: Sequence[GeneratedReply],
    *,
    model_name: str,
    settings: dict[str, Any] | None = None,
) -> KnowledgeBase:
    """A validated knowledge base from the replies; KnowledgeError names a class whose reply
    held no numbered list (the raw reply is in the message)."""
    classes = []
    for r in replies:
        features = parse_feature_list(r.reply)
        if not features:
            raise KnowledgeError(
                f"the language model's reply for class {r.class_name!r} holds no numbered list: {r.reply[:300]!r}"
            )
        classes.append({"name": r.class_name, "descriptions": features})
    provenance = {
        "source": f"generated by the local language model {model_name} with the KPL paper's prompt",
        "model": model_name,
        "system_prompt": SYSTEM_PROMPT,
        "prompt": PAPER_PROMPT,
        "date": _dt.date.today().isoformat(),
        "generation": settings or {},
        "review": "Machine-generated and not reviewed: check every description before relying on it.",
        "raw_replies": {r.class_name: r.reply for r in replies},
    }
    data = {"format": FORMAT, "task": task, "modality": modality, "classes": classes, "provenance": provenance}
    return parse_knowledge(data, name)
