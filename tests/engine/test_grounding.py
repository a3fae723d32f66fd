"""Box codec: pixels <-> Qwen2-VL text, and the tolerant answer parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.grounding import (
    GRID,
    GRID_FRAME,
    box_to_text,
    detect_dialect,
    grid_to_pixels,
    normalize_box_markup,
    parse_answer,
    pixels_to_grid,
)

# ---------------------------------------------------------------- pixels -> text


def test_box_to_text_uses_original_size_and_rounds_half_up() -> None:
    # 0.5 grid units round up: 1/2 px of a 1000 px wide image is grid 0.5 -> 1
    assert box_to_text((0.5, 0, 999.4, 250), 1000, 500) == "<|box_start|>(1,0),(999,500)<|box_end|>"


def test_box_to_text_orders_corners_and_clamps() -> None:
    text = box_to_text((600, 40, -20, 10), 300, 200)
    assert text == "<|box_start|>(0,50),(1000,200)<|box_end|>"


@pytest.mark.parametrize("size", [(0, 10), (10, -1)])
def test_box_to_text_rejects_empty_image(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        box_to_text((0, 0, 1, 1), *size)


def test_box_to_text_rejects_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        box_to_text((0, float("nan"), 1, 1), 10, 10)


odd_sizes = st.integers(min_value=1, max_value=4099).filter(lambda n: n % 2 == 1)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), width=odd_sizes, height=odd_sizes)
def test_round_trip_is_within_half_a_grid_cell(data: st.DataObject, width: int, height: int) -> None:
    xs = sorted(data.draw(st.lists(st.floats(0, width), min_size=2, max_size=2)))
    ys = sorted(data.draw(st.lists(st.floats(0, height), min_size=2, max_size=2)))
    box = (xs[0], ys[0], xs[1], ys[1])
    parsed = parse_answer(box_to_text(box, width, height), width, height)
    assert parsed.text == "" and parsed.issues == ()
    (back,) = parsed.boxes
    half_cell = (width / GRID / 2, height / GRID / 2)
    for got, want, tol in zip(back.pixels, box, half_cell * 2, strict=True):
        assert abs(got - want) <= tol * (1 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(grid=st.tuples(*[st.integers(0, GRID)] * 4), width=odd_sizes, height=odd_sizes)
def test_grid_round_trip_is_exact(grid: tuple[int, int, int, int], width: int, height: int) -> None:
    x1, y1, x2, y2 = grid
    ordered = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
    assert pixels_to_grid(grid_to_pixels(ordered, width, height), width, height) == ordered


# ---------------------------------------------------------------- text -> pixels


def test_parse_qwen2vl_box_with_phrase() -> None:
    answer = "The <|object_ref_start|>left lung<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|> is clear."
    parsed = parse_answer(answer, 2000, 1000)
    assert parsed.text == "The left lung is clear."
    (box,) = parsed.boxes
    assert box.pixels == (200.0, 200.0, 600.0, 400.0)
    assert box.grid == (100, 200, 300, 400)
    assert box.phrase == "left lung" and box.markup == "qwen2vl" and box.valid
    assert answer[box.span[0] : box.span[1]].startswith("<|box_start|>")


def test_parse_med_grit_box_with_spaces_and_swapped_corners() -> None:
    parsed = parse_answer("The hip left is located at the <box>( 587 ,217 ), (126, 126)</box>.", 1000, 1000)
    assert parsed.text == "The hip left is located at the."
    (box,) = parsed.boxes
    assert box.grid == (126, 126, 587, 217)
    assert box.reordered and not box.clamped and box.markup == "qwenvl" and box.phrase is None


def test_parse_bare_box_as_users_type_it() -> None:
    parsed = parse_answer("What is located at (370,59),(473,91)?", 500, 200)
    assert parsed.text == "What is located at?"
    (box,) = parsed.boxes
    assert box.markup == "bare"
    assert box.pixels == pytest.approx((185.0, 11.8, 236.5, 18.2))


def test_parse_several_boxes_ref_applies_to_the_list_that_follows() -> None:
    answer = (
        "<ref>kidneys</ref> <box>(1,2),(3,4)</box>, <box>(5,6),(7,8)</box> and the "
        "<|object_ref_start|>liver<|object_ref_end|> <|box_start|>(10,10),(90,90)<|box_end|> "
        "plus (20,20),(30,30)"
    )
    parsed = parse_answer(answer, 1000, 1000)
    assert [b.phrase for b in parsed.boxes] == ["kidneys", "kidneys", "liver", None]
    assert parsed.text == "kidneys and the liver plus"
    assert parsed.issues == ()


def test_several_boxes_inside_one_tag() -> None:
    parsed = parse_answer("<|box_start|>(1,2),(3,4),(5,6),(7,8)<|box_end|>", 1000, 1000)
    assert [b.grid for b in parsed.boxes] == [(1, 2, 3, 4), (5, 6, 7, 8)]


def test_out_of_range_values_are_clamped_and_flagged() -> None:
    parsed = parse_answer("<|box_start|>(-5,20),(1200,30)<|box_end|>", 200, 100)
    (box,) = parsed.boxes
    assert box.grid == (0, 20, 1000, 30) and box.pixels == (0.0, 2.0, 200.0, 3.0)
    assert box.clamped and not box.valid
    assert any("clamped" in issue for issue in parsed.issues)


def test_zero_area_box_is_kept_but_not_valid() -> None:
    (box,) = parse_answer("<box>(5,5),(5,9)</box>", 10, 10).boxes
    assert not box.valid and not box.clamped


def test_float_coordinates_are_read() -> None:
    (box,) = parse_answer("<box>(10.5,20),(30,40.25)</box>", 1000, 1000).boxes
    assert box.grid == (10.5, 20, 30, 40.25)


@pytest.mark.parametrize(
    ("answer", "clean", "issue"),
    [
        ("x <|box_start|>(1,2)<|box_end|> y", "x y", "malformed"),
        ("x <box>left</box> y", "x y", "malformed"),
        ("cut off <|box_start|>(1,2),(3,", "cut off", "unpaired"),
        ("stray <|box_end|> end", "stray end", "unpaired"),
        ("open <ref>liver and more", "open liver and more", "unpaired"),
    ],
)
def test_malformed_fragments_are_dropped_and_reported(answer: str, clean: str, issue: str) -> None:
    parsed = parse_answer(answer, 100, 100)
    assert parsed.boxes == ()
    assert parsed.text == clean
    assert len(parsed.issues) == 1 and issue in parsed.issues[0]


def test_good_box_survives_next_to_a_malformed_one() -> None:
    parsed = parse_answer("<box>(1,2)</box> then <box>(1,2),(3,4)</box>", 1000, 1000)
    assert [b.grid for b in parsed.boxes] == [(1, 2, 3, 4)]
    assert len(parsed.issues) == 1


def test_plain_text_passes_through() -> None:
    parsed = parse_answer("Pneumothorax.\nNo other findings (see 3, 4).", 10, 10)
    assert parsed == parse_answer("Pneumothorax.\nNo other findings (see 3, 4).", 10, 10)
    assert parsed.text == "Pneumothorax.\nNo other findings (see 3, 4)." and parsed.boxes == ()


def test_parse_rejects_empty_image() -> None:
    with pytest.raises(ValueError, match="image size must be positive"):
        parse_answer("(1,2),(3,4)", 0, 10)


def test_normalize_box_markup_rewrites_legacy_tags() -> None:
    question = "What is at the <box>(1,2),(3,4)</box> near <ref>liver</ref>?"
    assert normalize_box_markup(question) == (
        "What is at the <|box_start|>(1,2),(3,4)<|box_end|> near <|object_ref_start|>liver<|object_ref_end|>?"
    )
    assert [b.grid for b in parse_answer(normalize_box_markup(question), 10, 10).boxes] == [(1, 2, 3, 4)]


# ---------------------------------------------------------------- JSON dialects (Qwen2.5-VL, Qwen3-VL, MedGemma)


def test_bbox_2d_list_in_a_fence_gives_labelled_boxes_and_clean_text() -> None:
    answer = (
        "Found two.\n```json\n[\n"
        '\t{"bbox_2d": [10, 20, 110, 220], "label": "left lung"},\n'
        '\t{"bbox_2d": [300, 20, 400, 220], "label": "right lung"}\n]\n```'
    )
    parsed = parse_answer(answer, 1000, 1000, "bbox_2d", (500, 500))  # pixels of a 500 x 500 resized input
    assert parsed.text == "Found two.\nleft lung; right lung" and parsed.issues == ()
    assert [b.pixels for b in parsed.boxes] == [(20, 40, 220, 440), (600, 40, 800, 440)]
    assert [b.grid for b in parsed.boxes] == [(20, 40, 220, 440), (600, 40, 800, 440)]
    assert [(b.phrase, b.markup) for b in parsed.boxes] == [("left lung", "bbox_2d"), ("right lung", "bbox_2d")]


def test_box_2d_is_y_first_on_the_grid() -> None:
    parsed = parse_answer('Final Answer: [{"box_2d": [100, 200, 300, 400], "label": "heart"}]', 200, 100, "box_2d")
    (box,) = parsed.boxes
    assert box.grid == (200, 100, 400, 300) and box.pixels == (40, 10, 80, 30)
    assert parsed.text == "Final Answer: heart" and box.markup == "box_2d"


def test_cut_off_json_keeps_the_boxes_that_parse() -> None:
    answer = '[{"box_2d": [100, 200, 300, 400], "label": "heart"}, {"box_2d": [100, 2'
    parsed = parse_answer(answer, 1000, 1000, "box_2d")
    assert [b.phrase for b in parsed.boxes] == ["heart"] and parsed.text == "heart"
    assert len(parsed.issues) == 1 and "malformed" in parsed.issues[0]
    label_cut = parse_answer('{"bbox_2d": [10, 20, 30, 40], "label": "lef', 100, 100, "bbox_2d")
    (box,) = label_cut.boxes
    assert box.grid == (10, 20, 30, 40) and "cut-off" in label_cut.issues[0]


def test_json_boxes_out_of_range_are_clamped_to_the_frame() -> None:
    parsed = parse_answer('[{"bbox_2d": [60, 20, -5, 90]}]', 120, 90, "bbox_2d", (112, 84))
    (box,) = parsed.boxes
    assert box.clamped and box.reordered and not box.valid
    assert box.pixels == pytest.approx((0, 20 * 90 / 84, 60 * 120 / 112, 90))
    assert "clamped" in parsed.issues[0]


def test_each_dialect_writes_the_box_prompt_it_reads() -> None:
    for dialect, frame in (("qwen2vl", GRID_FRAME), ("bbox_2d", (112, 84)), ("box_2d", GRID_FRAME)):
        text = box_to_text((30, 45, 90, 60), 120, 90, dialect, frame)
        (box,) = parse_answer(text, 120, 90, dialect, frame).boxes
        assert box.pixels == pytest.approx((30, 45, 90, 60), abs=120 / min(frame))
    assert box_to_text((30, 45, 90, 60), 120, 90, "box_2d") == '{"box_2d": [500, 250, 667, 750]}'
    assert detect_dialect('[{"bbox_2d": [1, 2, 3, 4]}]') == "bbox_2d" and detect_dialect("(1,2),(3,4)") == "qwen2vl"
    with pytest.raises(ValueError, match="dialect"):
        parse_answer("x", 10, 10, "yolo")
