"""Foreign SRs read tolerantly (issue 22): other tools' reports, mutated reports, damaged files.

The reports are built with highdicom the way OHIF (TID 1501 groups whose NUMs are INFERRED FROM
a SCOORD: lengths as POLYLINE, ellipse and circle ROIs with an area, points) and 3D Slicer
(TID 1410 with SCOORD3D regions in patient coordinates, finding sites; TID 1411 segmentation
groups) write them, on pydicom's CT_small.dcm. The contract (docs/reference/file-errors.md):
``read_sr`` never raises; what maps comes back as the matching annotation, what does not is
skipped with one warning naming it; ``load_sr`` turns a damaged file into one sentence.

Reproducible: Hypothesis runs derandomized without a database; the byte damage has a fixed seed.
"""

from __future__ import annotations

import copy
import io
import math
import os
import random
from collections.abc import Iterator

import highdicom as hd
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.sr.codedict import codes

from engine.annotations.commands import AddAnnotations
from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.dicom_sr import build_srs
from engine.annotations.formats.sr_reader import SrFileError, SrReading, load_sr, read_sr
from engine.annotations.image_ref import image_ref_from_stack
from engine.annotations.model import Box, ImageLabel, MeasuredValue, MeasureKind, Measurement
from engine.imaging import open_paths
from tests.engine.foreign_sr import (
    CT,
    dose_report,
    issue_22_report,
    key_objects,
    ohif_report,
    planar_group,
    slicer_report,
    text_report,
    tid1500,
    to_bytes,
)

