"""Conversations -> model inputs with labels on the assistant turns only, and batches of them.

Why labels come from the token ids: the processor expands ``<|image_pad|>`` into one token per
merged patch, so character offsets of the rendered chat do not survive tokenization. Every
assistant turn in the Qwen2-VL template is ``<|im_start|>assistant\\n{answer}<|im_end|>``; the
answer tokens and the closing ``<|im_end|>`` (the model must learn to stop) are the targets,
everything else (system prompt, image, questions, role headers) is masked with -100. Special
tokens are split before byte-level BPE and the Qwen2 pre-tokenizer cuts "\\n" off the next word,
so "assistant\\n" tokenizes the same alone as in context.

The chat itself is built with engine.clinkd's ``chat_messages`` (system prompt, image first)
and the processor's chat template: training and inference prompts cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from engine.clinkd import chat_messages
from engine.training.data import Conversation, load_rgb
from engine.training.errors import TrainingDataError

IGNORE_INDEX = -100
"""Label of a token that is not a target (PyTorch's cross-entropy ignore_index)."""

ASSISTANT_HEADER = "assistant\n"


def chat_text(processor: object, conversation: Conversation) -> str:
    """The whole dialogue rendered by the chat template: system, image + first question, answers."""
    first, *rest = conversation.turns
    messages = [*chat_messages(first.question), {"role": "assistant", "content": first.answer}]
    for turn in rest:
        messages += [{"role": "user", "content": turn.question}, {"role": "assistant", "content": turn.answer}]
    return processor.apply_chat_template(messages, tokenize=False)


def assistant_labels(input_ids: Sequence[int], im_start: int, im_end: int, header: Sequence[int]) -> list[int]:
    """Labels equal to the ids inside assistant turns (answer + ``<|im_end|>``), -100 elsewhere."""
    ids = list(input_ids)
    header = list(header)
    labels = [IGNORE_INDEX] * len(ids)
    i = 0
    while i < len(ids):
        if ids[i] == im_start and ids[i + 1 : i + 1 + len(header)] == header:
            j = i + 1 + len(header)
            while j < len(ids) and ids[j] != im_end:
                labels[j] = ids[j]
                j += 1
            if j < len(ids):
                labels[j] = ids[j]
            i = j + 1
        else:
            i += 1
    return labels


@dataclass(frozen=True)
class TokenIds:
    """The ids the label mask needs, read once from the tokenizer."""

    im_start: int
    im_end: int
    header: tuple[int, ...]
    image: int
    pad: int

    @classmethod
    def of(cls, processor: object, image_token_id: int) -> TokenIds:
        tokenizer = processor.tokenizer
        im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else im_end
        header = tuple(tokenizer(ASSISTANT_HEADER, add_special_tokens=False)["input_ids"])
        return cls(im_start=im_start, im_end=im_end, header=header, image=image_token_id, pad=pad)


class ChatEncoder:
    """Encodes one conversation: processor inputs plus labels, cut to ``max_length`` tokens."""

    def __init__(self, processor: object, image_token_id: int, max_length: int) -> None:
        if max_length < 16:
            raise ValueError(f"max_length must be at least 16 tokens, got {max_length}")
        self.processor = processor
        self.ids = TokenIds.of(processor, image_token_id)
        self.max_length = max_length

    def __call__(self, conversation: Conversation) -> dict[str, torch.Tensor]:
        text = chat_text(self.processor, conversation)
        batch = self.processor(text=[text], images=[Image.fromarray(load_rgb(conversation.image))], return_tensors="pt")
        ids = batch["input_ids"][0]
        labels = torch.tensor(assistant_labels(ids.tolist(), self.ids.im_start, self.ids.im_end, self.ids.header))
        item = {key: value[0] for key, value in batch.items() if key not in ("pixel_values", "image_grid_thw")}
        item["labels"] = labels
        if len(ids) > self.max_length:
            image_positions = (ids == self.ids.image).nonzero()
            if len(image_positions) and int(image_positions.max()) >= self.max_length:
                raise TrainingDataError(
                    f"Sample {conversation.sample_id}: the prompt and image take "
                    f"{int(image_positions.max()) + 1} tokens, more than max_length={self.max_length}. "
                    "Raise max_length or lower max_pixels."
                )
            item = {key: value[: self.max_length] for key, value in item.items()}
        item["pixel_values"] = batch["pixel_values"]
        item["image_grid_thw"] = batch["image_grid_thw"]
        return item


class ChatDataset(torch.utils.data.Dataset):
    """Conversations encoded on access (images are read lazily: 240k samples do not fit in memory).

    ``weights`` (one per conversation) are carried as ``sample_weight`` for a weighted loss.
    """

    def __init__(
        self, conversations: Sequence[Conversation], encoder: ChatEncoder, weights: Sequence[float] | None = None
    ) -> None:
        if weights is not None and len(weights) != len(conversations):
            raise ValueError("one weight per conversation")
        self.conversations = list(conversations)
        self.encoder = encoder
        self.weights = None if weights is None else [float(w) for w in weights]

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.encoder(self.conversations[index])
        if self.weights is not None:
            item["sample_weight"] = torch.tensor(self.weights[index], dtype=torch.float32)
        return item


@dataclass(frozen=True)
class ChatCollator:
    """Right-pads a list of encoded samples into one batch; images are concatenated in order."""

    pad_token_id: int

    def __call__(self, items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        length = max(len(item["input_ids"]) for item in items)
        pad_values = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}
        batch: dict[str, torch.Tensor] = {}
        for key in ("input_ids", "attention_mask", "mm_token_type_ids", "labels"):
            if key not in items[0]:
                continue
            rows = [
                torch.nn.functional.pad(item[key], (0, length - len(item[key])), value=pad_values.get(key, 0))
                for item in items
            ]
            batch[key] = torch.stack(rows)
        batch["pixel_values"] = torch.cat([item["pixel_values"] for item in items])
        batch["image_grid_thw"] = torch.cat([item["image_grid_thw"] for item in items])
        if "sample_weight" in items[0]:
            batch["sample_weight"] = torch.stack([item["sample_weight"] for item in items])
        return batch
