"""MCG-RoPE: the released ClinKD positions, equality with transformers' at gap 1, per-instance patch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.clinkd import (
    AskRequest,
    GenerationSettings,
    LoadSettings,
    RopeGaps,
    Task,
    ask,
    ask_batch,
    chat_messages,
    install_mcg_rope,
    installed_gaps,
    load_model,
    mcg_positions,
    mcg_rope_index,
)
from engine.clinkd.rope import IMAGE, TEXT
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory):
    return tiny_checkpoint(tmp_path_factory)


def _load(folder, **options):
    return load_model(
        LoadSettings(str(folder), device="cpu", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS, **options)
    )


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _inputs(clinkd, questions_and_images):
    processor = clinkd.processor
    texts = [
        processor.apply_chat_template(chat_messages(q), add_generation_prompt=True, tokenize=False)
        for q, _ in questions_and_images
    ]
    return processor(text=texts, images=[img for _, img in questions_and_images], return_tensors="pt", padding=True)


# ------------------------------------------------------------------ the positions themselves

# The brief's worked example: 2 text tokens + <|vision_start|>, a 2x2 merged image, 3 text tokens.
EXAMPLE = [(TEXT, 3), (IMAGE, (1, 2, 2)), (TEXT, 3)]


def test_gap_one_is_vanilla_qwen2vl() -> None:
    positions = mcg_positions(EXAMPLE, RopeGaps(1, 1))
    assert positions.tolist() == [
        [0, 1, 2, 3, 3, 3, 3, 5, 6, 7],
        [0, 1, 2, 3, 3, 4, 4, 5, 6, 7],
        [0, 1, 2, 3, 4, 3, 4, 5, 6, 7],
    ]


def test_default_gaps_reproduce_the_released_clinkd_rows() -> None:
    positions = mcg_positions(EXAMPLE, RopeGaps())
    assert positions.tolist() == [
        [0, 1, 2, 4, 4, 4, 4, 7, 8, 9],
        [0, 1, 2, 4, 4, 5, 5, 7, 8, 9],
        [0, 1, 2, 4, 5, 4, 5, 7, 8, 9],
    ]


def test_gaps_in_and_out_are_independent() -> None:
    positions = mcg_positions(EXAMPLE, RopeGaps(gap_in=3, gap_out=5))
    assert positions[:, 3].tolist() == [5, 5, 5]  # image starts at 2 + 3
    assert positions[:, 7].tolist() == [11, 11, 11]  # text resumes at image max 6 + 5


def test_gaps_below_one_are_rejected() -> None:
    with pytest.raises(ValueError, match="rope gaps must be >= 1"):
        RopeGaps(0, 2)


def test_rope_index_handles_padding_and_several_rows() -> None:
    # row 0 left-padded by two; row 1 full; images consumed in order across the batch
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 1, 1, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9])
    grids = torch.tensor([[1, 4, 4], [1, 4, 6]])
    positions, deltas = mcg_rope_index(
        torch.zeros_like(types), types, grids, mask, image_token_id=99, spatial_merge_size=2, gaps=RopeGaps()
    )
    assert positions[:, 0, :2].tolist() == [[0, 0]] * 3
    assert positions[0, 0, 2:].tolist() == [0, 1, 3, 3, 3, 3, 6]
    assert positions[2, 1].tolist() == [0, 1, 3, 4, 5, 3, 4, 5, 7]
    assert deltas.tolist() == [[7 - 7], [8 - 9]]


def test_video_segments_are_refused() -> None:
    with pytest.raises(ValueError, match="video"):
        mcg_positions([(TEXT, 2), (2, (2, 2, 2))], RopeGaps())


# ------------------------------------------------------------------ against transformers' own code


def test_gap_one_equals_transformers_on_prompts_images_and_a_padded_batch(folder) -> None:
    clinkd = _load(folder)
    owner = clinkd.model.model
    stock = type(owner).get_rope_index
    cases = [
        [("Where is the left lung located in the image?", _image(64, 96, 0))],
        [("?", _image(200, 57, 1))],
        # a padded batch: different question lengths and image sizes
        [
            ("What can you interpret from the overall image?", _image(120, 80, 2)),
            ("Hi", _image(56, 56, 3)),
            ("Can you describe the content within the <|box_start|>(1,2),(3,4)<|box_end|>?", _image(90, 140, 4)),
        ],
    ]
    for case in cases:
        inputs = _inputs(clinkd, case)
        kwargs = {k: inputs[k] for k in ("mm_token_type_ids", "image_grid_thw", "attention_mask")}
        want_pos, want_delta = stock(owner, inputs["input_ids"], **kwargs)
        got_pos, got_delta = mcg_rope_index(
            inputs["input_ids"],
            image_token_id=clinkd.model.config.image_token_id,
            spatial_merge_size=2,
            gaps=RopeGaps(1, 1),
            **kwargs,
        )
        mask = inputs["attention_mask"].bool()
        assert torch.equal(got_pos[:, mask], want_pos[:, mask])
        assert torch.equal(got_delta.reshape(-1), want_delta.reshape(-1))
        if len(case) > 1:
            assert (~mask).any(), "the batch case must actually be padded"


def test_patch_is_per_instance_and_used_by_generate(folder) -> None:
    stock = _load(folder)
    patched = _load(folder)
    install_mcg_rope(patched.model, RopeGaps(1, 1))
    assert installed_gaps(patched.model) == RopeGaps(1, 1) and installed_gaps(stock.model) is None
    assert "get_rope_index" not in vars(stock.model.model)  # the class is untouched

    request = AskRequest(_image(70, 90, 5), "left lung", Task.VG)
    settings = GenerationSettings(max_new_tokens=12)
    assert ask(patched, request, settings).raw_text == ask(stock, request, settings).raw_text

    install_mcg_rope(patched.model, RopeGaps(2, 2))
    inputs = _inputs(stock, [(request.question, request.image)])
    with torch.inference_mode():
        logits_stock = stock.model(**inputs).logits
        logits_mcg = patched.model(**inputs).logits
    assert not torch.allclose(logits_stock, logits_mcg), "MCG positions must reach the forward pass"


def test_mcg_batches_larger_than_one_generate_like_single_requests(folder) -> None:
    clinkd = _load(folder, mcg_rope=True)
    assert clinkd.info.mcg_rope == RopeGaps(2, 2)
    requests = [
        AskRequest(_image(60, 60, 6), "left lung", Task.VG),
        AskRequest(_image(100, 70, 7), "", Task.MIA),
    ]
    settings = GenerationSettings(max_new_tokens=10)
    batch = ask_batch(clinkd, requests, settings)
    singles = [ask(clinkd, r, settings) for r in requests]
    assert [b.raw_text for b in batch] == [s.raw_text for s in singles]


def test_checkpoint_flag_and_settings_choose_the_gaps(tmp_path_factory: pytest.TempPathFactory, folder) -> None:
    flagged = tiny_checkpoint(tmp_path_factory, "tiny-mcg", mcg_rope={"gap_in": 2, "gap_out": 3})
    assert _load(flagged).info.mcg_rope == RopeGaps(2, 3)
    assert _load(flagged, mcg_rope=False).info.mcg_rope is None
    assert _load(flagged, rope_gaps=RopeGaps(4, 4)).info.mcg_rope == RopeGaps(4, 4)
    assert _load(folder).info.mcg_rope is None  # stock Qwen2-VL: off
    assert _load(folder, mcg_rope=True).info.mcg_rope == RopeGaps(2, 2)  # the released constants
