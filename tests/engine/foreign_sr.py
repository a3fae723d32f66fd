"""DICOM SRs as other tools write them, for the foreign-SR tests (engine and app).

Built with highdicom (pydicom for the documents highdicom does not write) on pydicom's
CT_small.dcm: OHIF's TID 1501 groups whose NUMs are INFERRED FROM a SCOORD, 3D Slicer's TID 1410
groups with SCOORD3D regions and a TID 1411 segment, a CT dose report, a Basic Text SR and a
Key Object Selection. Every report comes back as plain pydicom read from bytes, as from a file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import highdicom as hd
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes

CT = get_testdata_file("CT_small.dcm")


def _tracking(name: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=name)


def _source(header: pydicom.Dataset) -> hd.sr.SourceImageForRegion:
    return hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=header.SOPClassUID, referenced_sop_instance_uid=header.SOPInstanceUID
    )


def _ohif_group(header, name: str, finding: str, graphic: str, points, value_name, value: float, unit):
    """OHIF (dcmjs): a TID 1501 group whose NUM is INFERRED FROM its SCOORD, selected from the image."""
    coordinates = hd.sr.CoordinatesForMeasurement(
        graphic_type=graphic, graphic_data=np.asarray(points, dtype=float), source_image=_source(header)
    )
    measurement = hd.sr.Measurement(name=value_name, value=value, unit=unit, referenced_coordinates=[coordinates])
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(name),
        finding_type=hd.sr.CodedConcept(value=finding[:16], scheme_designator="99OHIF", meaning=finding),
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
        measurements=[measurement],
    )


def planar_group(header, name: str, graphic: str, points, measurements=()):
    """A TID 1410 group with a 2-D region (highdicom's own way, also ClinLens')."""
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(name),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=graphic, graphic_data=np.asarray(points, dtype=float), source_image=_source(header)
        ),
        finding_type=codes.SCT.Mass,
        measurements=list(measurements) or None,
    )


def _slicer_group(name: str, graphic: str, points_mm, frame_of_reference: str, measurements=()):
    """3D Slicer: a TID 1410 group whose region is SCOORD3D in patient coordinates."""
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(name),
        referenced_region=hd.sr.ImageRegion3D(
            graphic_type=graphic,
            graphic_data=np.asarray(points_mm, dtype=float),
            frame_of_reference_uid=frame_of_reference,
        ),
        finding_type=codes.SCT.Nodule,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung, laterality=codes.SCT.Right)],
        measurements=list(measurements) or None,
    )


def _patient(header, x: float, y: float, off_plane: float = 0.0) -> list[float]:
    """The patient position of SCOORD (x, y) on CT_small's slice (pixel centres at +0.5)."""
    origin = np.asarray(header.ImagePositionPatient, dtype=float)
    row, column = np.asarray(header.ImageOrientationPatient[:3], float), np.asarray(header.ImageOrientationPatient[3:])
    dy, dx = (float(v) for v in header.PixelSpacing)
    normal = np.cross(row, column)
    return list(origin + (x - 0.5) * dx * row + (y - 0.5) * dy * column + off_plane * normal)


def tid1500(header, groups, description: str, manufacturer: str, more_evidence=()) -> pydicom.Dataset:
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[header, *more_evidence],
        content=content,
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=manufacturer,
        series_description=description,
    )
    return pydicom.dcmread(io.BytesIO(to_bytes(sr)))  # as read from a file: plain pydicom, no highdicom classes


def to_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ohif_report(header) -> pydicom.Dataset:
    mm = codes.UCUM.Millimeter
    groups = [
        _ohif_group(header, "Length1", "Nodule", "POLYLINE", [[10, 20], [50, 60]], codes.SCT.Length, 42.0, mm),
        _ohif_group(
            header,
            "Ellipse1",
            "Mass",
            "ELLIPSE",
            [[20, 40], [60, 40], [40, 30], [40, 50]],
            codes.SCT.Area,
            520.0,
            codes.UCUM.SquareMillimeter,
        ),
        _ohif_group(header, "Circle1", "Cyst", "CIRCLE", [[64, 64], [74, 64]], codes.SCT.Area, 137.0, mm),
        _ohif_group(header, "Arrow1", "Calcification", "POINT", [[30, 30]], codes.SCT.Length, 0.0, mm),
        _ohif_group(
            header,
            "Freehand1",
            "Lesion",
            "POLYLINE",
            [[10, 10], [30, 12], [25, 30], [10, 10]],
            codes.SCT.Area,
            200.0,
            codes.UCUM.SquareMillimeter,
        ),
    ]
    return tid1500(header, groups, "OHIF measurements", "OHIF")


def _segmentation(header) -> pydicom.Dataset:
    """The header of the SEG a Slicer segment group references (evidence only: its pixels are not read)."""
    seg = pydicom.Dataset()
    seg.SOPClassUID, seg.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.66.4", hd.UID()
    seg.StudyInstanceUID, seg.SeriesInstanceUID = header.StudyInstanceUID, hd.UID()
    return seg


def slicer_report(header) -> pydicom.Dataset:
    frame_of_reference = str(header.FrameOfReferenceUID)
    seg = _segmentation(header)
    length = hd.sr.Measurement(name=codes.SCT.Length, value=26.5, unit=codes.UCUM.Millimeter)
    segment = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking("Segment_1"),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=1,
            source_images=[
                hd.sr.SourceImageForSegmentation(
                    referenced_sop_class_uid=header.SOPClassUID, referenced_sop_instance_uid=header.SOPInstanceUID
                )
            ],
        ),
        finding_type=codes.SCT.Tissue,
    )
    groups = [
        _slicer_group(
            "Line_1", "POLYLINE", [_patient(header, 20, 30), _patient(header, 60, 30)], frame_of_reference, [length]
        ),
        _slicer_group("Point_1", "POINT", [_patient(header, 40, 40)], frame_of_reference),
        _slicer_group(
            "Line_2", "POLYLINE", [_patient(header, 20, 30, 9.0), _patient(header, 60, 30, 9.0)], frame_of_reference
        ),
        _slicer_group("Elsewhere", "POLYLINE", [[0, 0, 0], [10, 0, 0]], hd.UID()),  # another series' frame of reference
        segment,
    ]
    return tid1500(header, groups, "Slicer markups", "3D Slicer", [seg])


