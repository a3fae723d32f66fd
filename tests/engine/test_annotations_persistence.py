"""Saving and reopening: lossless JSON, atomic writes, damaged sidecars, sidecar locations."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest

from engine.annotations import (
    DamagedDocumentError,
    SetReview,
    UnsupportedVersionError,
    load_document,
    open_sidecar,
    save_document,
    sidecar_path,
)
from engine.annotations.persistence import document_to_dict
from tests.engine.test_annotations_support import add_box, annotated_set, new_doc, raster_ref, series_ref


def assert_same_document(a, b):
    assert a.labels == b.labels
    assert a.images == b.images
    for ref in a.images:
        assert a.annotations(ref.image_id) == b.annotations(ref.image_id)
        assert a.image_state(ref.image_id) == b.image_state(ref.image_id)


def test_save_and_reopen_restores_everything(tmp_path):
    doc, refs = annotated_set(tmp_path / "images")
    path = sidecar_path([tmp_path / "images"])
    assert path == tmp_path / "images" / ".clinlens" / "annotations.json"
    assert doc.dirty
    save_document(doc, path)
    assert not doc.dirty
    data = json.loads(path.read_text())
    assert data["schema_version"] == 2 and data["format"] == "clinlens-annotations"
    us = next(i for i in data["images"] if i["image_id"] == refs["us"].image_id)
    assert us["paths"] == ["../us.dcm"]  # relative to the sidecar
    assert us["last_frame"] == 17 and us["reviewed"] is True
    box = next(a for a in us["annotations"] if a.get("frame") == 17)
    assert (box["sop_instance_uid"], box["frame_number"]) == (refs["us"].frames[17].sop_instance_uid, 18)
    reopened = open_sidecar(path)
    assert reopened.problem is None and not reopened.document.dirty
    assert_same_document(doc, reopened.document)
    assert reopened.document.image(refs["ct"].image_id).spacing.col_mm == 0.8


def test_failed_replace_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    ref = raster_ref(str(tmp_path / "a.png"))
    doc = new_doc(ref)
    add_box(doc, ref.image_id)
    path = tmp_path / "a.png.clinlens.json"
    save_document(doc, path)
    before = path.read_bytes()
    add_box(doc, ref.image_id, (5, 5, 9, 9))

    def crash(src, dst):
        raise OSError(errno.EIO, "simulated crash during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        save_document(doc, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png.clinlens.json"]
    assert doc.dirty  # not saved: the app keeps trying
    monkeypatch.undo()
    save_document(doc, path)
    assert len(load_document(path).boxes(ref.image_id)) == 2


def test_full_disk_during_write_keeps_previous_file(tmp_path, monkeypatch):
    ref = raster_ref(str(tmp_path / "a.png"))
    doc = new_doc(ref)
    path = tmp_path / "project.json"
    save_document(doc, path)
    before = path.read_bytes()
    add_box(doc, ref.image_id)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left on device") as err:
        save_document(doc, path)
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["project.json"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"format": "clinlens-annotations", "schema_version": 1, "labels": [', "not valid JSON"),
        (b"\xff\xfe garbage", "not UTF-8 text"),
        (b'{"hello": 1}', "not a ClinLens annotation file"),
        (
            (
                b'{"format": "clinlens-annotations", "schema_version": 1, "labels": [], "images": '
                b'[{"image_id": "a", "paths": ["a.png"], "width": 4, "height": 4, "n_frames": 1, '
                b'"frames": [{"path": 0, "sop_instance_uid": null, "frame_number": 1}], "annotations": '
                b'[{"type": "box", "id": "x", "label": "n", "source": "user", "review": "accepted", '
                b'"frame": 0, "x1": "1", "y1": 0, "x2": 1, "y2": 1}]}]}'
            ),
            "images[0].annotations[0].x1: expected a number",
        ),
        (
            (
                b'{"format": "clinlens-annotations", "schema_version": 1, "labels": [], "images": '
                b'[{"image_id": "a", "paths": ["a.png"], "width": 4, "height": 4, "n_frames": 1, '
                b'"frames": [{"path": 0, "sop_instance_uid": null, "frame_number": 1}], "annotations": '
                b'[{"type": "box", "id": "x", "label": "n", "source": "user", "review": "accepted", '
                b'"frame": 1, "x1": 1, "y1": 0, "x2": 1, "y2": 1}]}]}'
            ),
            "images[0]: box x is on frame 1",
        ),
        (
            (
                b'{"format": "clinlens-annotations", "schema_version": 1, "labels": [{"name": "n", "color": "red"}], '
                b'"images": []}'
            ),
            "labels[0]: colour must look like #rrggbb",
        ),
    ],
)
def test_damaged_sidecar_is_reported_and_moved_aside(tmp_path, content, reason):
    path = tmp_path / "x.png.clinlens.json"
    path.write_bytes(content)
    with pytest.raises(DamagedDocumentError, match=r"x\.png\.clinlens\.json") as err:
        load_document(path)
    assert reason in str(err.value)
    assert path.read_bytes() == content  # loading alone never touches the file
    opened = open_sidecar(path)
    assert reason in opened.problem
    assert opened.moved_to.name.startswith("x.png.clinlens.json.damaged-")
    assert opened.moved_to.read_bytes() == content and not path.exists()
    assert opened.document.images == ()
    ref = raster_ref(str(tmp_path / "x.png"))
    opened.document.add_image(ref)
    save_document(opened.document, path)  # the autosave writes a fresh file...
    assert opened.moved_to.read_bytes() == content  # ...and the damaged one survives
    path.write_bytes(content)
    second = open_sidecar(path)  # damaged again within the same second: a second, distinct name
    assert second.moved_to != opened.moved_to and second.moved_to.exists() and opened.moved_to.exists()


def test_newer_schema_is_refused_and_left_in_place(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"format": "clinlens-annotations", "schema_version": 99, "labels": [], "images": []}))
    with pytest.raises(UnsupportedVersionError, match="newer ClinLens"):
        open_sidecar(path)
    assert path.exists() and list(tmp_path.iterdir()) == [path]


def test_missing_sidecar_opens_empty(tmp_path):
    opened = open_sidecar(tmp_path / ".clinlens" / "annotations.json")
    assert opened.document.images == () and opened.problem is None
    assert not (tmp_path / ".clinlens").exists()  # nothing written until the first save


def test_sidecar_locations(tmp_path):
    (tmp_path / "study" / "a").mkdir(parents=True)
    (tmp_path / "study" / "b").mkdir()
    one = tmp_path / "study" / "a" / "x.png"
    other = tmp_path / "study" / "b" / "y.png"
    one.touch()
    other.touch()
    assert sidecar_path([one]) == tmp_path / "study" / "a" / "x.png.clinlens.json"
    assert sidecar_path([tmp_path / "study"]) == tmp_path / "study" / ".clinlens" / "annotations.json"
    assert sidecar_path([one, other]) == tmp_path / "study" / ".clinlens" / "annotations.json"
    with pytest.raises(ValueError, match="no image paths given"):
        sidecar_path([])


def test_moved_folder_rebinds_raster_images(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    ref = raster_ref(str(old / "chest.png"))
    doc = new_doc(ref)
    box = add_box(doc, ref.image_id)
    doc.execute(SetReview(ref.image_id, [box.id], "rejected"))
    save_document(doc, sidecar_path([old]))
    shutil.move(old, tmp_path / "new")
    moved = open_sidecar(sidecar_path([tmp_path / "new"])).document
    new_path = str(tmp_path / "new" / "chest.png")
    assert moved.images[0].paths == (new_path,)  # relative paths resolve at the new place
    assert moved.add_image(raster_ref(new_path)) == new_path  # the app registers the opened stack
    assert moved.boxes(new_path)[0].id == box.id and moved.boxes(new_path)[0].review == "rejected"


def test_document_dict_is_plain_json(tmp_path):
    ref = series_ref()
    doc = new_doc(ref)
    add_box(doc, ref.image_id, (0.1, 0.2, 0.30000000000000004, 7), frame=2, score=1 / 3, source="model")
    data = document_to_dict(doc)
    restored = json.loads(json.dumps(data, allow_nan=False))
    path = tmp_path / "p.json"
    path.write_text(json.dumps(restored))
    assert load_document(path).boxes(ref.image_id) == doc.boxes(ref.image_id)  # floats bit-exact
