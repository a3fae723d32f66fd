"""Measurements: lengths and ROIs on the sphere phantom, in the document, in CSV and DICOM SR."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pydicom
import pytest

from engine.annotations import (
    AddAnnotations,
    AnnotationDocument,
    MeasureKind,
    PlanePlacement,
    SetMeasurement,
    image_ref_from_stack,
    load_document,
    save_document,
)
from engine.annotations.formats import export_coco, export_csv, export_sr
from engine.annotations.measure import HOUNSFIELD, graphic_points, measure, modality_unit
from engine.imaging import Plane, frame_from_array, load_volume, open_image
from tests.engine.dicom_tools import dciodvfy_errors
from tests.engine.phantom import SPHERE_HU, Phantom


@pytest.fixture(scope="module")
def phantom_volume(tmp_path_factory):
    phantom = Phantom()
    stack = open_image(phantom.write_series(tmp_path_factory.mktemp("phantom") / "series"))
    return phantom, stack, load_volume(stack)


def _edges(profile: np.ndarray) -> tuple[float, float]:
    """Pixel edges of the run of sphere pixels in a profile (first pixel's left, last pixel's right)."""
    inside = np.flatnonzero(profile > (SPHERE_HU - 1000) / 2)
    return float(inside[0]), float(inside[-1] + 1)


@pytest.mark.parametrize("plane", list(Plane))
def test_length_across_the_sphere_is_its_diameter_within_one_voxel(phantom_volume, plane):
    phantom, _, volume = phantom_volume
    index, x, y = (float(v) for v in volume.patient_to_display(plane, phantom.centre))
    frame = volume.plane_frame(plane, round(index))
    hu = frame.modality_values()
    pixel = volume.axes(plane).pixel_mm
    for profile, fixed, vertical in ((hu[int(y), :], y, False), (hu[:, int(x)], x, True)):
        a, b = _edges(profile)
        points = ((fixed, a), (fixed, b)) if vertical else ((a, fixed), (b, fixed))
        (length,) = measure(MeasureKind.LENGTH, points, spacing=(pixel, pixel))
        # one voxel along the sampled axis: the slice spacing when it runs along the slices
        axis = volume.axes(plane).v if vertical else volume.axes(plane).u
        assert length.unit == "mm"
        assert abs(length.value - 2 * phantom.radius_mm) <= axis.voxel_mm, (plane, vertical, length.value)


def test_roi_inside_the_sphere_reports_its_hu(phantom_volume):
    phantom, _, volume = phantom_volume
    for plane in Plane:
        index, x, y = (float(v) for v in volume.patient_to_display(plane, phantom.centre))
        pixel = volume.axes(plane).pixel_mm
        r = 5.0 / pixel  # 5 mm inside a 10 mm sphere
        for kind in (MeasureKind.ELLIPSE, MeasureKind.RECTANGLE):
            values = {
                v.name: v
                for v in measure(
                    kind,
                    ((x - r, y - r), (x + r, y + r)),
                    spacing=(pixel, pixel),
                    frame=volume.plane_frame(plane, round(index)),
                    unit=modality_unit("CT"),
                )
            }
            assert abs(values["mean"].value - SPHERE_HU) <= 0.5 and values["mean"].unit == HOUNSFIELD
            assert values["min"].value == values["max"].value == SPHERE_HU and values["std"].value == 0
            expected_area = math.pi * 25 if kind is MeasureKind.ELLIPSE else 100.0
            assert values["area"].value == pytest.approx(expected_area) and values["area"].unit == "mm2"
            assert values["pixels"].value == pytest.approx(expected_area / pixel**2, rel=0.15)


def test_roi_over_air_and_sphere_reports_both():
    """A rectangle half over a 100 / 0 step: mean 50, min 0, max 100 (stored values, no rescale)."""
    frame = frame_from_array(np.hstack([np.zeros((4, 4), np.int16), np.full((4, 4), 100, np.int16)]))
    values = {v.name: v.value for v in measure("rectangle", ((2, 0), (6, 4)), spacing=(0.5, 2.0), frame=frame)}
    assert values == {"area": 4 * 2.0 * 4 * 0.5, "mean": 50.0, "std": 50.0, "min": 0.0, "max": 100.0, "pixels": 16.0}


def test_angle_uses_physical_spacing():
    # (0,0)-(10,0) and (0,0)-(0,10) in pixels is 90° whatever the spacing
    (right,) = measure("angle", ((10, 0), (0, 0), (0, 10)), spacing=(3.0, 0.5))
    assert right.value == pytest.approx(90.0) and right.unit == "deg"
    # a pixel diagonal is 45° only for square pixels: rows 2 mm, columns 1 mm -> atan(2)
    (diagonal,) = measure("angle", ((10, 0), (0, 0), (10, 10)), spacing=(2.0, 1.0))
    assert diagonal.value == pytest.approx(math.degrees(math.atan(2.0)))
    (no_spacing,) = measure("length", ((0, 0), (3, 4)), spacing=None)
    assert (no_spacing.value, no_spacing.unit) == (5.0, "px")


def _document_with_measurements(stack, volume, phantom):
    doc = AnnotationDocument()
    image_id = doc.add_image(image_ref_from_stack(stack))
    spacing = (stack.spacing.row_mm, stack.spacing.col_mm)
    k, r, c = phantom.centre_voxel
    native_frame = volume.geometry.frame_indices[k]
    length_points = ((c - 5.0, r + 0.5), (c + 6.0, r + 0.5))
    length = doc.new_measurement(
        image_id, "length", native_frame, length_points, measure("length", length_points, spacing=spacing)
    )
    index, x, y = (float(v) for v in volume.patient_to_display(Plane.CORONAL, phantom.centre))
    pixel = volume.axes(Plane.CORONAL).pixel_mm
    roi_points = ((x - 4, y - 4), (x + 4, y + 4))
    outline = graphic_points("ellipse", roi_points)
    placement = PlanePlacement(
        "coronal",
        round(index),
        tuple(
            tuple(float(v) for v in volume.display_to_patient(Plane.CORONAL, round(index), px, py))
            for px, py in outline
        ),
        pixel,
    )
    roi = doc.new_measurement(
        image_id,
        "ellipse",
        native_frame,
        roi_points,
        measure(
            "ellipse",
            roi_points,
            spacing=(pixel, pixel),
            frame=volume.plane_frame(Plane.CORONAL, round(index)),
            unit=HOUNSFIELD,
        ),
        label="lesion",
        placement=placement,
    )
    doc.execute(AddAnnotations(image_id, [length, roi]))
    return doc, image_id, length, roi


def test_measurements_live_in_the_document_with_undo_and_save(phantom_volume, tmp_path):
    phantom, stack, volume = phantom_volume
    doc, image_id, length, roi = _document_with_measurements(stack, volume, phantom)
    assert doc.measurements(image_id) == [length, roi]
    assert doc.measurements(image_id, frame=length.frame) == [length]  # the ROI is on a reformat
    assert doc.placed(image_id) == [roi] and doc.boxes(image_id) == []
    moved = ((length.points[0][0], 0.5), (length.points[1][0] + 2, 0.5))
    assert doc.execute(SetMeasurement(image_id, length.id, moved, measure("length", moved, spacing=(0.75, 0.75))))
    assert doc.annotation(image_id, length.id).values[0].value == pytest.approx(13 * 0.75)
    doc.undo(image_id)
    assert doc.annotation(image_id, length.id) == length
    path = tmp_path / "annotations.json"
    save_document(doc, path)
    loaded = load_document(path)
    assert loaded.annotations(image_id) == [length, roi]
    assert loaded.annotation(image_id, roi.id).placement.points_mm == roi.placement.points_mm
    doc.undo(image_id)
    assert doc.measurements(image_id) == []


def test_csv_lists_measurements_with_their_values(phantom_volume, tmp_path):
    phantom, stack, volume = phantom_volume
    doc, _, length, roi = _document_with_measurements(stack, volume, phantom)
    [path] = export_csv(doc, tmp_path / "m.csv")
    rows = {row["annotation_id"]: row for row in csv.DictReader(path.open(newline="", encoding="utf-8"))}
    assert float(rows[length.id]["length_mm"]) == pytest.approx(11 * 0.75) and rows[length.id]["kind"] == "length"
    assert float(rows[roi.id]["mean"]) == SPHERE_HU and rows[roi.id]["value_unit"] == HOUNSFIELD
    assert rows[roi.id]["plane"] == "coronal" and len(rows[roi.id]["points_mm"].split(";")) == 4


def _content_items(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _content_items(item)


def test_sr_export_holds_measurements_with_units(phantom_volume, tmp_path):
    phantom, stack, volume = phantom_volume
    doc, _, _length, _roi = _document_with_measurements(stack, volume, phantom)
    [path] = export_sr(doc, tmp_path / "sr")
    assert dciodvfy_errors(path) == []
    sr = pydicom.dcmread(path)
    numbers = {}
    for item in _content_items(sr):
        if item.ValueType == "NUM":
            value = item.MeasuredValueSequence[0]
            numbers.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(
                (float(value.NumericValue), value.MeasurementUnitsCodeSequence[0].CodeValue)
            )
    assert numbers["Length"] == [(pytest.approx(11 * 0.75), "mm")]
    assert numbers["Mean"] == [(SPHERE_HU, "[hnsf'U]")] and numbers["Area"][0][1] == "mm2"
    graphic = {item.ValueType: item for item in _content_items(sr) if item.ValueType in ("SCOORD", "SCOORD3D")}
    assert graphic["SCOORD"].GraphicType == "POLYLINE" and len(graphic["SCOORD"].GraphicData) == 4
    assert graphic["SCOORD3D"].GraphicType == "ELLIPSE"
    assert graphic["SCOORD3D"].ReferencedFrameOfReferenceUID == phantom.frame_of_reference_uid
    points = np.asarray(graphic["SCOORD3D"].GraphicData, dtype=float).reshape(-1, 3)
    assert np.allclose(points.mean(axis=0), phantom.centre, atol=0.4)  # the ROI is centred on the sphere


def test_box_on_a_reformat_exports_to_csv_and_sr_but_not_as_a_picture_box(phantom_volume, tmp_path):
    phantom, stack, volume = phantom_volume
    doc, image_id, _, roi = _document_with_measurements(stack, volume, phantom)
    box = replace(doc.new_box(image_id, roi.frame, 10, 10, 20, 20, "lesion"), placement=roi.placement)
    doc.execute(AddAnnotations(image_id, [box]))
    rows = {row["annotation_id"]: row for row in csv.DictReader(export_csv(doc, tmp_path / "a.csv")[0].open())}
    assert rows[box.id]["kind"] == "box" and rows[box.id]["plane"] == "coronal"
    assert len(rows[box.id]["points_mm"].split(";")) == 4
    [sr_path] = export_sr(doc, tmp_path / "sr")
    scoord3d = [i for i in _content_items(pydicom.dcmread(sr_path)) if i.ValueType == "SCOORD3D"]
    assert len(scoord3d) == 2
    [coco] = export_coco(doc, tmp_path / "coco.json")
    assert json.loads(coco.read_text())["annotations"] == []  # no picture holds a reformat's box
