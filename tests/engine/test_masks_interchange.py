"""Masks leave and come back: DICOM SEG (dciodvfy, highdicom), NIfTI (dcm2niix's affine), COCO RLE
(pycocotools), PNG label maps, CSV/SR values, and the one-sentence refusals of bad input."""

from __future__ import annotations

import csv
import json
import shutil

import highdicom as hd
import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from engine.annotations import (
    AddAnnotations,
    AnnotationDocument,
    DocumentError,
    MeasuredValue,
    Provenance,
    SetReview,
    image_ref_from_stack,
    save_document,
    sidecar_path,
)
from engine.annotations.formats import FORMATS, ExportError, import_annotations, import_masks
from engine.imaging import open_image
from engine.imaging.volume import load_volume
from tests.engine.dicom_tools import dciodvfy_errors, dcm2niix
from tests.engine.phantom import Phantom
from tests.engine.test_annotations_cli import run

PROVENANCE = Provenance(run="r", key="k", model="sam-vit-b-tiny", task="segment", question="box", window="40/400")
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def sphere(tmp_path_factory):
    """A phantom series opened as a document, with a mask of its sphere on every slice it crosses."""
    folder = tmp_path_factory.mktemp("phantom")
    phantom = Phantom(orientation=(0, 1, 0, 0, 0, -1))  # sagittal: dcm2niix flips and permutes its axes
    series = phantom.write_series(folder / "series")
    stack = open_image(str(series))
    volume = load_volume(stack)
    inside = volume.modality_values(volume.data) > 0
    arrays = {volume.geometry.frame_indices[k]: inside[k] for k in range(len(inside)) if inside[k].any()}
    return phantom, series, stack, volume, arrays


def sphere_doc(sphere, *, second=True):
    _, _, stack, _, arrays = sphere
    doc = AnnotationDocument()
    image_id = doc.add_image(image_ref_from_stack(stack))
    mask = doc.new_mask(image_id, arrays, "liver", values=(MeasuredValue("volume", 4.19, "mL"),))
    added = [mask]
    if second:
        first = min(arrays)
        small = np.zeros_like(arrays[first])
        small[2:6, 3:9] = True
        added.append(
            doc.new_mask(
                image_id, {first: small, first + 1: small}, "my finding", source="model", provenance=PROVENANCE
            )
        )
    doc.execute(AddAnnotations(image_id, added))
    return doc, image_id, added


def test_formats_are_registered():
    assert {"seg", "nifti", "coco", "png"} <= set(FORMATS)
    assert FORMATS["seg"].writes_folder and FORMATS["nifti"].writes_folder and FORMATS["png"].writes_folder


def test_seg_is_valid_and_reads_back_with_the_same_pixels(sphere, tmp_path):
    doc, image_id, (mask, model) = sphere_doc(sphere)
    doc.execute(SetReview(image_id, [model.id], "accepted"))
    (path,) = FORMATS["seg"].export(doc, tmp_path / "seg")
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)
    assert seg.SeriesDescription and seg.get_segment_numbers() == [1, 2]
    liver, finding = seg.get_segment_description(1), seg.get_segment_description(2)
    assert liver.segment_label == "liver" and liver.segmented_property_type.value == "10200004"
    assert liver.algorithm_type.value == "MANUAL"
    assert finding.segmented_property_type.scheme_designator == "99CLINLENS"
    assert finding.algorithm_type.value == "AUTOMATIC"
    assert finding.algorithm_identification[0].AlgorithmName == "sam-vit-b-tiny"
    ref = doc.image(image_id)
    series = {str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence}
    assert series == {ref.series_instance_uid}
    for index, array in mask.arrays().items():
        uid = ref.frames[index].sop_instance_uid
        pixels = seg.get_pixels_by_source_instance([uid], segment_numbers=[1], ignore_spatial_locations=True)
        np.testing.assert_array_equal(pixels[0, :, :, 0].astype(bool), array)
    # and back onto the series: the same masks, one undo step
    fresh, fresh_id, _ = sphere_doc(sphere, second=False)
    fresh.execute(SetReview(fresh_id, [fresh.masks(fresh_id)[0].id], "accepted"))
    assert import_masks(fresh, fresh_id, path) == 2
    imported = fresh.masks(fresh_id)[1:]
    assert [m.label for m in imported] == ["liver", "my finding"]
    assert imported[0].arrays().keys() == mask.arrays().keys()
    assert all(np.array_equal(imported[0].array(i), a) for i, a in mask.arrays().items())
    assert fresh.history(fresh_id).undo_text == "Import 2 masks"


