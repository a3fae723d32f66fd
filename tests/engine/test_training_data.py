"""Med-GRIT reading, chat encoding with label masking, batching, and the KD / curriculum losses.

Also home of ``make_medgrit``: a tiny Med-GRIT-format data set (synthetic chest X-ray and CT
phantoms drawn with numpy / Pillow, multi-turn conversations in BiRD's legacy ``<box>`` markup),
reused by the other training tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from engine.grounding import BOX_END, BOX_START, pixels_to_grid
from engine.training import (
    IGNORE_INDEX,
    ChatCollator,
    ChatDataset,
    ChatEncoder,
    TrainingDataError,
    assistant_labels,
    chat_text,
    clinkd_loss,
    confidence_margins,
    conversation_record,
    curriculum,
    forward_kl,
    load_rgb,
    read_conversations,
    write_records,
)
from engine.training.data import Conversation, Turn

# ---------------------------------------------------------------- tiny Med-GRIT data set


def _legacy_box(box: tuple[float, float, float, float], width: int, height: int) -> str:
    x1, y1, x2, y2 = pixels_to_grid(box, width, height)
    return f"<box>({x1},{y1}),({x2},{y2})</box>"


def _xray(rng: np.random.Generator) -> tuple[Image.Image, dict[str, tuple[int, int, int, int]]]:
    """A chest X-ray phantom: thorax, two dark lungs, a bright spine; returns the organ boxes."""
    width, height = 96, 112
    image = Image.new("L", (width, height), 10)
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 10, 88, 108), fill=120)
    shift = int(rng.integers(-3, 4))
    boxes = {
        "right lung": (16 + shift, 22, 44 + shift, 92),  # patient's right is the image's left
        "left lung": (52 + shift, 22, 80 + shift, 92),
        "spine": (45, 12, 51, 106),
    }
    draw.ellipse(boxes["right lung"], fill=45)
    draw.ellipse(boxes["left lung"], fill=45)
    draw.rectangle(boxes["spine"], fill=225)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.2)), dtype=np.float64)
    pixels = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert("RGB"), boxes


def _ct(rng: np.random.Generator) -> tuple[Image.Image, dict[str, tuple[int, int, int, int]]]:
    """An abdominal CT phantom: body, liver, two kidneys, vertebra; returns the organ boxes."""
    width, height = 104, 96
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 8, 98, 90), fill=95)
    shift = int(rng.integers(-2, 3))
    boxes = {
        "liver": (14, 20 + shift, 50, 56 + shift),
        "right kidney": (28, 58, 42, 74),
        "left kidney": (62, 58, 76, 74),
        "vertebra": (46, 62, 58, 76),
    }
    draw.ellipse(boxes["liver"], fill=150)
    draw.ellipse(boxes["right kidney"], fill=170)
    draw.ellipse(boxes["left kidney"], fill=170)
    draw.ellipse(boxes["vertebra"], fill=250)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64)
    pixels = np.clip(pixels + rng.normal(0, 5, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert("RGB"), boxes


def make_medgrit(folder: Path, n: int = 4, seed: int = 0, layout: str = "bird") -> Path:
    """Write ``n`` images and a Med-GRIT JSON file in ``folder``; return the JSON path.

    Even samples are X-rays, odd ones CTs, named as SA-Med2D names them. Each conversation has
    a VG, a ROC and an MIA turn, questions carrying BiRD's ``<img>`` debris and legacy boxes.
    ``layout``: "bird" ([question, answer] pairs) or "clinkd" ({"from", "value"} turns).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        xray = i % 2 == 0
        image, boxes = _xray(rng) if xray else _ct(rng)
        sample_id = f"x_00--synthetic--case_{i:04d}--x_0000" if xray else f"ct_00--synthetic--case_{i:04d}--z_0040"
        image.save(folder / f"{sample_id}.png")
        width, height = image.size
        target, other = ("left lung", "spine") if xray else ("liver", "left kidney")
        pairs = [
            (
                f"Picture 1: <img>{sample_id}.png</img>\nWhere is the {target} located in the image?",
                f"The {target} is located at {_legacy_box(boxes[target], width, height)}.",
            ),
            (
                f"What anatomical structure is present at the {_legacy_box(boxes[other], width, height)}?",
                f"{other.capitalize()}.",
            ),
            (
                "What can you interpret from the overall image?",
                "The X-ray image shows both lungs and the spine."
                if xray
                else "The CT image shows the liver and both kidneys.",
            ),
        ]
        if layout == "bird":
            records.append({"id": sample_id, "conversations": [list(p) for p in pairs]})
        else:
            turns = [{"from": role, "value": text} for q, a in pairs for role, text in (("human", q), ("gpt", a))]
            records.append({"id": sample_id, "conversations": turns})
    path = folder / "train.json"
    path.write_text(json.dumps(records, indent=1))
    return path


