"""What a search asks and what it finds, the same for DICOMweb and DIMSE."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom import Dataset

from engine.pacs.errors import PacsError

_DATE = r"(\d{4}-?\d{2}-?\d{2})"
_RANGE = re.compile(rf"^{_DATE}?(-{_DATE}?)?$")


def parse_date_range(text: str) -> str:
    """``20240101-20241231``, ``2024-01-01-``, ``-20241231`` or one date -> a DICOM DA range."""
    match = _RANGE.match(text.strip())
    if not text.strip() or not match:
        raise PacsError(f"{text!r} is not a date or date range (use YYYYMMDD-YYYYMMDD; either side may be empty).")
    start = (match[1] or "").replace("-", "")
    end = (match[3] or "").replace("-", "")
    return start if match[2] is None else f"{start}-{end}"


def _contains(text: str) -> str:
    """Free text matches anywhere unless the user wrote wildcards themselves."""
    text = text.strip()
    return text if not text or "*" in text or "?" in text else f"*{text}*"


@dataclass(frozen=True)
class StudyQuery:
    patient_id: str = ""
    patient_name: str = ""
    accession: str = ""
    date_range: str = ""  # DICOM DA range, see parse_date_range
    modality: str = ""
    description: str = ""
    limit: int = 200

    def filters(self) -> dict[str, str]:
        """Matching keys by DICOM keyword; empty fields are not sent."""
        values = {
            "PatientID": self.patient_id.strip(),
            "PatientName": _contains(self.patient_name),
            "AccessionNumber": self.accession.strip(),
            "StudyDate": self.date_range.strip(),
            "ModalitiesInStudy": self.modality.strip().upper(),
            "StudyDescription": _contains(self.description),
        }
        return {k: v for k, v in values.items() if v}


STUDY_FIELDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "ModalitiesInStudy",
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_FIELDS = ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances")


@dataclass(frozen=True)
class StudyResult:
    study_uid: str
    date: str
    description: str
    modalities: tuple[str, ...]
    patient_name: str
    patient_id: str
    accession: str
    series_count: int | None
    instance_count: int | None

    def as_json(self) -> dict:
        """The command line's one object per study (no patient identifiers)."""
        return {
            "StudyInstanceUID": self.study_uid,
            "StudyDate": self.date,
            "Modality": "\\".join(self.modalities),
            "StudyDescription": self.description,
            "NumberOfStudyRelatedSeries": self.series_count,
        }


@dataclass(frozen=True)
class SeriesResult:
    study_uid: str
    series_uid: str
    modality: str
    number: int | None
    description: str
    instance_count: int | None


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _modalities(ds: Dataset) -> tuple[str, ...]:
    value = ds.get("ModalitiesInStudy")
    if value in (None, ""):
        return ()
    return tuple(str(v) for v in value) if not isinstance(value, str) else (value,)


def study_from_dataset(ds: Dataset) -> StudyResult:
    uid = str(ds.get("StudyInstanceUID", "") or "")
    if not uid:
        raise ValueError("a study without StudyInstanceUID")
    return StudyResult(
        uid,
        str(ds.get("StudyDate", "") or ""),
        str(ds.get("StudyDescription", "") or ""),
        _modalities(ds),
        str(ds.get("PatientName", "") or ""),
        str(ds.get("PatientID", "") or ""),
        str(ds.get("AccessionNumber", "") or ""),
        _int(ds, "NumberOfStudyRelatedSeries"),
        _int(ds, "NumberOfStudyRelatedInstances"),
    )


def series_from_dataset(ds: Dataset, study_uid: str) -> SeriesResult:
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    if not uid:
        raise ValueError("a series without SeriesInstanceUID")
    return SeriesResult(
        study_uid,
        uid,
        str(ds.get("Modality", "") or ""),
        _int(ds, "SeriesNumber"),
        str(ds.get("SeriesDescription", "") or ""),
        _int(ds, "NumberOfSeriesRelatedInstances"),
    )