def test_seg_of_another_series_or_shape_is_refused_and_nothing_changes(sphere, tmp_path):
    doc, image_id, _ = sphere_doc(sphere)
    (path,) = FORMATS["seg"].export(doc, tmp_path / "seg", include_pending=True)
    other_folder = Phantom(orientation=(0, 1, 0, 0, 0, -1)).write_series(tmp_path / "other")
    other = AnnotationDocument()
    other_id = other.add_image(image_ref_from_stack(open_image(str(other_folder))))
    with pytest.raises(DocumentError, match="references another series"):
        import_masks(other, other_id, path)
    assert other.masks(other_id) == [] and not other.history(other_id).can_undo
    small = AnnotationDocument()
    small_id = small.add_image(image_ref_from_stack(open_image(str(Phantom(rows=32).write_series(tmp_path / "small")))))
    seg = pydicom.dcmread(path)
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = small.image(small_id).series_instance_uid
    seg.save_as(tmp_path / "shape.dcm")
    with pytest.raises(DocumentError, match=r"64x60 frames but the open image is 32x60"):
        import_masks(small, small_id, tmp_path / "shape.dcm")
    not_seg = tmp_path / "ct.dcm"
    shutil.copy(next(sphere[1].iterdir()), not_seg)
    with pytest.raises(DocumentError, match="is not a DICOM Segmentation"):
        import_masks(doc, image_id, not_seg)
    assert len(doc.masks(image_id)) == 2


def _to_lps(affine, voxels):
    return (voxels @ affine[:3, :3].T + affine[:3, 3]) @ LPS_FROM_RAS.T


