"""Mask annotations: validation, exact RLE round trip, undo/redo, persistence, review scope, events."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.annotations import (
    AddAnnotations,
    Change,
    DamagedDocumentError,
    Mask,
    MeasuredValue,
    Provenance,
    RemoveAnnotations,
    Review,
    SetLabel,
    SetMaskFrames,
    SetReview,
    Source,
    load_document,
    save_document,
)
from engine.annotations.formats import export_json
from engine.annotations.formats.targets import ReviewScope
from engine.annotations.persistence import document_to_dict
from engine.annotations.rle import encode
from tests.engine.test_annotations_support import add_box, new_doc, series_ref

PROVENANCE = Provenance(run="r1", key="k", model="sam-vit-b", task="segment", question="box 1,2,30,40", window="40/400")


def disc(rows=48, columns=64, centre=(20, 30), radius=9.0) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:columns]
    return (r - centre[0]) ** 2 + (c - centre[1]) ** 2 <= radius**2


def add_mask(doc, image_id="series:1.2.3", arrays=None, **kwargs):
    mask = doc.new_mask(image_id, arrays if arrays is not None else {0: disc(), 2: disc(radius=5)}, "liver", **kwargs)
    assert doc.execute(AddAnnotations(image_id, [mask]))
    return mask


def test_rle_round_trip_is_exact_on_random_masks():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (5, 7), (48, 64), (513, 257)]:
        array = rng.random(shape) > 0.6
        rle = encode(array)
        assert isinstance(rle.counts, str) and (rle.rows, rle.columns) == shape
        np.testing.assert_array_equal(rle.decode(), array)
        assert rle.area == int(array.sum())
    with pytest.raises(ValueError, match="2-D"):
        encode(np.zeros((2, 3, 4), bool))


def test_new_mask_binds_frames_and_validates():
    doc = new_doc(series_ref())
    mask = add_mask(doc)
    assert mask.frame_indices == (0, 2) and mask.label == "liver" and mask.review is Review.ACCEPTED
    assert mask.frames[1].sop_instance_uid == "1.2.3.2" and mask.frames[1].frame_number == 1
    np.testing.assert_array_equal(mask.array(0), disc())
    assert mask.array(1) is None and set(mask.arrays()) == {0, 2}
    assert doc.label("liver").color == doc.labels[0].color  # the colour comes from the label
    assert doc.masks("series:1.2.3") == [mask] and doc.masks("series:1.2.3", frame=1) == []
    model = doc.new_mask("series:1.2.3", {1: disc()}, "liver", source="model", score=0.9, provenance=PROVENANCE)
    assert model.review is Review.PENDING and model.provenance == PROVENANCE and model.source is Source.MODEL
    with pytest.raises(ValueError, match="out of range"):
        doc.new_mask("series:1.2.3", {3: disc()}, "liver")
    with pytest.raises(ValueError, match="48x64"):
        doc.new_mask("series:1.2.3", {0: np.ones((10, 10), bool)}, "liver")
    with pytest.raises(ValueError, match="no pixels"):
        doc.new_mask("series:1.2.3", {0: np.zeros((48, 64), bool)}, "liver")
    with pytest.raises(ValueError, match="twice"):
        Mask("x", (mask.frames[0], mask.frames[0]), "liver")
    with pytest.raises(ValueError, match="finite"):
        Mask("x", mask.frames, "liver", score=float("nan"))
    other = new_doc(series_ref(n_frames=1))
    with pytest.raises(ValueError, match="out of range"):
        other.execute(AddAnnotations("series:1.2.3", [mask]))  # a mask made for another image


def test_mask_edits_are_one_undo_step_each_and_notify():
    doc = new_doc(series_ref())
    events = []
    doc.subscribe(events.append)
    mask = add_mask(doc, source="model", provenance=PROVENANCE)
    assert doc.history("series:1.2.3").undo_text == "Add mask"
    assert [e.added for e in events if e.change is Change.ANNOTATIONS] == [(mask.id,)]
    stroke = disc(radius=12)
    values = (MeasuredValue("area", 12.5, "mm2"),)
    assert doc.execute(
        SetMaskFrames("series:1.2.3", mask.id, {0: stroke, 1: disc(), 2: np.zeros((48, 64), bool)}, values=values)
    )
    edited = doc.annotation("series:1.2.3", mask.id)
    assert edited.frame_indices == (0, 1) and edited.review is Review.CORRECTED and edited.values == values
    np.testing.assert_array_equal(edited.array(0), stroke)
    assert events[-2].change is Change.ANNOTATIONS and events[-2].changed == (mask.id,)
    assert not doc.execute(SetMaskFrames("series:1.2.3", mask.id, {0: stroke}))  # nothing changed: no step
    with pytest.raises(ValueError, match="delete the mask"):
        doc.execute(SetMaskFrames("series:1.2.3", mask.id, {0: np.zeros((48, 64), bool), 1: np.zeros((48, 64), bool)}))
    assert doc.undo("series:1.2.3")
    assert doc.annotation("series:1.2.3", mask.id) == mask
    assert doc.redo("series:1.2.3")
    assert doc.annotation("series:1.2.3", mask.id) == edited
    assert doc.execute(RemoveAnnotations("series:1.2.3", [mask.id]))
    assert doc.masks("series:1.2.3") == []
    assert doc.undo("series:1.2.3") and doc.annotation("series:1.2.3", mask.id) == edited
    assert doc.undo("series:1.2.3") and doc.undo("series:1.2.3")
    assert doc.masks("series:1.2.3") == []
    assert doc.redo("series:1.2.3") and doc.annotation("series:1.2.3", mask.id) == mask


def test_masks_round_trip_through_the_sidecar(tmp_path):
    doc = new_doc(series_ref())
    add_box(doc, "series:1.2.3")
    add_mask(doc, source="model", score=0.75, provenance=PROVENANCE, values=(MeasuredValue("volume", 3.25, "mL"),))
    mask = add_mask(doc, arrays={1: disc(radius=3)})
    doc.execute(SetLabel("series:1.2.3", [mask.id], "spleen"))
    path = tmp_path / "annotations.json"
    save_document(doc, path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == 3
    saved = data["images"][0]["annotations"][1]
    assert saved["type"] == "mask" and isinstance(saved["frames"][0]["counts"], str)
    again = load_document(path)
    assert again.annotations("series:1.2.3") == doc.annotations("series:1.2.3")
    np.testing.assert_array_equal(again.masks("series:1.2.3")[0].array(0), disc())
    # a document without masks stays at version 2, which older ClinLens versions open
    assert document_to_dict(new_doc(series_ref()))["schema_version"] == 2


def test_damaged_mask_in_a_sidecar_names_the_place(tmp_path):
    doc = new_doc(series_ref())
    add_mask(doc)
    data = document_to_dict(doc, tmp_path)
    data["images"][0]["annotations"][0]["frames"][0]["counts"] = 17
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DamagedDocumentError, match=r"annotations\[0\]\.frames\[0\]\.counts"):
        load_document(path)
    data["images"][0]["annotations"][0]["frames"][0]["counts"] = encode(np.ones((10, 10), bool)).counts
    data["images"][0]["annotations"][0]["frames"][0]["size"] = [10, 10]
    path.write_text(json.dumps(data))
    with pytest.raises(DamagedDocumentError, match="rows x columns"):
        load_document(path)


def test_review_scope_applies_to_masks(tmp_path):
    doc = new_doc(series_ref())
    pending = add_mask(doc, source="model")
    rejected = add_mask(doc, source="model")
    doc.execute(SetReview("series:1.2.3", [rejected.id], Review.REJECTED))
    mine = add_mask(doc)
    assert [ReviewScope().keeps(m) for m in (pending, doc.annotation("series:1.2.3", rejected.id), mine)] == [
        False,
        False,
        True,
    ]
    out = export_json(doc, tmp_path / "out.json")[0]
    assert [a["id"] for a in json.loads(out.read_text())["images"][0]["annotations"]] == [mine.id]
    assert doc.progress().pending_annotations == 1


def test_mask_follows_its_frames_when_the_series_is_resorted():
    ref = series_ref()
    doc = new_doc(ref)
    mask = add_mask(doc, arrays={0: disc()})
    resorted = type(ref)(**{**ref.__dict__, "frames": ref.frames[::-1], "paths": ref.paths[::-1]})
    doc.add_image(resorted)
    assert doc.annotation("series:1.2.3", mask.id).frame_indices == (2,)
