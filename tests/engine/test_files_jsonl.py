"""Append-only JSON-lines logs (run logs, predictions): ``read_jsonl`` recovers every readable
record around a torn or damaged line and never raises for bad content; ``append_jsonl`` starts
each record on a fresh line even after a torn write; ``rewrite_jsonl`` keeps the damaged original."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clinkd import HistoryFileError, read_history_file
from engine.files import JsonFileError, append_jsonl, read_jsonl, rewrite_jsonl

A, B, C = {"n": 1, "t": "café"}, {"n": 2}, {"n": 3}


def line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def test_a_missing_or_empty_log_is_empty(tmp_path) -> None:
    assert read_jsonl(tmp_path / "absent.jsonl") == read_jsonl(tmp_path / "absent.jsonl")
    assert read_jsonl(tmp_path / "absent.jsonl").records == []
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    lines = read_jsonl(empty)
    assert (lines.records, lines.problems, lines.damage(empty)) == ([], [], None)


def test_a_torn_last_line_costs_only_itself(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(line(A) + line(B) + b'{"n": 3, "t": "ca')
    lines = read_jsonl(path)
    assert lines.records == [A, B]
    assert lines.problems == ["line 3 is cut off (its write never finished)"]
    expected = "run.jsonl is damaged (line 3 is cut off (its write never finished)); the 2 readable record(s) are used"
    assert lines.damage(path) == expected


def test_invalid_utf8_in_the_middle_is_skipped_and_named(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(line(A) + b'{"n": "\xff\xfe"}\n' + line(C))
    lines = read_jsonl(path)
    assert lines.records == [A, C]
    assert lines.problems == ["line 2 is not UTF-8 text (bad byte at column 8)"]


def test_a_record_glued_after_a_torn_one_is_recovered(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(line(A) + b'{"n": 2, "boxes": [{"x": 1}' + line(C))  # an older ClinLens appended blindly
    lines = read_jsonl(path)
    assert lines.records == [A, C]
    assert (
        lines.problems[0].startswith("line 2 is not valid JSON") and "glued after it was recovered" in lines.problems[0]
    )
    cut_in_a_character = tmp_path / "utf8.jsonl"
    cut_in_a_character.write_bytes(line(A) + '{"t": "é'.encode()[:-1] + line(C))
    assert read_jsonl(cut_in_a_character).records == [A, C]


def test_append_starts_a_fresh_line_after_a_torn_write(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    append_jsonl(path, [A])
    with path.open("ab") as handle:
        handle.write(b'{"n": 2, "t": "to')  # the process died here
    append_jsonl(path, [C])
    append_jsonl(path, [])
    lines = read_jsonl(path)
    assert lines.records == [A, C] and lines.problems == [
        "line 2 is not valid JSON (column 15: Unterminated string starting at)"
    ]


def test_rewrite_keeps_the_damaged_original_and_leaves_a_clean_log(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    damaged = line(A) + b"\xff\n" + line(B) + b'{"n"'
    path.write_bytes(damaged)
    kept = rewrite_jsonl(path, read_jsonl(path))
    assert kept.read_bytes() == damaged and kept.name.startswith("run.jsonl.damaged-")
    assert read_jsonl(path).records == [A, B] and read_jsonl(path).problems == []


def test_an_unreadable_log_is_one_error(tmp_path) -> None:
    with pytest.raises(JsonFileError, match="cannot be read"):
        read_jsonl(tmp_path)  # a folder


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_records_and_problems_never_an_exception(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "run.jsonl"
    path.write_bytes(line(A) + data + b"\n" + line(B))
    lines = read_jsonl(path)
    assert lines.records[0] == A and lines.records[-1] == B
    for record in lines.records:  # what was recovered can be written again
        json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")


def test_a_history_file_that_is_not_utf8_is_one_sentence(tmp_path) -> None:
    path = tmp_path / "conversation.json"
    path.write_bytes(b'{"format": "clinlens-conversation", "turns": ["\xff"]}')
    with pytest.raises(HistoryFileError, match=r"conversation.json: not UTF-8 text \(bad byte at offset 47\)"):
        read_history_file(path, 100, 100)
    with pytest.raises(HistoryFileError, match="cannot be read"):
        read_history_file(tmp_path / "missing.json", 100, 100)
