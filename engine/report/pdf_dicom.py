"""The printed report as an Encapsulated PDF DICOM object, for archives and viewers that show PDFs.

Why pydicom and not highdicom: highdicom has no Encapsulated Document IOD. The object carries the
IOD's modules (PS3.3 A.45.1): Patient and General Study copied from the study's first DICOM image,
Encapsulated Document Series (modality DOC), General Equipment, SC Equipment (conversion type WSD:
made on a workstation), Encapsulated Document and SOP Common. The PDF shows key images, so Source
Instance Sequence names the DICOM images it was drawn from. Like the SR, its UIDs come from the
report (same report, same instance), in a series of its own beside the SR's.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.dicom_sr import MANUFACTURER, SourceHeaders
from engine.annotations.formats.targets import ExportError
from engine.report.model import Report
from engine.report.signoff import evidence_annotation

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
PDF_SERIES_NUMBER = 951
PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
TYPE_1 = {"StudyInstanceUID"}


def pdf_uids(report: Report) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the report's PDF object, from the report like the SR's."""
    return (
        generate_uid(entropy_srcs=["clinlens-report-pdf-series", report.study_key]),
        generate_uid(entropy_srcs=["clinlens-report-pdf", report.id, repr(report)]),
    )


def _sources(doc: AnnotationDocument, report: Report) -> list[pydicom.Dataset]:
    """Headers of the DICOM images the page shows (the cited frames), else of the study's first image."""
    headers = SourceHeaders()
    dicom = [doc.image(i) for i in doc.study_images(report.study_key) if doc.image(i).kind == "dicom"]
    if not dicom:
        raise ExportError("a DICOM PDF of this report needs DICOM images, and this study has none")
    found: dict[str, pydicom.Dataset] = {}
    for finding in report.findings:
        for evidence in finding.evidence:
            if not doc.has_image(evidence.image_id) or doc.image(evidence.image_id).kind != "dicom":
                continue
            if evidence.annotation_id and evidence_annotation(doc, evidence) is None:
                continue
            ref = doc.image(evidence.image_id)
            header = headers(ref.frames[min(evidence.frame, len(ref.frames) - 1)])
            found.setdefault(str(header.SOPInstanceUID), header)
    first = headers(dicom[0].frames[0])
    return [first, *(h for uid, h in found.items() if uid != first.SOPInstanceUID)]


def build_report_pdf_dicom(doc: AnnotationDocument, report: Report, pdf: bytes) -> pydicom.Dataset:
    """``pdf`` (the report's printed page) as an Encapsulated PDF object of the report's study."""
    if not pdf.startswith(b"%PDF"):
        raise ExportError("the report's PDF is not a PDF file")
    sources = _sources(doc, report)
    study = sources[0]
    series_uid, instance_uid = pdf_uids(report)
    now = datetime.now(UTC)
    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in PATIENT_STUDY:
        value = study.get(keyword, "")
        if keyword in TYPE_1 or value not in (None, ""):
            setattr(ds, keyword, value)
        else:
            setattr(ds, keyword, "")
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = "ClinLens report (PDF)"
    ds.Manufacturer = MANUFACTURER
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"  # the page names the patient's study
    ds.DocumentTitle = f"{report.modality} report" if report.modality else "Imaging report"
    ds.ConceptNameCodeSequence = []
    ds.VerificationFlag = "VERIFIED" if report.is_final else "UNVERIFIED"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.SourceInstanceSequence = [_reference(h) for h in sources]
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = instance_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def _reference(header: pydicom.Dataset) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    return item


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    """A dataset as a DICOM file's bytes, for ``write_bytes_atomic`` (a crash never leaves half a file)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