SCALE = int(os.environ.get("CLINLENS_FUZZ_SCALE", "1"))  # as in test_fuzz_files.py: e.g. 15 for a long local run
FUZZ = settings(
    max_examples=60 * SCALE,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def header() -> pydicom.Dataset:
    return pydicom.dcmread(CT)


@pytest.fixture(scope="module")
def ref():
    return image_ref_from_stack(open_paths([CT]).stacks[0])


# --- the contract -----------------------------------------------------------------------------


def assert_valid(reading: SrReading, ref) -> None:
    """What the app may rely on: known kinds, frames that exist, finite points inside the image."""
    assert isinstance(reading, SrReading)
    assert all(isinstance(w, str) and w.endswith(".") and "\n" not in w for w in reading.warnings)
    for annotation in reading.annotations:
        assert isinstance(annotation, Box | Measurement | ImageLabel)
        assert annotation.label.strip()
        if isinstance(annotation, ImageLabel):
            continue
        assert 0 <= annotation.frame < ref.n_frames
        if isinstance(annotation, Measurement):
            assert annotation.kind in MeasureKind
            points = list(annotation.points)
            assert all(math.isfinite(v.value) for v in annotation.values)
        else:
            points = [(annotation.x1, annotation.y1), (annotation.x2, annotation.y2)]
        for x, y in points:
            assert math.isfinite(x) and math.isfinite(y)
            assert 0 <= x <= ref.width and 0 <= y <= ref.height


def _by_label(reading: SrReading) -> dict[str, object]:
    return {a.label: a for a in reading.annotations}


def test_ohif_report_maps_lengths_ellipses_and_circles(header, ref):
    reading = read_sr(ohif_report(header), ref)
    assert_valid(reading, ref)
    found = _by_label(reading)
    assert set(found) == {"Nodule", "Mass", "Cyst"}
    length = found["Nodule"]
    assert (length.kind, length.points, length.frame) == (MeasureKind.LENGTH, ((10, 20), (50, 60)), 0)
    assert length.values == (MeasuredValue("length", 42.0, "mm"),) and length.summary() == "42.0 mm"
    ellipse = found["Mass"]
    assert (ellipse.kind, ellipse.points) == (MeasureKind.ELLIPSE, ((20, 30), (60, 50)))
    assert ellipse.value("area").value == 520.0
    circle = found["Cyst"]
    assert (circle.kind, circle.points) == (MeasureKind.ELLIPSE, ((54, 54), (74, 74)))
    assert len(reading.warnings) == 2  # the arrow (a point) and the freehand polygon
    point, freehand = reading.warnings
    assert "'Arrow1'" in point and "finding 'Calcification'" in point and "no point annotation" in point
    assert "'Freehand1'" in freehand and "not an axis-aligned rectangle" in freehand
    assert all(w.startswith("The SR 'OHIF measurements' from OHIF: measurement group") for w in reading.warnings)


def test_reading_again_gives_the_same_ids(header, ref):
    """Reopening a series must recognise what it read before (same ids), not add it twice."""
    report = ohif_report(header)
    assert [a.id for a in read_sr(report, ref).annotations] == [a.id for a in read_sr(report, ref).annotations]


def test_text_finding_and_empty_measured_value(header, ref):
    """The two crashes of issue 22: a Finding that is TEXT, a NUM with no value (both allowed)."""
    reading = read_sr(issue_22_report(header), ref)
    assert_valid(reading, ref)
    nodule = _by_label(reading)["spiculated nodule"]
    assert (nodule.kind, nodule.values, nodule.summary()) == (MeasureKind.LENGTH, (), "")
    assert {"Mass", "Cyst"} <= set(_by_label(reading)) and len(reading.warnings) == 2


def test_rectangles_are_boxes_or_rectangle_rois(header, ref):
    area = hd.sr.Measurement(name=codes.SCT.Area, value=300.0, unit=codes.UCUM.SquareMillimeter)
    corners = [[5, 6], [35, 6], [35, 26], [5, 26], [5, 6]]
    groups = [
        planar_group(header, "Box", "POLYLINE", corners),
        planar_group(header, "Rectangle", "POLYLINE", corners, [area]),
        planar_group(header, "Rotated", "ELLIPSE", [[10, 10], [40, 40], [30, 20], [20, 30]], [area]),
        planar_group(header, "Outside", "POLYLINE", [[100, 100], [140, 100]]),
        planar_group(header, "Path", "POLYLINE", [[1, 1], [5, 5], [9, 1]]),
    ]
    reading = read_sr(tid1500(header, groups, "Rectangles", "Other"), ref)
    assert_valid(reading, ref)
    box, rectangle = reading.annotations
    assert isinstance(box, Box) and box.rect == (5, 6, 35, 26)
    assert (rectangle.kind, rectangle.points) == (MeasureKind.RECTANGLE, ((5, 6), (35, 26)))
    rotated, outside, path = reading.warnings
    assert "'Rotated'" in rotated and "ELLIPSE is rotated" in rotated
    assert "'Outside'" in outside and "outside the 128×128 image" in outside
    assert "'Path'" in path and "POLYLINE of 3 points" in path


def test_slicer_report_places_scoord3d_on_the_slice(header, ref):
    reading = read_sr(slicer_report(header), ref)
    assert_valid(reading, ref)
    (line,) = reading.annotations
    assert (line.kind, line.frame, line.label) == (MeasureKind.LENGTH, 0, "Nodule")
    assert np.allclose(line.points, [(20, 30), (60, 30)], atol=1e-3)
    assert line.values == (MeasuredValue("length", 26.5, "mm"),)
    point, off_plane, segment = reading.warnings  # "Elsewhere" is about another series: no warning
    assert "'Point_1'" in point and "POINT" in point
    assert "'Line_2'" in off_plane and "do not lie on one slice" in off_plane
    assert "'Segment_1'" in segment and "segmentation" in segment


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (dose_report, "is an X-Ray Radiation Dose SR titled 'X-Ray Radiation Dose Report' (TID 10011)"),
        (text_report, "is a Basic Text SR titled 'Diagnostic Imaging Report'"),
        (key_objects, "is a Key Object Selection Document titled 'Of Interest'"),
    ],
)
def test_other_documents_are_skipped_with_one_sentence(header, ref, build, expected):
    reading = read_sr(build(header), ref)
    assert reading.annotations == () and not reading.measurement_report
    (warning,) = reading.warnings
    assert expected in warning and warning.endswith("nothing was imported from it.")