def test_nifti_affine_agrees_with_dcm2niix_and_imports_back(sphere, tmp_path):
    phantom, series, _, _, arrays = sphere
    doc, image_id, (mask, _) = sphere_doc(sphere)
    path, legend = FORMATS["nifti"].export(doc, tmp_path / "nifti")
    assert path.name.endswith(".nii.gz") and legend.name == "labels.json"
    assert json.loads(legend.read_text())["labels"] == [
        {"value": 1, "label": "liver", "color": doc.label("liver").color}
    ]
    ours = nibabel.load(path)
    data = np.asanyarray(ours.dataobj)
    assert data.dtype == np.uint8 and set(np.unique(data)) == {0, 1}  # the pending model mask is left out
    theirs = dcm2niix(series, tmp_path / "dcm2niix")
    assert sorted(theirs.shape) == sorted(data.shape)
    # every voxel of ours lands on a voxel of theirs, in patient space, within 0.01 mm
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in data.shape], indexing="ij")).reshape(3, -1).T.astype(float)
    mine = _to_lps(ours.affine, corners)
    their_corners = (
        np.array(np.meshgrid(*[(0, n - 1) for n in theirs.shape], indexing="ij")).reshape(3, -1).T.astype(float)
    )
    theirs_points = _to_lps(theirs.affine, their_corners)
    order = lambda p: p[np.lexsort(np.round(p, 2).T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(mine), order(theirs_points), atol=0.01)
    # the mask's centre is the sphere's centre as dcm2niix places the CT values
    centre = _to_lps(ours.affine, np.argwhere(data > 0).mean(axis=0))
    their_centre = _to_lps(theirs.affine, np.argwhere(theirs.get_fdata() > 0).mean(axis=0))
    np.testing.assert_allclose(centre, their_centre, atol=0.01)
    np.testing.assert_allclose(centre, phantom.centre, atol=0.5)
    # a mask in dcm2niix's axis order and flips goes back onto the right frames
    theirs_mask = nibabel.Nifti1Image((theirs.get_fdata() > 0).astype(np.uint8), theirs.affine, theirs.header)
    theirs_mask.to_filename(tmp_path / "dcm2niix" / "mask.nii.gz")
    fresh = AnnotationDocument()
    fresh_id = fresh.add_image(doc.image(image_id))
    assert import_masks(fresh, fresh_id, tmp_path / "dcm2niix" / "mask.nii.gz") == 1
    (back,) = fresh.masks(fresh_id)
    assert back.label == "label 1" and back.frame_indices == mask.frame_indices
    assert all(np.array_equal(back.array(i), a) for i, a in arrays.items())
    # our own export comes back named from labels.json
    assert import_masks(fresh, fresh_id, path) == 1 and fresh.masks(fresh_id)[1].label == "liver"


def test_nifti_on_another_grid_is_refused(sphere, tmp_path):
    doc, image_id, _ = sphere_doc(sphere)
    path, _ = FORMATS["nifti"].export(doc, tmp_path / "nifti")
    image = nibabel.load(path)
    data = np.asanyarray(image.dataobj)
    nibabel.Nifti1Image(data[:, :, :-1], image.affine).to_filename(tmp_path / "short.nii.gz")
    with pytest.raises(DocumentError, match=r"has 60x64x39 voxels but the open series has 60x64x40"):
        import_masks(doc, image_id, tmp_path / "short.nii.gz")
    shifted = image.affine.copy()
    shifted[0, 3] += 3.3
    nibabel.Nifti1Image(data, shifted).to_filename(tmp_path / "shifted.nii.gz")
    with pytest.raises(DocumentError, match="does not lie on the open series' voxel grid"):
        import_masks(doc, image_id, tmp_path / "shifted.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DocumentError, match="cannot be read as NIfTI"):
        import_masks(doc, image_id, tmp_path / "junk.nii.gz")
    assert len(doc.masks(image_id)) == 2 and doc.history(image_id).undo_text == "Add 2 annotations"


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools on numpy 2
def test_coco_rle_decodes_to_the_mask_and_imports_back(sphere, tmp_path):
    doc, image_id, (mask, model) = sphere_doc(sphere)
    (path,) = FORMATS["coco"].export(doc, tmp_path / "coco.json", include_pending=True)
    data = json.loads(path.read_text())
    entries = [a for a in data["annotations"] if a.get("clinlens_type") == "mask"]
    assert len(entries) == len(mask.frames) + len(model.frames)
    images = {i["id"]: i for i in data["images"]}
    for entry in entries:
        frame = images[entry["image_id"]]["frame"]
        source = mask if entry["clinlens_id"] == mask.id else model
        decoded = coco_mask.decode({**entry["segmentation"], "counts": entry["segmentation"]["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), source.array(frame))
        assert entry["area"] == int(source.array(frame).sum())
        rows, columns = np.nonzero(source.array(frame))
        assert entry["bbox"] == [
            columns.min(),
            rows.min(),
            columns.max() - columns.min() + 1,
            rows.max() - rows.min() + 1,
        ]
    fresh = AnnotationDocument()
    fresh_id = fresh.add_image(doc.image(image_id))
    assert import_annotations(fresh, path) == 2
    got = fresh.masks(fresh_id)
    for a, b in zip(got, [mask, model], strict=True):
        for f in ("frames", "label", "source", "review", "provenance", "score", "values", "created"):
            assert getattr(a, f) == getattr(b, f), f
    assert got == [mask, model]


def test_png_label_maps_hold_label_values(sphere, tmp_path):
    doc, _, (mask, model) = sphere_doc(sphere)
    written = FORMATS["png"].export(doc, tmp_path / "png", include_pending=True)
    legend = json.loads(written[-1].read_text())
    values = {item["label"]: item["value"] for item in legend["labels"]}
    assert values == {"liver": 1, "my finding": 2}
    assert len(written) - 1 == len(set(mask.frame_indices) | set(model.frame_indices))
    for picture in legend["pictures"]:
        pixels = np.asarray(Image.open(tmp_path / "png" / picture["file_name"]))
        assert pixels.dtype == np.uint8
        expected = np.zeros_like(pixels)
        for m, value in ((mask, 1), (model, 2)):
            if (a := m.array(picture["frame"])) is not None:
                expected[a] = value
        np.testing.assert_array_equal(pixels, expected)


def test_sixteen_bit_label_maps_when_numbers_pass_255(sphere, tmp_path):
    doc, image_id, _ = sphere_doc(sphere, second=False)
    for i in range(300):
        doc.ensure_label(f"label {i}")
    small = np.zeros((64, 60), bool)
    small[1, 1] = True
    doc.execute(AddAnnotations(image_id, [doc.new_mask(image_id, {0: small}, "label 299")]))
    written = FORMATS["png"].export(doc, tmp_path / "png")
    pixels = np.asarray(Image.open(written[0]))
    assert pixels.dtype == np.uint16 and pixels[1, 1] == 301


def test_csv_and_sr_carry_mask_values(sphere, tmp_path):
    doc, _, (mask, _) = sphere_doc(sphere)
    (path,) = FORMATS["csv"].export(doc, tmp_path / "a.csv")
    rows = [r for r in csv.DictReader(path.open()) if r["kind"] == "mask"]
    assert len(rows) == 1 and rows[0]["volume_ml"] == "4.19" and rows[0]["annotation_id"] == mask.id
    assert rows[0]["mask_slices"] == ";".join(str(i + 1) for i in mask.frame_indices)
    assert int(rows[0]["mask_pixels"]) == mask.area_pixels
    (sr_path,) = FORMATS["sr"].export(doc, tmp_path / "sr")
    assert dciodvfy_errors(sr_path) == []
    text = str(pydicom.dcmread(sr_path))
    assert "Volume" in text and "mL" in text


def test_exports_without_masks_say_so(tmp_path):
    doc = AnnotationDocument()
    for name in ("seg", "nifti", "png"):
        with pytest.raises(ExportError, match="no masks"):
            FORMATS[name].export(doc, tmp_path / name)


@pytest.mark.parametrize("name", ["seg", "nifti", "coco", "png"])
def test_command_line_exports_masks(sphere, tmp_path, capsys, name):
    series = shutil.copytree(sphere[1], tmp_path / "series")
    doc = AnnotationDocument()
    image_id = doc.add_image(image_ref_from_stack(open_image(str(series))))
    doc.execute(AddAnnotations(image_id, [doc.new_mask(image_id, sphere[4], "liver")]))
    save_document(doc, sidecar_path([series]))
    out = tmp_path / ("out.json" if name == "coco" else "out")
    assert run(["export", str(series), "--format", name, "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.exists() and "exported 1 image(s)" in capsys.readouterr().out


def test_seg_segments_are_numbered_from_one_whatever_the_label_numbers(sphere, tmp_path):
    _, _, stack, _, arrays = sphere
    doc = AnnotationDocument()
    doc.ensure_label("unused")
    image_id = doc.add_image(image_ref_from_stack(stack))
    doc.execute(AddAnnotations(image_id, [doc.new_mask(image_id, arrays, "Left Kidney")]))
    (path,) = FORMATS["seg"].export(doc, tmp_path / "seg")
    seg = hd.seg.segread(path)
    assert seg.get_segment_numbers() == [1]
    assert seg.get_segment_description(1).segmented_property_type.value == "18639004"


def test_seg_and_nifti_of_a_multi_frame_file_round_trip(tmp_path):
    path = Phantom().write_enhanced(tmp_path / "enhanced" / "ct.dcm")  # frames stored in reverse order
    stack = open_image(str(path))
    volume = load_volume(stack)
    inside = volume.modality_values(volume.data) > 0
    arrays = {volume.geometry.frame_indices[k]: inside[k] for k in range(len(inside)) if inside[k].any()}
    doc = AnnotationDocument()
    image_id = doc.add_image(image_ref_from_stack(stack))
    doc.execute(AddAnnotations(image_id, [doc.new_mask(image_id, arrays, "tumour")]))
    (seg,) = FORMATS["seg"].export(doc, tmp_path / "seg")
    assert dciodvfy_errors(seg) == []
    nifti, _ = FORMATS["nifti"].export(doc, tmp_path / "nifti")
    fresh = AnnotationDocument()
    fresh_id = fresh.add_image(doc.image(image_id))
    assert import_masks(fresh, fresh_id, seg) == 1 and import_masks(fresh, fresh_id, nifti) == 1
    assert [m.frames for m in fresh.masks(fresh_id)] == [doc.masks(image_id)[0].frames] * 2


def test_sr_read_back_leaves_mask_groups_to_the_seg(sphere, tmp_path):
    from engine.annotations.formats.sr_reader import load_sr, read_sr

    doc, image_id, _ = sphere_doc(sphere)
    (sr_path,) = FORMATS["sr"].export(doc, tmp_path / "sr")
    reading = read_sr(load_sr(sr_path), doc.image(image_id))
    assert reading.annotations == () and reading.warnings == ()