# ---------------------------------------------------------------- reading


def test_bird_and_clinkd_layouts_read_to_the_same_clean_turns(tmp_path: Path) -> None:
    bird = read_conversations([make_medgrit(tmp_path / "bird", n=2)])
    clinkd = read_conversations([make_medgrit(tmp_path / "clinkd", n=2, layout="clinkd")])
    assert [c.turns for c in bird.conversations] == [c.turns for c in clinkd.conversations]
    first = bird.conversations[0]
    assert first.modality == "x" and bird.conversations[1].modality == "ct"
    assert first.image == tmp_path / "bird" / f"{first.sample_id}.png"
    vg = first.turns[0]
    assert vg.question == "Where is the left lung located in the image?"  # <img> and Picture 1: gone
    assert vg.answer.startswith("The left lung is located at " + BOX_START) and BOX_END in vg.answer
    assert "<box>" not in first.turns[1].question and BOX_START in first.turns[1].question
    assert bird.turns == 6 and bird.skipped == ()


def test_images_reach_the_model_as_stored_and_bad_files_say_so(tmp_path: Path) -> None:
    conversation = read_conversations([make_medgrit(tmp_path, n=1)]).conversations[0]
    rgb = load_rgb(conversation.image)  # the display pipeline: an 8-bit PNG exactly as stored
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, np.asarray(Image.open(conversation.image).convert("RGB")))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(TrainingDataError, match=r"broken\.png"):
        load_rgb(tmp_path / "broken.png")


def test_sharegpt_layout_chatml_debris_and_skipped_records(tmp_path: Path) -> None:
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    records = [
        {
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},  # skipped
                {"role": "user", "content": "<image>What is located at <box>(1,2),(300,400)</box>?"},
                {"role": "assistant", "content": "Sacrum.<|im_end|>"},
            ],
            "images": ["a.png"],
        },
        {"id": "a", "conversations": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]},
        {"id": "missing", "conversations": [["q", "a"]]},  # missing.png does not exist
        {"id": "a", "conversations": [{"from": "human", "value": "q"}]},  # no answer
        {"id": "a", "conversations": [["<|im_start|>user\nWhat?<|im_end|>", "<|im_end|>"]]},  # empty answer
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    data = read_conversations([path])
    assert len(data.conversations) == 2 and len(data.skipped) == 3
    assert data.conversations[0].turns == (Turn(f"What is located at {BOX_START}(1,2),(300,400){BOX_END}?", "Sacrum."),)
    assert data.conversations[1].turns == (Turn("Q?", "A."),) and data.conversations[1].image == tmp_path / "a.png"
    assert any("missing.png not found" in s for s in data.skipped)
    with pytest.raises(TrainingDataError, match="No usable training sample"):
        read_conversations([path], max_samples=0)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(TrainingDataError, match="JSON list"):
        read_conversations([tmp_path / "bad.json"])


def test_written_records_read_back_unchanged(tmp_path: Path) -> None:
    data = read_conversations([make_medgrit(tmp_path / "src", n=2)])
    out = tmp_path / "elsewhere" / "again.json"
    write_records(out, [conversation_record(c) for c in data.conversations])
    again = read_conversations([out])  # image paths are absolute: any image root works
    assert again.conversations == data.conversations


# ---------------------------------------------------------------- encoding and labels


