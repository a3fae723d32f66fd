"""Exports follow review: by default only user annotations and accepted or corrected model output
leave the app; ``--include-pending`` adds unreviewed model output, ``--include-rejected`` rejected
output; every format with a place for it says which states it holds.

One document holds one box per state (the label names the state), plus a pending image label; each
format is exported through the ``export`` command and read back by its own rules.
"""

from __future__ import annotations

import argparse
import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pydicom
import pytest

from cli.annotations import register
from engine.annotations import AddAnnotations, ImageRef, load_document, save_document
from engine.annotations.formats.sr_reader import read_sr
from tests.engine.test_annotations_support import add_box, by_title, image_set, new_doc

REVIEWED = {"user", "accepted", "corrected"}
FLAGS = {
    (): REVIEWED,
    ("--include-pending",): REVIEWED | {"pending", "pending label"},
    ("--include-rejected",): REVIEWED | {"rejected"},
    ("--include-pending", "--include-rejected"): REVIEWED | {"pending", "pending label", "rejected"},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[ImageRef, Path]:
    root = tmp_path_factory.mktemp("review")
    ct = by_title(image_set(root / "images"), "ct.dcm")
    doc = new_doc(ct)
    add_box(doc, ct.image_id, (1, 1, 10, 10), "user")
    for i, state in enumerate(("accepted", "corrected", "pending", "rejected")):
        add_box(doc, ct.image_id, (20 + 10 * i, 5, 28 + 10 * i, 15), state, source="model", score=0.5, review=state)
    label = doc.new_image_label(ct.image_id, "pending label", score=0.4)
    doc.execute(AddAnnotations(ct.image_id, [label]))
    path = root / "project.json"
    save_document(doc, path)
    return ct, path


def export(project: tuple[ImageRef, Path], fmt: str, out: Path, flags: tuple[str, ...], capsys) -> str:
    ct, annotations = project
    parser = argparse.ArgumentParser(prog="main.py")
    register(parser.add_subparsers(dest="command"))
    argv = ["export", ct.paths[0], "--format", fmt, "--out", str(out), "--annotations", str(annotations), *flags]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def exported_labels(fmt: str, out: Path, ct: ImageRef) -> tuple[set[str], str | list[str] | None]:
    """The labels the export holds, and what it says about its review states (None: no place to say)."""
    if fmt == "coco":
        data = json.loads(out.read_text())
        names = {c["id"]: c["name"] for c in data["categories"]}
        labels = {names[a["category_id"]] for a in data["annotations"]}
        labels |= {label["label"] for i in data["images"] for label in i["image_labels"]}
        return labels, [data["info"]["description"], data["info"]["review_states"]]
    if fmt == "csv":
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        assert all(r["review"] for r in rows)  # the review column says the state of every row
        return {r["label"] for r in rows}, None
    if fmt == "json":
        doc = load_document(out)
        return {a.label for ref in doc.images for a in doc.annotations(ref.image_id)}, json.loads(out.read_text())[
            "review_states"
        ]
    if fmt == "yolo":
        classes = (out / "classes.txt").read_text().splitlines()
        return {classes[int(line.split()[0])] for line in (out / "ct.txt").read_text().splitlines()}, None
    if fmt == "voc":
        return {o.findtext("name") for o in ET.parse(out / "ct.xml").getroot().iter("object")}, None
    [sr] = [pydicom.dcmread(p) for p in out.iterdir()]
    return {a.label for a in read_sr(sr, ct).annotations}, sr.SeriesDescription


@pytest.mark.filterwarnings('ignore:The string "PLA" is unlikely')
@pytest.mark.parametrize("flags", list(FLAGS))
@pytest.mark.parametrize("fmt", ["coco", "csv", "json", "yolo", "voc", "sr"])
def test_each_format_holds_the_review_states_asked_for_and_says_so(project, tmp_path, capsys, fmt, flags) -> None:
    out = tmp_path / ("out" if fmt in ("yolo", "voc", "sr") else f"out.{fmt}")
    printed = export(project, fmt, out, flags, capsys)
    labels, says = exported_labels(fmt, out, project[0])
    expected = FLAGS[flags]
    if fmt in ("yolo", "voc"):  # boxes only: image labels have no place there
        expected = expected - {"pending label"}
    assert labels == expected
    states = ["accepted", "corrected"] + [s for s in ("pending", "rejected") if f"--include-{s}" in flags]
    if fmt == "coco":
        assert says[1] == sorted(states, key=["pending", "accepted", "rejected", "corrected"].index)
        assert says[0].startswith("ClinLens annotations (")
    if fmt == "json":
        assert sorted(says) == sorted(states)
    if fmt == "sr":
        words = {
            (): "reviewed only",
            ("--include-pending",): "incl. pending",
            ("--include-rejected",): "incl. rejected",
        }
        assert says == f"ClinLens annotations ({words.get(flags, 'incl. pending and rejected')})"
    assert ("reviewed only" in printed) == (flags == ())


def test_an_sr_of_pending_output_only_is_refused_and_says_why(tmp_path, capsys) -> None:
    ct = by_title(image_set(tmp_path / "images"), "ct.dcm")
    doc = new_doc(ct)
    add_box(doc, ct.image_id, (1, 1, 10, 10), "pending", source="model", score=0.5)
    save_document(doc, tmp_path / "project.json")
    parser = argparse.ArgumentParser(prog="main.py")
    register(parser.add_subparsers(dest="command"))
    argv = ["export", ct.paths[0], "--format", "sr", "--out", str(tmp_path / "sr")]
    args = parser.parse_args([*argv, "--annotations", str(tmp_path / "project.json")])
    assert args.func(args) == 2
    assert "no annotations to export on DICOM images (reviewed only" in capsys.readouterr().err
