"""The annotation document: commands, undo/redo, merging drags, labels, review, listeners."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.annotations import (
    AddAnnotations,
    Box,
    Change,
    RemoveAnnotations,
    Review,
    SetGeometry,
    SetImageReviewed,
    SetLabel,
    SetNote,
    SetReview,
    Source,
    UndoStack,
)
from engine.annotations.colors import _hue, _hue_distance, distinct_color
from engine.imaging import FrameSource
from tests.engine.test_annotations_support import add_box, new_doc, raster_ref, series_ref


def test_box_orders_corners_and_rejects_bad_values():
    box = Box("a", 0, 10, 20, 1, 2, "x")
    assert box.rect == (1.0, 2.0, 10.0, 20.0)
    assert (box.width, box.height) == (9.0, 18.0)
    with pytest.raises(ValueError, match="x1 must be a finite number"):
        Box("a", 0, float("nan"), 0, 1, 1, "x")
    with pytest.raises(ValueError, match="frame must be a non-negative integer"):
        Box("a", -1, 0, 0, 1, 1, "x")
    with pytest.raises(ValueError, match="label name must be non-empty"):
        Box("a", 0, 0, 0, 1, 1, "  ")


def test_new_box_binds_dicom_source_and_default_review():
    ref = series_ref()
    doc = new_doc(ref)
    user = doc.new_box(ref.image_id, 2, 1, 1, 5, 5, "a")
    model = doc.new_box(ref.image_id, 1, 1, 1, 5, 5, "a", source="model", score=0.4)
    assert (user.sop_instance_uid, user.frame_number) == ("1.2.3.2", 1)
    assert user.review is Review.ACCEPTED and model.review is Review.PENDING
    assert user.id != model.id and len(user.id) == 32
    png = raster_ref()
    doc.add_image(png)
    assert doc.new_box(png.image_id, 0, 0, 0, 1, 1, "a").sop_instance_uid is None
    with pytest.raises(IndexError):
        doc.new_box(ref.image_id, 3, 0, 0, 1, 1, "a")


def test_add_undo_redo_restores_exact_values_and_notifies():
    ref = raster_ref()
    doc = new_doc(ref)
    events = []
    doc.subscribe(events.append)
    box = add_box(doc, ref.image_id)
    assert doc.annotations(ref.image_id) == [box]
    assert [e.change for e in events] == [Change.LABELS, Change.ANNOTATIONS, Change.HISTORY]
    assert events[1].added == (box.id,)
    assert doc.history(ref.image_id).undo_text == "Add box"
    assert doc.undo(ref.image_id)
    assert doc.annotations(ref.image_id) == []
    assert events[-2].removed == (box.id,)
    assert doc.redo(ref.image_id)
    assert doc.annotations(ref.image_id) == [box]  # same id, same timestamps
    assert not doc.redo(ref.image_id)


def test_new_edit_clears_redo():
    ref = raster_ref()
    doc = new_doc(ref)
    first = add_box(doc, ref.image_id)
    second = add_box(doc, ref.image_id)
    doc.undo(ref.image_id)
    assert doc.history(ref.image_id).can_redo
    doc.execute(SetLabel(ref.image_id, [first.id], "cyst"))
    assert not doc.history(ref.image_id).can_redo
    assert not doc.redo(ref.image_id)
    assert doc.find(ref.image_id, second.id) is None


def test_undo_limit_keeps_the_newest_steps():
    ref = raster_ref()
    doc = new_doc(ref, undo_limit=100)
    box = add_box(doc, ref.image_id)
    for i in range(1, 151):  # 150 moves, each its own step
        doc.execute(SetGeometry(ref.image_id, box.id, i, 0, i + 5, 5))
    assert len(doc.history(ref.image_id)) == 100
    undone = 0
    while doc.undo(ref.image_id):
        undone += 1
    assert undone == 100
    assert doc.annotation(ref.image_id, box.id).x1 == 50  # state after move 50: older steps fell off
    assert not doc.history(ref.image_id).can_undo
    small = new_doc(raster_ref(), undo_limit=3)
    for i in range(5):
        add_box(small, raster_ref().image_id, (i, i, i + 1, i + 1))
    assert len(small.history(raster_ref().image_id)) == 3
    with pytest.raises(ValueError, match="undo limit must be at least 1"):
        UndoStack(limit=0)


def test_drag_moves_merge_into_one_step():
    ref = raster_ref()
    doc = new_doc(ref)
    box = add_box(doc, ref.image_id, (0, 0, 10, 10))
    other = add_box(doc, ref.image_id, (20, 20, 30, 30))
    for step in range(1, 6):
        doc.execute(SetGeometry(ref.image_id, box.id, step, step, 10 + step, 10 + step, drag=1))
    doc.execute(SetGeometry(ref.image_id, box.id, 5, 5, 25, 25, drag=1))  # resize at the end of the drag
    assert len(doc.history(ref.image_id)) == 3
    assert doc.history(ref.image_id).undo_text == "Resize box"
    doc.execute(SetGeometry(ref.image_id, box.id, 6, 6, 26, 26, drag=2))  # a new drag: a new step
    doc.execute(SetGeometry(ref.image_id, other.id, 0, 0, 1, 1, drag=2))  # same token, other box
    doc.execute(SetGeometry(ref.image_id, other.id, 0, 0, 2, 2))  # no token: never merges
    doc.execute(SetGeometry(ref.image_id, other.id, 0, 0, 3, 3))
    assert len(doc.history(ref.image_id)) == 7
    for _ in range(4):
        doc.undo(ref.image_id)
    assert doc.annotation(ref.image_id, box.id).rect == (5, 5, 25, 25)
    doc.undo(ref.image_id)
    assert doc.annotation(ref.image_id, box.id).rect == (0, 0, 10, 10)  # the whole first drag at once
    doc.redo(ref.image_id)
    assert doc.annotation(ref.image_id, box.id).rect == (5, 5, 25, 25)


def test_multi_delete_is_one_step_and_undo_restores_order():
    ref = raster_ref()
    doc = new_doc(ref)
    boxes = [add_box(doc, ref.image_id, (i, i, i + 2, i + 2)) for i in range(4)]
    before = doc.annotations(ref.image_id)
    doc.execute(RemoveAnnotations(ref.image_id, [boxes[0].id, boxes[2].id]))
    assert [a.id for a in doc.annotations(ref.image_id)] == [boxes[1].id, boxes[3].id]
    assert doc.history(ref.image_id).undo_text == "Delete 2 annotations"
    doc.undo(ref.image_id)
    assert doc.annotations(ref.image_id) == before
    with pytest.raises(KeyError):
        doc.execute(RemoveAnnotations(ref.image_id, [boxes[1].id, "nope"]))
    assert doc.annotations(ref.image_id) == before  # a failing command changes nothing


def test_edits_of_model_boxes_mark_them_corrected():
    ref = raster_ref()
    doc = new_doc(ref)
    model = add_box(doc, ref.image_id, source="model", score=0.8)
    user = add_box(doc, ref.image_id, (3, 3, 8, 8))
    doc.execute(SetNote(ref.image_id, model.id, "looks fine"))
    assert doc.annotation(ref.image_id, model.id).review is Review.PENDING  # a note is no correction
    doc.execute(SetLabel(ref.image_id, [model.id, user.id], "mass"))
    assert doc.history(ref.image_id).undo_text == "Label as mass"
    relabelled = doc.annotation(ref.image_id, model.id)
    assert relabelled.review is Review.CORRECTED and relabelled.label == "mass"
    assert relabelled.modified > model.modified and relabelled.created == model.created
    assert doc.annotation(ref.image_id, user.id).review is Review.ACCEPTED
    assert doc.label("mass").color != doc.label("nodule").color
    doc.undo(ref.image_id)
    assert [a.label for a in doc.boxes(ref.image_id)] == ["nodule", "nodule"]
    assert doc.annotation(ref.image_id, model.id).review is Review.PENDING


def test_review_decisions_and_progress():
    a, b = raster_ref("/d/a.png"), raster_ref("/d/b.png")
    doc = new_doc(a, b)
    boxes = [add_box(doc, a.image_id, source="model") for _ in range(3)]
    assert doc.progress().pending_annotations == 3
    doc.execute(SetReview(a.image_id, [boxes[0].id, boxes[1].id], "accepted"))
    doc.execute(SetReview(a.image_id, [boxes[2].id], Review.REJECTED))
    assert [x.review for x in doc.boxes(a.image_id)] == [Review.ACCEPTED, Review.ACCEPTED, Review.REJECTED]
    assert doc.history(a.image_id).undo_text == "Reject annotation"
    assert not doc.execute(SetReview(a.image_id, [boxes[2].id], Review.REJECTED))  # no-op: not recorded
    assert doc.images_needing_review() == [a.image_id, b.image_id]
    doc.execute(SetImageReviewed(b.image_id))
    progress = doc.progress()
    assert (progress.reviewed_images, progress.total_images, progress.pending_annotations) == (1, 2, 0)
    assert doc.images_needing_review() == [a.image_id]
    doc.undo(b.image_id)
    assert doc.progress().reviewed_images == 0
    assert doc.history(a.image_id).undo_text == "Reject annotation"  # histories are per image


def test_image_labels_are_annotations_of_their_own_kind():
    ref = raster_ref()
    doc = new_doc(ref)
    label = doc.new_image_label(ref.image_id, "tuberculosis", score=0.92)
    doc.execute(AddAnnotations(ref.image_id, [label]))
    assert doc.image_labels(ref.image_id) == [label] and doc.boxes(ref.image_id) == []
    assert label.source is Source.CLASSIFIER and label.review is Review.PENDING
    doc.execute(SetLabel(ref.image_id, [label.id], "normal"))
    assert doc.image_labels(ref.image_id)[0].review is Review.CORRECTED
    with pytest.raises(TypeError):
        doc.execute(SetGeometry(ref.image_id, label.id, 0, 0, 1, 1))


def test_rename_merge_and_remove_labels():
    ref = raster_ref()
    doc = new_doc(ref)
    box = add_box(doc, ref.image_id, label="nodul")
    color = doc.label("nodul").color
    doc.execute(RemoveAnnotations(ref.image_id, [box.id]))
    doc.rename_label("nodul", "nodule")
    assert doc.label("nodule").color == color and [x.name for x in doc.labels] == ["nodule"]
    doc.undo(ref.image_id)  # the restored box follows the rename
    assert doc.annotation(ref.image_id, box.id).label == "nodule"
    add_box(doc, ref.image_id, label="mass")
    doc.rename_label("mass", "nodule")  # onto an existing label: merge
    assert [x.name for x in doc.labels] == ["nodule"]
    assert {b.label for b in doc.boxes(ref.image_id)} == {"nodule"}
    with pytest.raises(ValueError, match="'nodule' is used by 2 annotation"):
        doc.remove_label("nodule")
    doc.ensure_label("unused")
    doc.set_label_color("unused", "#00FF00")
    assert doc.label("unused").color == "#00ff00"
    doc.remove_label("unused")
    assert [x.name for x in doc.labels] == ["nodule"]
    with pytest.raises(ValueError, match="colour must look like #rrggbb"):
        doc.set_label_color("nodule", "green")


def test_distinct_colors_are_far_apart():
    colors: list[str] = []
    for _ in range(12):
        colors.append(distinct_color(colors))
    hues = [_hue(c) for c in colors]
    assert len(set(colors)) == 12
    closest = min(_hue_distance(a, b) for i, a in enumerate(hues) for b in hues[i + 1 :])
    assert closest > 0.03  # > 10 degrees of hue even with 12 labels
    assert distinct_color(colors) == distinct_color(list(colors))  # deterministic


def test_listener_failures_and_unsubscribe():
    ref = raster_ref()
    doc = new_doc(ref)
    seen = []

    def broken(event):
        raise RuntimeError("view bug")

    doc.subscribe(broken)
    unsubscribe = doc.subscribe(seen.append)
    box = add_box(doc, ref.image_id)
    assert doc.find(ref.image_id, box.id) == box and seen
    unsubscribe()
    count = len(seen)
    doc.undo(ref.image_id)
    assert len(seen) == count


def test_dirty_tracking_and_last_frame():
    ref = series_ref()
    doc = new_doc(ref)
    doc.mark_saved()
    assert not doc.dirty
    doc.set_last_frame(ref.image_id, 2)
    assert doc.dirty and doc.image_state(ref.image_id).last_frame == 2
    assert not doc.history(ref.image_id).can_undo  # viewing is not an edit
    with pytest.raises(IndexError):
        doc.set_last_frame(ref.image_id, 3)


def test_resorted_series_rebinds_boxes_by_sop_instance_uid():
    ref = series_ref(3)
    doc = new_doc(ref)
    box = add_box(doc, ref.image_id, frame=2)  # on SOP 1.2.3.2
    resorted = replace(ref, frames=tuple(reversed(ref.frames)), paths=tuple(reversed(ref.paths)))
    assert doc.add_image(resorted) == ref.image_id
    assert doc.annotation(ref.image_id, box.id).frame == 0
    moved_folder = replace(
        resorted,
        image_id="/elsewhere/multi.dcm",
        frames=tuple(FrameSource("/elsewhere/" + f.path, f.sop_instance_uid, 1) for f in resorted.frames),
    )
    assert doc.add_image(moved_folder) == "/elsewhere/multi.dcm"  # same SOP UIDs: the annotations follow
    assert not doc.has_image(ref.image_id)
    assert [b.id for b in doc.boxes("/elsewhere/multi.dcm")] == [box.id]


def test_merge_imports_new_annotations_as_one_step():
    ref = raster_ref()
    source = new_doc(ref)
    boxes = [add_box(source, ref.image_id, (i, i, i + 1, i + 1), label="cyst") for i in range(3)]
    target = new_doc(ref)
    existing = add_box(target, ref.image_id)
    target.execute(AddAnnotations(ref.image_id, [boxes[0]]))
    assert target.merge(source) == 2
    assert [a.id for a in target.annotations(ref.image_id)] == [existing.id, boxes[0].id, boxes[1].id, boxes[2].id]
    source.ensure_label("mass", "#123456")
    target.set_label_color("cyst", "#654321")
    target.merge(source)  # nothing new to add; labels: new ones keep their colour, known ones stay
    assert (target.label("mass").color, target.label("cyst").color) == ("#123456", "#654321")
    target.undo(ref.image_id)
    assert len(target.annotations(ref.image_id)) == 2