def test_assistant_labels_pattern() -> None:
    # 1 = <|im_start|>, 2 = <|im_end|>, (7, 8) = "assistant\n", 9 = "user\n"
    ids = [1, 9, 5, 5, 2, 3, 1, 7, 8, 40, 41, 2, 3, 1, 9, 6, 2, 3, 1, 7, 8, 42, 2, 3]
    labels = assistant_labels(ids, 1, 2, (7, 8))
    assert [i for i, v in enumerate(labels) if v != IGNORE_INDEX] == [9, 10, 11, 21, 22]
    assert [labels[i] for i in (9, 10, 11, 21, 22)] == [40, 41, 2, 42, 2]
    # an answer cut by truncation is labelled up to the cut
    assert assistant_labels([1, 7, 8, 40, 41], 1, 2, (7, 8)) == [IGNORE_INDEX] * 3 + [40, 41]


@pytest.fixture(scope="module")
def tiny_processor(tmp_path_factory: pytest.TempPathFactory) -> object:
    from engine.clinkd import LoadSettings, load_model
    from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint

    folder = tiny_checkpoint(tmp_path_factory)
    settings = LoadSettings(str(folder), device="cpu", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    return load_model(settings).processor


def test_labels_cover_exactly_the_answers(tmp_path: Path, tiny_processor: object) -> None:
    conversation = read_conversations([make_medgrit(tmp_path, n=1)]).conversations[0]
    image_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    item = ChatEncoder(tiny_processor, image_id, max_length=512)(conversation)
    tokenizer = tiny_processor.tokenizer
    labels, ids = item["labels"], item["input_ids"]
    assert labels.shape == ids.shape and item["attention_mask"].sum() == len(ids)
    kept = labels != IGNORE_INDEX
    assert torch.equal(labels[kept], ids[kept])
    # the targets are the three answers, each followed by <|im_end|>, in order, and nothing else
    spans, start = [], None
    for i, k in enumerate([*kept.tolist(), False]):
        if k and start is None:
            start = i
        elif not k and start is not None:
            spans.append(tokenizer.decode(ids[start:i]))
            start = None
    assert spans == [f"{t.answer}<|im_end|>" for t in conversation.turns]
    # the image comes first: every image token precedes the first question's words
    text = chat_text(tiny_processor, conversation)
    assert text.index("<|vision_start|>") < text.index(conversation.turns[0].question)
    assert text.count("<|vision_start|>") == 1 and text.startswith("<|im_start|>system\nYou are a helpful assistant.")
    assert int((ids == image_id).sum()) == int(item["image_grid_thw"].prod() // 4)


def test_truncation_keeps_the_image_and_refuses_to_cut_it(tmp_path: Path, tiny_processor: object) -> None:
    conversation = read_conversations([make_medgrit(tmp_path, n=1)]).conversations[0]
    image_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    full = ChatEncoder(tiny_processor, image_id, max_length=512)(conversation)
    cut = ChatEncoder(tiny_processor, image_id, max_length=len(full["input_ids"]) - 10)(conversation)
    assert len(cut["input_ids"]) == len(full["input_ids"]) - 10
    assert torch.equal(cut["labels"], full["labels"][: len(cut["labels"])])
    assert torch.equal(cut["pixel_values"], full["pixel_values"])
    with pytest.raises(TrainingDataError, match="max_length"):
        ChatEncoder(tiny_processor, image_id, max_length=20)(conversation)


def test_collator_pads_right_and_masks_padding(tmp_path: Path, tiny_processor: object) -> None:
    conversations = read_conversations([make_medgrit(tmp_path, n=2)]).conversations
    long = conversations[0]
    short = Conversation(long.sample_id, long.image, long.turns[:1])
    image_id = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    encoder = ChatEncoder(tiny_processor, image_id, max_length=512)
    dataset = ChatDataset([long, short], encoder, weights=[1.5, 0.5])
    items = [dataset[0], dataset[1]]
    batch = ChatCollator(encoder.ids.pad)(items)
    n0, n1 = len(items[0]["input_ids"]), len(items[1]["input_ids"])
    assert n1 < n0 and batch["input_ids"].shape == (2, n0)
    assert batch["attention_mask"][1, n1:].sum() == 0 and batch["attention_mask"][1, :n1].all()
    assert (batch["labels"][1, n1:] == IGNORE_INDEX).all() and (batch["input_ids"][1, n1:] == encoder.ids.pad).all()
    assert batch["pixel_values"].shape[0] == items[0]["pixel_values"].shape[0] * 2
    assert batch["image_grid_thw"].shape == (2, 3)
    assert batch["sample_weight"].tolist() == [1.5, 0.5]


# ---------------------------------------------------------------- losses


def _hand_kl(student: list[float], teacher: list[float], temperature: float) -> float:
    def softmax(z: list[float]) -> list[float]:
        e = [math.exp(v / temperature) for v in z]
        return [v / sum(e) for v in e]

    p, q = softmax(teacher), softmax(student)
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))


