"""Exports and imports on a real image set: frames > 0, non-square pixels and images, DICOM SR."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import numpy as np
import pydicom
import pytest

from engine.annotations import AddAnnotations, Review, load_document
from engine.annotations.formats import (
    FORMATS,
    ExportError,
    export_coco,
    export_csv,
    export_json,
    export_sr,
    export_voc,
    export_yolo,
    read_coco,
)
from engine.annotations.formats.dicom_sr import tracking_uid
from engine.annotations.persistence import DamagedDocumentError
from tests.engine.dicom_tools import dciodvfy_errors
from tests.engine.test_annotations_persistence import assert_same_document
from tests.engine.test_annotations_support import annotated_set, new_doc, raster_ref


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("set")
    doc, refs = annotated_set(folder / "images")
    return doc, refs, folder


def test_image_refs_from_real_stacks(project):
    doc, refs, _ = project
    ct, us, png = refs["ct"], refs["us"], refs["png"]
    header = pydicom.dcmread(ct.paths[0], stop_before_pixels=True)
    assert (ct.kind, ct.width, ct.height, ct.n_frames) == ("dicom", 128, 128, 1)
    assert ct.frames[0].sop_instance_uid == header.SOPInstanceUID
    assert (ct.spacing.row_mm, ct.spacing.col_mm, ct.spacing.source) == (0.5, 0.8, "PixelSpacing")
    assert (ct.study_instance_uid, ct.series_instance_uid) == (header.StudyInstanceUID, header.SeriesInstanceUID)
    assert ct.image_id == f"series:{header.SeriesInstanceUID}"
    assert (us.width, us.height, us.n_frames, us.channels) == (320, 240, 30, 3)
    assert [f.frame_number for f in us.frames] == list(range(1, 31))
    assert len({f.sop_instance_uid for f in us.frames}) == 1
    assert (png.kind, png.width, png.height, png.frames[0].sop_instance_uid) == ("raster", 40, 30, None)
    assert doc.boxes(us.image_id, 17)[0].frame_number == 18


def test_json_export_is_lossless(project, tmp_path):
    doc, _, _ = project
    [path] = export_json(doc, tmp_path / "out" / "all.json", include_pending=True, include_rejected=True)
    assert_same_document(doc, load_document(path))


def test_coco_export_layout(project, tmp_path):
    doc, refs, _ = project
    [path] = export_coco(doc, tmp_path / "coco.json", include_pending=True, include_rejected=True)
    data = json.loads(path.read_text())
    categories = {c["id"]: c["name"] for c in data["categories"]}
    assert list(categories.values()) == [label.name for label in doc.labels]
    us_images = [i for i in data["images"] if i["clinlens_image_id"] == refs["us"].image_id]
    assert [(i["frame"], i["frame_number"], i["width"], i["height"]) for i in us_images] == [
        (0, 1, 320, 240),
        (17, 18, 320, 240),
    ]
    assert us_images[1]["sop_instance_uid"] == refs["us"].frames[17].sop_instance_uid
    assert us_images[1]["file_name"].endswith("images/us.dcm") and not us_images[1]["file_name"].startswith("/")
    assert us_images[0]["reviewed"] is True and us_images[0]["image_labels"][0]["label"] == "benign"
    cyst = next(a for a in data["annotations"] if categories[a["category_id"]] == "cyst")
    assert cyst["image_id"] == us_images[1]["id"]
    assert cyst["bbox"] == [200.5, 100.0, 118.5, 139.5] and cyst["area"] == 118.5 * 139.5
    rejected = next(a for a in data["annotations"] if categories[a["category_id"]] == "calcification")
    assert (rejected["review"], rejected["source"], rejected["score"]) == ("rejected", "model", 0.31)


def test_coco_round_trip_without_loss(project, tmp_path):
    doc, refs, _ = project
    [path] = export_coco(doc, tmp_path / "sub" / "coco.json", include_pending=True, include_rejected=True)
    imported = read_coco(path)  # from the COCO file alone
    assert imported.labels == doc.labels
    for ref in doc.images:
        assert imported.annotations(ref.image_id) == doc.annotations(ref.image_id)
        assert imported.image_state(ref.image_id).reviewed == doc.image_state(ref.image_id).reviewed
    assert imported.image(refs["us"].image_id).frames[17] == refs["us"].frames[17]
    bound = read_coco(path, images=list(refs.values()))  # with the opened stacks: full descriptions
    assert bound.images == doc.images
    assert all(bound.annotations(r.image_id) == doc.annotations(r.image_id) for r in doc.images)


def test_foreign_coco_import(tmp_path):
    (tmp_path / "img").mkdir()
    path = tmp_path / "ann.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "img/a.jpg", "width": 50, "height": 40}],
                "categories": [{"id": 3, "name": "lesion"}],
                "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 5, 20, 15], "iscrowd": 0}],
            }
        )
    )
    doc = read_coco(path)
    [ref] = doc.images
    assert ref.paths == (str(tmp_path / "img" / "a.jpg"),) and (ref.width, ref.height) == (50, 40)
    [box] = doc.boxes(ref.image_id)
    assert (box.rect, box.label, box.source, box.review, box.frame) == (
        (10, 5, 30, 20),
        "lesion",
        "user",
        Review.ACCEPTED,
        0,
    )
    path.write_text(
        json.dumps(
            {
                "images": [],
                "categories": [],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
            }
        )
    )
    with pytest.raises(DamagedDocumentError, match="annotations\\[0\\]: unknown image_id"):
        read_coco(path)


def test_yolo_export(project, tmp_path):
    doc, _, _ = project
    files = export_yolo(doc, tmp_path / "yolo", include_pending=True)
    names = sorted(p.name for p in files)
    assert names == ["classes.txt", "ct.txt", "photo.txt", "us_f0001.txt", "us_f0018.txt"]
    classes = (tmp_path / "yolo" / "classes.txt").read_text().splitlines()
    assert classes == [label.name for label in doc.labels]
    [cyst] = (tmp_path / "yolo" / "us_f0018.txt").read_text().splitlines()
    cls, cx, cy, w, h = cyst.split()
    assert classes[int(cls)] == "cyst"
    assert float(cx) == pytest.approx((200.5 + 319) / 2 / 320, abs=1e-6)  # x by the width
    assert float(cy) == pytest.approx((100 + 239.5) / 2 / 240, abs=1e-6)  # y by the height
    assert (float(w), float(h)) == (pytest.approx(118.5 / 320, abs=1e-6), pytest.approx(139.5 / 240, abs=1e-6))
    ct_lines = (tmp_path / "yolo" / "ct.txt").read_text().splitlines()
    assert len(ct_lines) == 1  # the rejected model box is left out
    [edge] = (tmp_path / "yolo" / "photo.txt").read_text().splitlines()
    assert [float(v) for v in edge.split()[1:]] == pytest.approx([35 / 40, 25 / 30, 10 / 40, 10 / 30])  # clipped


def test_voc_export(project, tmp_path):
    doc, _, _ = project
    export_voc(doc, tmp_path / "voc", include_pending=True)
    root = ET.parse(tmp_path / "voc" / "us_f0018.xml").getroot()
    assert root.findtext("filename") == "us.dcm"
    assert [root.findtext(f"size/{k}") for k in ("width", "height", "depth")] == ["320", "240", "3"]
    [obj] = root.findall("object")
    assert obj.findtext("name") == "cyst"
    assert [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")] == ["201.5", "101", "319", "239.5"]
    ct = ET.parse(tmp_path / "voc" / "ct.xml").getroot()
    assert [o.findtext("name") for o in ct.findall("object")] == ["nodule"]
    edge = ET.parse(tmp_path / "voc" / "photo.xml").getroot().find("object")
    assert edge.findtext("truncated") == "1" and edge.findtext("bndbox/xmax") == "40"


def test_csv_export(project, tmp_path):
    doc, refs, _ = project
    [path] = export_csv(doc, tmp_path / "boxes.csv", include_pending=True, include_rejected=True)
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    boxes = [r for r in rows if r["kind"] == "box"]
    assert len(boxes) == 5 and len(rows) == 6
    by_id = {a.id: a for ref in doc.images for a in doc.annotations(ref.image_id)}
    for row in boxes:
        box = by_id[row["annotation_id"]]
        assert (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"])) == box.rect  # exact
        assert (row["label"], row["review"], int(row["frame_index"])) == (box.label, box.review, box.frame)
        assert int(row["slice"]) == box.frame + 1  # the number the viewer shows
    cyst = next(r for r in boxes if r["label"] == "cyst")
    assert (cyst["sop_instance_uid"], cyst["frame_number"]) == (refs["us"].frames[17].sop_instance_uid, "18")
    assert next(r for r in boxes if r["note"])["note"] == "check"
    assert any(r["note"] == "edge, clipped" for r in boxes)  # commas quoted
    assert next(r for r in rows if r["kind"] == "image_label")["label"] == "benign"


def _sr_items(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _sr_items(item)


@pytest.mark.filterwarnings('ignore:The string "PLA" is unlikely')  # the US sample's patient name
def test_dicom_sr_readable_by_pydicom(project, tmp_path):
    doc, refs, _ = project
    written = export_sr(doc, tmp_path / "sr", include_pending=True)
    assert len(written) == 2  # CT_small and the US clip are different studies
    found = {}
    for path in written:
        assert dciodvfy_errors(path) == []
        sr = pydicom.dcmread(path)
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
        assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        for group in _sr_items(sr):
            if group.get("ValueType") != "CONTAINER" or "ContentSequence" not in group:
                continue
            uids = [i.UID for i in group.ContentSequence if i.get("ValueType") == "UIDREF"]
            regions = [i for i in group.ContentSequence if i.get("ValueType") == "SCOORD"]
            findings = [
                i.ConceptCodeSequence[0].CodeMeaning
                for i in group.ContentSequence
                if i.ConceptNameCodeSequence[0].CodeMeaning == "Finding"
            ]
            if uids and regions:
                reference = regions[0].ContentSequence[0].ReferencedSOPSequence[0]
                found[uids[0]] = (
                    regions[0].GraphicType,
                    [float(v) for v in regions[0].GraphicData],
                    findings[0],
                    reference.ReferencedSOPInstanceUID,
                    reference.get("ReferencedFrameNumber"),
                )
    kept = [b for ref in (refs["ct"], refs["us"]) for b in doc.boxes(ref.image_id) if b.review is not Review.REJECTED]
    assert set(found) == {tracking_uid(b.id) for b in kept}  # rejected and raster boxes are not in the SR
    cyst = next(b for b in kept if b.label == "cyst")
    kind, points, finding, sop, frame = found[tracking_uid(cyst.id)]
    assert (kind, finding, sop, int(frame)) == ("POLYLINE", "cyst", refs["us"].frames[17].sop_instance_uid, 18)
    assert points == [200.5, 100, 319, 100, 319, 239.5, 200.5, 239.5, 200.5, 100]  # column,row = x,y
    ct_uid = refs["ct"].frames[0].sop_instance_uid
    nodule = next(b for b in kept if b.label == "nodule" and b.sop_instance_uid == ct_uid)
    _, points, _, sop, frame = found[tracking_uid(nodule.id)]
    assert points[:4] == [float(np.float32(v)) for v in (10.1, 20.25, 50.5, 20.25)]  # Graphic Data is FL
    assert frame is None  # single-frame: no frame number


def test_sr_needs_dicom_sources(tmp_path):
    ref = raster_ref(str(tmp_path / "a.png"))
    doc = new_doc(ref)
    doc.execute(AddAnnotations(ref.image_id, [doc.new_box(ref.image_id, 0, 0, 0, 5, 5, "x")]))
    with pytest.raises(ExportError, match="DICOM"):
        export_sr(doc, tmp_path / "sr")


def test_format_registry_matches_outputs():
    assert set(FORMATS) == {"coco", "yolo", "voc", "csv", "json", "sr", "seg", "nifti", "png"}
    assert {name for name, f in FORMATS.items() if f.writes_folder} == {"yolo", "voc", "sr", "seg", "nifti", "png"}
