"""Segment labels as codes: a few common labels get their SNOMED CT code, the rest a private one.

A DICOM SEG must say what each segment is (Segmented Property Category and Type, coded). For
the labels radiologists use most we give the standard SNOMED CT concept, so a PACS or another
viewer names the segment in its own words; any other label gets a stable private code in the
``99CLINLENS`` scheme (as the SR export does, ``dicom_sr.label_code``), which carries the label
text as its meaning and is read back by that meaning.
"""

from __future__ import annotations

import hashlib

import highdicom as hd
from pydicom.sr.codedict import codes

CODING_SCHEME = "99CLINLENS"
_ANATOMY = codes.SCT.AnatomicalStructure
_ABNORMAL = codes.SCT.MorphologicallyAbnormalStructure
_TISSUE = codes.SCT.Tissue

KNOWN: dict[str, tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]] = {
    name: (category, hd.sr.CodedConcept(value, "SCT", meaning))
    for name, category, value, meaning in (
        ("liver", _ANATOMY, "10200004", "Liver"),
        ("spleen", _ANATOMY, "78961009", "Spleen"),
        ("kidney", _ANATOMY, "64033007", "Kidney"),
        ("left kidney", _ANATOMY, "18639004", "Left kidney"),
        ("right kidney", _ANATOMY, "9846003", "Right kidney"),
        ("lung", _ANATOMY, "39607008", "Lung"),
        ("heart", _ANATOMY, "80891009", "Heart"),
        ("pancreas", _ANATOMY, "15776009", "Pancreas"),
        ("brain", _ANATOMY, "12738006", "Brain"),
        ("bone", _TISSUE, "272673000", "Bone"),
        ("nodule", _ABNORMAL, "27925004", "Nodule"),
        ("lesion", _ABNORMAL, "52988006", "Lesion"),
        ("tumor", _ABNORMAL, "108369006", "Tumor"),
        ("tumour", _ABNORMAL, "108369006", "Tumor"),
        ("mass", _ABNORMAL, "4147007", "Mass"),
        ("cyst", _ABNORMAL, "441457006", "Cyst"),
    )
}
PRIVATE_CATEGORY = hd.sr.CodedConcept("LABEL", CODING_SCHEME, "ClinLens annotation label")


def private_code(label: str) -> hd.sr.CodedConcept:
    """The private code of a free-text label (CodeValue fits SH, CodeMeaning fits LO)."""
    value = "L" + hashlib.sha1(label.encode("utf-8")).hexdigest()[:15]
    return hd.sr.CodedConcept(value=value, scheme_designator=CODING_SCHEME, meaning=label[:64])


def segment_codes(label: str) -> tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]:
    """(category, type) for a label: SNOMED CT when known (case and spaces ignored), else private."""
    known = KNOWN.get(" ".join(label.lower().split()))
    return known or (PRIVATE_CATEGORY, private_code(label))