def test_kd_loss_equals_a_hand_computation() -> None:
    # one row of 4 positions; labels target positions 2 and 3, so logits at 1 and 2 are scored
    student = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [9.0, 9.0, 9.0]]])
    teacher = torch.tensor([[[5.0, 5.0, 5.0, 0.0], [0.0, 1.0, 0.0, 7.0], [2.0, 0.0, 1.0, 7.0], [1.0, 1.0, 1.0, 1.0]]])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 0, 1]])
    rows = [([1.0, 0.0, -1.0], [0.0, 1.0, 0.0], 0), ([0.5, 2.0, 0.0], [2.0, 0.0, 1.0], 1)]  # teacher cut to 3
    kl = [_hand_kl(s, t, 0.5) for s, t, _ in rows]
    ce = [math.log(sum(math.exp(v) for v in s)) - s[target] for s, _, target in rows]
    parts = clinkd_loss(student, labels, teacher_logits=teacher)
    assert parts.tokens == 2
    assert parts.kl.item() == pytest.approx(sum(kl) / 2, rel=1e-5)
    assert parts.ce.item() == pytest.approx(sum(ce) / 2, rel=1e-5)
    assert parts.loss.item() == pytest.approx((0.5 * sum(kl) / 2 + sum(ce) / 2) / 1.5, rel=1e-5)
    summed = clinkd_loss(student, labels, teacher_logits=teacher, kd_reduction="sum", use_ce=False)
    assert summed.loss.item() == pytest.approx(sum(kl), rel=1e-5)
    alone = clinkd_loss(student, labels)
    assert alone.kl is None and alone.loss.item() == pytest.approx(sum(ce) / 2, rel=1e-5)
    weighted = clinkd_loss(student, labels, sample_weight=torch.tensor([2.0]))
    assert weighted.loss.item() == pytest.approx(sum(ce), rel=1e-5)
    assert forward_kl(student[0, 1:3], teacher[0, 1:3], 1.0).shape == (2,)
    with pytest.raises(ValueError, match="smaller"):
        forward_kl(teacher[0], student[0], 0.5)


def test_kd_loss_is_zero_for_a_matching_teacher_and_has_gradients() -> None:
    logits = torch.randn(2, 5, 7, requires_grad=True)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 1], [IGNORE_INDEX, 2, 2, IGNORE_INDEX, IGNORE_INDEX]])
    parts = clinkd_loss(logits, labels, teacher_logits=logits.detach(), use_ce=False)
    assert parts.loss.item() == pytest.approx(0.0, abs=1e-6)
    parts = clinkd_loss(logits, labels, teacher_logits=torch.randn(2, 5, 9))
    parts.loss.backward()
    assert logits.grad is not None and logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 1].abs().sum() > 0
    empty = clinkd_loss(logits, torch.full_like(labels, IGNORE_INDEX))
    assert empty.tokens == 0 and empty.loss.item() == 0.0


def test_confidence_margin_and_curriculum() -> None:
    sure = [20.0, 0.0, 0.0]
    torn = [1.0, 1.0, 0.0]
    logits = torch.tensor([[sure, sure, sure], [torn, torn, sure]])
    labels = torch.tensor([[IGNORE_INDEX, 0, 0], [IGNORE_INDEX, 0, 0]])
    margins = confidence_margins(logits, labels)  # positions 0 and 1 of each row are scored
    assert margins[0].item() == pytest.approx(1.0, abs=1e-6) and margins[1].item() == pytest.approx(0.0, abs=1e-6)
    order, weights = curriculum(np.array([0.2, 0.9, 0.5, 0.9]), "order")
    assert order == [1, 3, 2, 0] and weights is None
    order, weights = curriculum(np.array([0.2, 0.6]), "weight")
    assert order == [0, 1] and weights == pytest.approx([0.5, 1.5])
    assert curriculum(np.array([0.3, 0.1]), "none") == ([0, 1], None)
