"""``export`` sub-command: reads the sidecar (or --annotations), writes every format, exit 2 on bad input."""

from __future__ import annotations

import argparse
import json

import pydicom
import pytest

from cli.annotations import register
from engine.annotations import save_document, sidecar_path
from tests.engine.test_annotations_support import annotated_set


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="main.py")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    doc, _ = annotated_set(root / "images")
    save_document(doc, sidecar_path([root / "images"]))
    return root


@pytest.mark.filterwarnings('ignore:The string "PLA" is unlikely')
@pytest.mark.parametrize(
    ("fmt", "out", "expected"),
    [
        ("coco", "coco.json", ["coco.json"]),
        ("csv", "boxes.csv", ["boxes.csv"]),
        ("json", "copy.json", ["copy.json"]),
        ("yolo", "yolo", ["classes.txt", "ct.txt", "photo.txt", "us_f0018.txt"]),  # us frame 1: a pending box only
        ("voc", "voc", ["ct.xml", "photo.xml", "us_f0018.xml"]),
        ("sr", "sr", None),
    ],
)
def test_export_every_format_from_the_sidecar(folder, tmp_path, capsys, fmt, out, expected):
    target = tmp_path / out
    assert run(["export", str(folder / "images"), "--format", fmt, "--out", str(target)]) == 0
    written = sorted(p.name for p in target.iterdir()) if target.is_dir() else [target.name]
    if expected is not None:
        assert written == expected
    else:
        assert len(written) == 2 and all(pydicom.dcmread(target / n).Modality == "SR" for n in written)
    assert f"as {fmt}" in capsys.readouterr().out


def test_only_images_inside_the_given_paths(folder, tmp_path):
    out = tmp_path / "one.json"
    assert (
        run(
            [
                "export",
                str(folder / "images" / "photo.png"),
                "--format",
                "coco",
                "--out",
                str(out),
                "--annotations",
                str(sidecar_path([folder / "images"])),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert [i["file_name"].rsplit("/", 1)[-1] for i in data["images"]] == ["photo.png"]
    assert len(data["annotations"]) == 1


def test_include_rejected_switch(folder, tmp_path):
    plain, everything = tmp_path / "plain", tmp_path / "all"
    assert run(["export", str(folder / "images"), "--format", "yolo", "--out", str(plain)]) == 0
    assert (
        run(["export", str(folder / "images"), "--format", "yolo", "--out", str(everything), "--include-rejected"]) == 0
    )
    assert len((plain / "ct.txt").read_text().splitlines()) == 1
    assert len((everything / "ct.txt").read_text().splitlines()) == 2


def test_bad_input_exits_2_with_a_clear_message(folder, tmp_path, capsys):
    assert run(["export", str(tmp_path / "missing"), "--format", "coco", "--out", str(tmp_path / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(["export", str(empty), "--format", "coco", "--out", str(tmp_path / "x.json")]) == 2
    assert "no annotations found" in capsys.readouterr().err
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json")
    assert (
        run(
            [
                "export",
                str(folder / "images"),
                "--format",
                "coco",
                "--out",
                str(tmp_path / "x.json"),
                "--annotations",
                str(damaged),
            ]
        )
        == 2
    )
    assert "not valid JSON" in capsys.readouterr().err
    assert damaged.read_text() == "{not json"  # the CLI never moves or rewrites the user's file
    assert (
        run(
            [
                "export",
                str(folder / "images" / "photo.png"),
                "--format",
                "sr",
                "--out",
                str(tmp_path / "sr"),
                "--annotations",
                str(sidecar_path([folder / "images"])),
            ]
        )
        == 2
    )
    assert "DICOM" in capsys.readouterr().err
    assert run(["export", str(folder / "images"), "--format", "yolo", "--out", str(damaged)]) == 2
    assert "writes a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run(["export", str(folder / "images"), "--format", "tiff", "--out", "x"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "x.json").exists()