def test_clinlens_round_trip_keeps_every_kind(header, ref):
    doc = AnnotationDocument()
    doc.add_image(ref)
    box = doc.new_box(ref.image_id, 0, 10.25, 12, 30, 40.5, "nodule")
    label = doc.new_image_label(ref.image_id, "emphysema", score=0.7, review="accepted")  # exports keep reviewed
    measurements = [
        Measurement(
            id=f"{n:032x}",
            kind=kind,
            frame=0,
            points=points,
            values=values,
            sop_instance_uid=header.SOPInstanceUID,
            frame_number=1,
        )
        for n, (kind, points, values) in enumerate(
            [
                (MeasureKind.LENGTH, ((1, 2), (30, 40)), (MeasuredValue("length", 24.0, "mm"),)),
                (MeasureKind.ANGLE, ((1, 2), (30, 40), (60, 2)), (MeasuredValue("angle", 70.0, "deg"),)),
                (MeasureKind.ELLIPSE, ((10, 20), (50, 30)), (MeasuredValue("area", 90.0, "mm2"),)),
                (MeasureKind.RECTANGLE, ((10, 20), (50, 30)), (MeasuredValue("area", 99.0, "mm2"),)),
            ],
            start=1,
        )
    ]
    doc.execute(AddAnnotations(ref.image_id, [box, label, *measurements]))
    (sr,) = build_srs(doc).values()
    reading = read_sr(pydicom.dcmread(io.BytesIO(to_bytes(sr))), ref)
    assert reading.warnings == ()
    back = {a.id: a for a in reading.annotations}
    assert back[box.id].rect == pytest.approx(box.rect) and back[label.id].label == "emphysema"
    for original in measurements:
        got = back[original.id]
        assert (got.kind, got.values) == (original.kind, original.values)
        assert np.allclose(got.points, original.points)


# --- Hypothesis over the content tree ---------------------------------------------------------


def _items(dataset: pydicom.Dataset) -> Iterator[pydicom.Dataset]:
    """Every dataset of the tree below ``dataset``: content items, codes, values, references."""
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield item
                yield from _items(item)


NUMERIC_VALUE, REFERENCED_FRAME_NUMBER = 0x0040A30A, 0x00081160
GRAPHIC_TYPES = ["POINT", "MULTIPOINT", "POLYLINE", "POLYGON", "CIRCLE", "ELLIPSE", "ELLIPSOID", "XX"]
TEXT_ATTRIBUTES = ["TextValue", "UID", "CodeMeaning", "ReferencedSOPInstanceUID", "TemplateIdentifier"]
VALUE_TYPES = ["CONTAINER", "CODE", "TEXT", "NUM", "SCOORD", "SCOORD3D", "IMAGE", "UIDREF", "PNAME", "COMPOSITE", "XYZ"]
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 1e308, -1e308, 127.999, 128.0, 128.001, 64.5]),
    st.integers(-(2**40), 2**40),
)
TEXTS = st.one_of(st.text(max_size=30), st.sampled_from(["", " ", "\x00", "NaN", "1e400", "abc", "2.25.1" * 20]))


ACTIONS = {  # what each edit does, and which datasets of the tree it can hit
    "delete": lambda item: True,
    "empty": lambda item: any(e.VR == "SQ" for e in item),
    "drop_item": lambda item: bool(item.get("ContentSequence")),
    "value_type": lambda item: "ValueType" in item,
    "graphic": lambda item: item.get("ValueType") in ("SCOORD", "SCOORD3D"),
    "number": lambda item: "NumericValue" in item,
    "text": lambda item: True,
    "frame": lambda item: "ReferencedSOPInstanceUID" in item,
}


