"""A report as a DICOM Comprehensive 3D SR, and such an SR read back into a report.

The SR is a TID 1500 Imaging Measurement Report whose measurement groups are those of the
annotations the findings cite, built by the same code as the annotation export
(``dicom_sr.group_items`` / ``measurement_groups``), followed by the report's text as four
section containers (CID 7001 headings: Clinical Information, Current Procedure Descriptions,
Findings, Impressions) holding TEXT items; each finding that cites annotations carries their
Tracking Unique Identifiers (HAS PROPERTIES UIDREF), so a reader can tie the sentence to its group.

How that fits the standard (PS3.16 TID 1500, PS3.3 A.35.13): TID 1500 is an extensible template,
so the section containers follow its rows (language, observer context, procedure reported, image
library, Imaging Measurements); the Comprehensive 3D SR relationship constraints allow TEXT
HAS PROPERTIES UIDREF. A finding names its group by the group's own TID 1501 row 3 concept and
value, (112040, DCM, "Tracking Unique Identifier"), the identifier DICOM defines for following one
finding across documents; by-reference links would tie it to one document's item numbering.
TID 1500 needs one of its rows 6 (Imaging Measurements), 10 or 12; a report that cites no
annotation (text, ClinKD answers) has no group, so it carries row 12 instead, a Qualitative
Evaluations container with the findings' (or the impression's) text.
The observer context names the person (the verifier of a final report) and ClinLens as device.
A draft is PARTIAL / UNVERIFIED / PRELIMINARY; a final report COMPLETE / VERIFIED / FINAL, with the
verifying observer, organisation and the time of sign-off; an amendment lists the report it
replaces in the Predecessor Documents Sequence.

UIDs come from the report, not the clock: the same report sent twice is the same instance (the
archive keeps one), and an amendment can name its predecessor's SOP Instance UID without having
kept the file. ``report_from_sr`` reads the sections, findings and sign-off of such an SR back.
"""

from __future__ import annotations

from datetime import datetime

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from engine.annotations.document import AnnotationDocument
from engine.annotations.formats.dicom_sr import (
    DEVICE_OBSERVER,
    MANUFACTURER,
    SourceHeaders,
    group_items,
    measurement_groups,
    tracking_uid,
)
from engine.annotations.formats.targets import ExportError
from engine.report.model import SECTIONS, Finding, Observer, Report, Status
from engine.report.signoff import evidence_annotation, missing_evidence