def dose_report(header) -> pydicom.Dataset:
    """A CT dose report (TID 10011 under the X-Ray Radiation Dose SR class), as a modality writes it."""
    sr = _document(header, "1.2.840.10008.5.1.4.1.1.88.67", "Dose Info")
    sr.Manufacturer = "Scanner Co"
    sr.ConceptNameCodeSequence = [_code("DCM", "113701", "X-Ray Radiation Dose Report")]
    sr.ContentTemplateSequence = [_template("10011")]
    total = pydicom.Dataset()
    total.ValueType, total.RelationshipType = "NUM", "CONTAINS"
    total.ConceptNameCodeSequence = [_code("DCM", "113813", "CT Dose Length Product Total")]
    value = pydicom.Dataset()
    value.NumericValue = "412.5"
    value.MeasurementUnitsCodeSequence = [_code("UCUM", "mGy.cm", "mGy.cm")]
    total.MeasuredValueSequence = [value]
    sr.ContentSequence = [total]
    return pydicom.dcmread(io.BytesIO(to_bytes(sr)))


def text_report(header) -> pydicom.Dataset:
    """A radiologist's free-text report (Basic Text SR)."""
    sr = _document(header, "1.2.840.10008.5.1.4.1.1.88.11", "Report")
    sr.ConceptNameCodeSequence = [_code("LN", "18748-4", "Diagnostic Imaging Report")]
    finding = pydicom.Dataset()
    finding.ValueType, finding.RelationshipType, finding.TextValue = "TEXT", "CONTAINS", "No nodule."
    finding.ConceptNameCodeSequence = [_code("DCM", "121071", "Finding")]
    sr.ContentSequence = [finding]
    return pydicom.dcmread(io.BytesIO(to_bytes(sr)))


def _document(header, sop_class: str, description: str) -> pydicom.Dataset:
    """The SR module attributes and file meta of a document in the study of ``header``."""
    sr = pydicom.Dataset()
    sr.file_meta = pydicom.dataset.FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    sr.SOPClassUID, sr.SOPInstanceUID = sop_class, pydicom.uid.generate_uid()
    sr.file_meta.MediaStorageSOPClassUID, sr.file_meta.MediaStorageSOPInstanceUID = sop_class, sr.SOPInstanceUID
    sr.PatientID, sr.PatientName = header.PatientID, header.PatientName
    sr.StudyInstanceUID, sr.SeriesInstanceUID = header.StudyInstanceUID, pydicom.uid.generate_uid()
    sr.Modality, sr.SeriesDescription, sr.SeriesNumber, sr.InstanceNumber = "SR", description, 97, 1
    sr.ContentDate, sr.ContentTime = "20240315", "120000"
    sr.AccessionNumber, sr.PatientBirthDate, sr.PatientSex, sr.Manufacturer = "", "", "", ""
    sr.StudyDate, sr.StudyTime, sr.ReferringPhysicianName, sr.StudyID = "20240315", "120000", "", ""
    sr.CompletionFlag, sr.VerificationFlag = "COMPLETE", "UNVERIFIED"
    sr.ReferencedPerformedProcedureStepSequence, sr.PerformedProcedureCodeSequence = [], []
    sr.ValueType, sr.ContinuityOfContent = "CONTAINER", "SEPARATE"
    return sr


def key_objects(header) -> pydicom.Dataset:
    document = hd.ko.KeyObjectSelectionDocument(
        evidence=[header],
        content=hd.ko.KeyObjectSelection(document_title=codes.DCM.OfInterest, referenced_objects=[header]),
        series_instance_uid=hd.UID(),
        series_number=98,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    return pydicom.dcmread(io.BytesIO(to_bytes(document)))


def _code(scheme: str, value: str, meaning: str) -> pydicom.Dataset:
    code = pydicom.Dataset()
    code.CodingSchemeDesignator, code.CodeValue, code.CodeMeaning = scheme, value, meaning
    return code


def _template(identifier: str) -> pydicom.Dataset:
    template = pydicom.Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", identifier
    return template


def content_items(dataset: pydicom.Dataset) -> Iterator[pydicom.Dataset]:
    """Every content item below ``dataset`` (the items that have a Value Type), depth first."""
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from content_items(item)


def issue_22_report(header) -> pydicom.Dataset:
    """OHIF's report with the two crashes of issue 22: the length's Finding as TEXT, its NUM with no value.

    Both are valid DICOM (TID 1501 allows a TEXT finding in other vendors' variants; TID 300
    allows an empty Measured Value Sequence), and both used to raise in ``read_sr``.
    """
    sr = ohif_report(header)
    group = next(
        g for g in content_items(sr) if any(i.get("TextValue") == "Length1" for i in g.get("ContentSequence", []))
    )
    for item in group.ContentSequence:
        code = item.ConceptNameCodeSequence[0]
        if (code.CodingSchemeDesignator, code.CodeValue) == ("DCM", "121071"):
            del item.ConceptCodeSequence
            item.ValueType, item.TextValue = "TEXT", "spiculated nodule"
        if item.ValueType == "NUM":
            item.MeasuredValueSequence = []
    return sr