@st.composite
def mutated(draw, report: pydicom.Dataset) -> pydicom.Dataset:
    """A copy of ``report`` with one to four damaging edits anywhere in its content tree."""
    report = copy.deepcopy(report)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(sorted(ACTIONS)))
        targets = [i for i in [report, *_items(report)] if ACTIONS[action](i)]
        if targets:
            _edit(draw, action, draw(st.sampled_from(targets)))
    return report


def _edit(draw, action: str, item: pydicom.Dataset) -> None:
    keywords = [e.keyword for e in item if e.keyword]
    with pydicom.config.disable_value_validation():
        if action == "delete":
            delattr(item, draw(st.sampled_from(keywords)))
        elif action == "empty":
            setattr(item, draw(st.sampled_from([k for k in keywords if item[k].VR == "SQ"])), [])
        elif action == "drop_item":
            del item.ContentSequence[draw(st.integers(0, len(item.ContentSequence) - 1))]
        elif action == "value_type":
            item.ValueType = draw(st.sampled_from(VALUE_TYPES))
        elif action == "graphic":
            if draw(st.booleans()):
                item.GraphicData = draw(st.lists(NUMBERS, max_size=12))
            else:
                item.GraphicType = draw(st.sampled_from(GRAPHIC_TYPES))
        elif action == "number":
            # LO, not DS: a value no DS may hold, as another tool's writer leaves it (wrong VR)
            value = draw(st.sampled_from(["NaN", "inf", "-inf", "1e400", "abc", "", "12.5", "1" * 16]))
            item.add_new(NUMERIC_VALUE, "LO", value)
        elif action == "text":
            attribute = draw(st.sampled_from(TEXT_ATTRIBUTES))
            setattr(item, attribute, draw(TEXTS))
        elif action == "frame":
            value = draw(st.sampled_from([0, -1, 2, 10**9, "x", "1\\2"]))
            item.add_new(REFERENCED_FRAME_NUMBER, "IS" if isinstance(value, int) else "LO", value)


@pytest.fixture(scope="module")
def both_reports(header) -> list[pydicom.Dataset]:
    return [ohif_report(header), slicer_report(header)]


@FUZZ
@given(data=st.data())
def test_mutated_reports_never_raise_and_give_valid_annotations(both_reports, ref, data):
    report = data.draw(mutated(data.draw(st.sampled_from(both_reports))))
    assert_valid(read_sr(report, ref), ref)


# --- damaged files ----------------------------------------------------------------------------


def _damaged(valid: bytes, seed: int, count: int) -> Iterator[bytes]:
    """Seeded truncations and bit flips, as a cut transfer or a bad disk leaves a file."""
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(valid)
        if rng.random() < 0.4:
            del data[rng.randrange(132, len(data)) :]
        else:
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(128, len(data))] ^= 1 << rng.randrange(8)
        yield bytes(data)


def test_damaged_files_give_one_sentence_or_a_valid_reading(both_reports, ref, tmp_path):
    outcomes = {"refused": 0, "read": 0}
    corpus = [raw for seed, valid in enumerate(both_reports) for raw in _damaged(to_bytes(valid), seed, 40 * SCALE)]
    for number, raw in enumerate(corpus):
        path = tmp_path / f"damaged-{number}.dcm"
        path.write_bytes(raw)
        try:
            report = load_sr(path)
        except SrFileError as err:
            message = str(err)
            assert path.name in message and message.endswith(".") and "\n" not in message
            outcomes["refused"] += 1
            continue
        assert_valid(read_sr(report, ref), ref)
        outcomes["read"] += 1
    assert outcomes["refused"] and outcomes["read"]  # the corpus holds both kinds


def test_a_file_that_is_not_dicom_is_one_sentence(tmp_path):
    path = tmp_path / "report.dcm"
    path.write_bytes(b"not a DICOM file at all")
    with pytest.raises(SrFileError, match=r"^The SR file report\.dcm could not be read: InvalidDicomError"):
        load_sr(path)