SECTION_CODES = {
    "clinical_information": codes.LN.ClinicalInformation,
    "technique": codes.DCM.CurrentProcedureDescriptions,
    "findings": codes.DCM.Findings,
    "impression": codes.DCM.Impressions,
}
ITEM_CODES = {
    "clinical_information": codes.DCM.History,
    "technique": codes.DCM.ProcedureDescription,
    "findings": codes.DCM.Finding,
    "impression": codes.DCM.Impression,
}
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
UNKNOWN_ORGANIZATION = "Organization not given"
REPORT_SERIES_NUMBER = 950
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def report_uids(report: Report) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID): one report series per study; the instance from the content,
    or, for a report read from the archive and not changed since, the instance it was read from."""
    return (
        generate_uid(entropy_srcs=["clinlens-report-series", report.study_key]),
        report.sop_instance_uid or generate_uid(entropy_srcs=["clinlens-report", report.id, repr(report)]),
    )


def _dicom_datetime(iso: str) -> str:
    """An ISO 8601 time (``2026-02-03T10:11:12.000+00:00``) as a DICOM DT with its offset."""
    when = datetime.fromisoformat(iso)
    return when.strftime("%Y%m%d%H%M%S%z")


def _text_item(name, text: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _finding_item(doc: AnnotationDocument, finding: Finding) -> hd.sr.TextContentItem:
    item = _text_item(codes.DCM.Finding, finding.text)
    cited = [a for a in (evidence_annotation(doc, e) for e in finding.evidence) if a is not None]
    if cited:
        item.ContentSequence = hd.sr.ContentSequence(
            [
                hd.sr.UIDRefContentItem(
                    name=codes.DCM.TrackingUniqueIdentifier,
                    value=tracking_uid(a.id),
                    relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES,
                )
                for a in cited
            ]
        )
    return item


def _section(doc: AnnotationDocument, report: Report, name: str) -> hd.sr.ContainerContentItem | None:
    items = []
    if report.section(name).strip():
        items.append(_text_item(ITEM_CODES[name], report.section(name).strip()))
    if name == "findings":
        items += [_finding_item(doc, f) for f in report.findings if f.text.strip()]
    if not items:
        return None
    container = hd.sr.ContainerContentItem(
        name=SECTION_CODES[name], relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _predecessor(doc: AnnotationDocument, report: Report, study_uid: str) -> list[pydicom.Dataset] | None:
    if not report.replaces:
        return None
    previous = doc.find_report(report.replaces)
    if previous is None:
        raise ExportError("this amendment's original report is not in the project, so the SR cannot name it")
    series, instance = report_uids(previous)
    ds = pydicom.Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series
    ds.SOPClassUID, ds.SOPInstanceUID = COMPREHENSIVE_3D_SR, instance
    return [ds]


def _organization(report: Report, study_header: pydicom.Dataset) -> str:
    """Verifying Organization is Type 1: the verifier's, else the study's institution, else a stand-in."""
    return report.verifier.organization or str(study_header.get("InstitutionName", "")) or UNKNOWN_ORGANIZATION


def _measurement_report(context: hd.sr.ObservationContext, groups: list, report: Report) -> hd.sr.MeasurementReport:
    """The TID 1500 root; without measurement groups, row 12 (Qualitative Evaluations) stands for row 6.

    highdicom builds TID 1500 only with measurement groups, so the text-only root is built from a
    one-group report whose Imaging Measurements container is swapped for the evaluations."""
    texts = [f.text.strip() for f in report.findings if f.text.strip()]
    if groups:
        return hd.sr.MeasurementReport(
            observation_context=context, procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups
        )
    if texts:
        items = [_text_item(codes.DCM.Finding, text) for text in texts]
    elif report.section("impression").strip():
        items = [_text_item(codes.DCM.Impression, report.section("impression").strip())]
    elif report.section("findings").strip():
        items = [_text_item(codes.DCM.Finding, report.section("findings").strip())]
    else:
        raise ExportError("the report says nothing yet: write the findings or the impression first")
    placeholder = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="placeholder"), finding_type=codes.DCM.Finding
    )
    content = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=[placeholder]
    )
    evaluations = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    evaluations.ContentSequence = hd.sr.ContentSequence(items)
    rows = content[0].ContentSequence
    del rows[-1]  # the Imaging Measurements container is the root's last row
    rows.append(evaluations)
    return content


def build_report_sr(
    doc: AnnotationDocument, report: Report, observer: Observer | None = None
) -> hd.sr.Comprehensive3DSR:
    """The report as an SR; ``ExportError`` (one sentence) when it cannot be one, nothing changed.

    ``observer`` is who writes a draft (the final report's verifier otherwise), for the person
    observer context; without either, only ClinLens is named as observer.
    """
    problems = missing_evidence(doc, report)
    if problems:
        raise ExportError(" ".join(problems))
    headers = SourceHeaders()
    dicom = [doc.image(i) for i in doc.study_images(report.study_key) if doc.image(i).kind == "dicom"]
    if not dicom:
        raise ExportError(
            "a DICOM SR of this report needs DICOM images, and this study has none; save the report as PDF instead"
        )
    items = []
    for finding in report.findings:
        for evidence in finding.evidence:
            annotation = evidence_annotation(doc, evidence)
            if annotation is not None and doc.image(evidence.image_id).kind == "dicom":
                items += [item for _, item in group_items(doc.image(evidence.image_id), [annotation], headers)]
    items = list({item[1].id: item for item in items}.values())  # an annotation cited twice is one group
    groups, evidence = measurement_groups(items, headers)
    study_header = headers(dicom[0].frames[0])
    evidence.setdefault(study_header.SOPInstanceUID, study_header)
    person = report.verifier if report.is_final else observer
    context = hd.sr.ObservationContext(
        observer_person_context=None
        if person is None or not person.name.strip()
        else hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=person.name, organization_name=person.organization or None
            ),
        ),
        observer_device_context=DEVICE_OBSERVER,
    )
    content = _measurement_report(context, groups, report)
    for name in SECTIONS:
        section = _section(doc, report, name)
        if section is not None:
            content[0].ContentSequence.append(section)
    series_uid, instance_uid = report_uids(report)
    final = report.is_final
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(evidence.values()),
        content=content,
        series_instance_uid=series_uid,
        series_number=REPORT_SERIES_NUMBER,
        sop_instance_uid=instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="ClinLens report",
        is_complete=final,
        is_final=final,
        is_verified=final,
        verifying_observer_name=report.verifier.name if final else None,
        verifying_organization=_organization(report, study_header) if final else None,
        previous_versions=_predecessor(doc, report, str(study_header.StudyInstanceUID)),
    )
    if final:
        sr.VerifyingObserverSequence[0].VerificationDateTime = _dicom_datetime(report.verified)
    return sr


def _iso(stamp: str) -> str:
    """A DICOM DT as ISO 8601 (reports sort by it beside the project's own), or the text as it was."""
    try:
        return pydicom.valuerep.DT(stamp).isoformat() if stamp else ""
    except ValueError:
        return stamp


def _code(item: pydicom.Dataset, key: str) -> tuple[str, str]:
    code = item[key][0] if key in item and item[key].value else None
    return ("", "") if code is None else (str(code.CodingSchemeDesignator), str(code.CodeValue))


def report_from_sr(ds: pydicom.Dataset) -> Report | None:
    """The report a ClinLens SR holds (sections, findings, sign-off); None for any other SR.

    The report's id is the SR's SOP Instance UID and its study key the Study Instance UID; a
    finding read back carries its text only (its evidence is the SR's measurement groups). Another
    vendor's SR is not read as a report (its measurements are the annotation reader's business):
    its headings and sign-off may mean something else.
    """
    if str(ds.get("Manufacturer", "")) != MANUFACTURER or ds.get("SOPClassUID") != COMPREHENSIVE_3D_SR:
        return None
    by_code = {(c.scheme_designator, c.value): name for name, c in SECTION_CODES.items()}
    sections: dict[str, str] = {}
    findings: list[Finding] = []
    for container in ds.get("ContentSequence", []):
        name = by_code.get(_code(container, "ConceptNameCodeSequence"))
        if name is None or container.get("ValueType") != "CONTAINER":
            continue
        for item in container.get("ContentSequence", []):
            if item.get("ValueType") != "TEXT" or "TextValue" not in item:
                continue
            is_finding = name == "findings" and _code(item, "ConceptNameCodeSequence") == ("DCM", "121071")
            if is_finding:
                findings.append(Finding(id=f"{ds.SOPInstanceUID}.{len(findings) + 1}", text=str(item.TextValue)))
            else:
                sections[name] = str(item.TextValue)
    if not sections and not findings:
        return None
    verified = ds.get("VerificationFlag") == "VERIFIED"
    verifier, when = None, ""
    if verified and ds.get("VerifyingObserverSequence"):
        who = ds.VerifyingObserverSequence[0]
        organization = str(who.get("VerifyingOrganization", ""))
        verifier = Observer(
            str(who.get("VerifyingObserverName", "")), "" if organization == UNKNOWN_ORGANIZATION else organization
        )
        stamp = str(who.get("VerificationDateTime", ""))
        when = _iso(stamp)
    replaces = ""
    for study in ds.get("PredecessorDocumentsSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            for sop in series.get("ReferencedSOPSequence", []):
                replaces = str(sop.ReferencedSOPInstanceUID)
    created = _iso(f"{ds.get('ContentDate', '')}{ds.get('ContentTime', '')}")
    return Report(
        id=str(ds.SOPInstanceUID),
        study_key=str(ds.StudyInstanceUID),
        created=created,
        modified=created,
        sections=sections,
        findings=tuple(findings),
        status=Status.FINAL if verified else Status.DRAFT,
        verifier=verifier,
        verified=when,
        replaces=replaces,
        sop_instance_uid=str(ds.SOPInstanceUID),
    )
