"""Presets (data + user file), key facts and the PHI-aware tag tree."""

from __future__ import annotations

import json

import pydicom
import pytest
from pydicom.data import get_testdata_file

from engine.imaging import (
    PHI_KEYWORDS,
    Preset,
    Window,
    key_facts,
    load_presets,
    open_image,
    save_user_preset,
    tag_tree,
)
from engine.imaging.presets import find_preset, user_presets_path

CT = get_testdata_file("CT_small.dcm")


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINLENS_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


def test_builtin_presets_have_the_agreed_values_and_keys():
    presets = {p.name: p for p in load_presets()}
    expected = {
        "Soft tissue": (40, 400),
        "Lung": (-600, 1500),
        "Bone": (480, 2500),
        "Brain": (40, 80),
        "Liver": (90, 150),
        "Mediastinum": (50, 350),
    }
    for name, (center, width) in expected.items():
        assert (presets[name].center, presets[name].width) == (center, width)
        assert not presets[name].user
    keys = [p.key for p in load_presets() if p.key]
    assert sorted(keys) == [str(k) for k in range(1, 10)]  # 1-9, each once
    assert presets["Lung"].to_window() == Window(-600, 1500, "LINEAR", "Lung")


def test_user_preset_is_saved_in_the_config_dir_and_loaded_back(config_dir):
    save_user_preset(Preset("Abdomen wide", 60, 600, None))
    assert user_presets_path() == config_dir / "presets.json"
    stored = json.loads((config_dir / "presets.json").read_text())
    assert stored["presets"] == [{"name": "Abdomen wide", "center": 60.0, "width": 600.0, "key": None}]
    assert Preset("Abdomen wide", 60, 600, None, True) in load_presets()
    save_user_preset(Preset("abdomen WIDE", 70, 500, None))  # same name replaces
    user = [p for p in load_presets() if p.user]
    assert user == [Preset("abdomen WIDE", 70, 500, None, True)]


def test_user_preset_can_replace_a_builtin_and_take_its_key():
    save_user_preset(Preset("Lung", -500, 1400, "2"))
    save_user_preset(Preset("Spine", 300, 1500, "3"))  # key 3 was Bone's
    presets = load_presets()
    lung = [p for p in presets if p.name == "Lung"]
    assert lung == [Preset("Lung", -500, 1400, "2", True)]
    assert next(p for p in presets if p.name == "Bone").key is None
    assert find_preset("3") == Preset("Spine", 300, 1500, "3", True)
    assert find_preset("lung").center == -500


def test_key_facts_describe_the_image_and_never_the_patient():
    stack = open_image(CT)
    facts = dict(key_facts(stack, 0))
    ds = pydicom.dcmread(CT)
    assert facts["Modality"] == "CT"
    assert facts["Transfer syntax"] == "Explicit VR Little Endian"
    assert facts["Photometric"] == "MONOCHROME2"
    assert facts["Size"] == "128 x 128 px"
    assert facts["Pixel spacing"] == "0.661468 x 0.661468 mm (PixelSpacing)"
    assert facts["Frames"] == "1 of 1"
    assert facts["Study date"] == f"{ds.StudyDate[:4]}-{ds.StudyDate[4:6]}-{ds.StudyDate[6:]}"
    text = " ".join(v for _, v in key_facts(stack, 0))
    for keyword in ("PatientName", "PatientID"):
        assert str(ds.get(keyword)) not in text


def test_tag_tree_hides_phi_until_revealed():
    ds = pydicom.dcmread(CT, stop_before_pixels=True)
    ds.OtherPatientIDsSequence = [pydicom.Dataset()]
    ds.OtherPatientIDsSequence[0].PatientID = "SECRET-2"
    hidden = {n.keyword: n for n in tag_tree(ds)}
    assert {"PatientName", "PatientID", "PatientBirthDate"} <= PHI_KEYWORDS
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDsSequence"):
        assert hidden[keyword].value == "(hidden)" and hidden[keyword].phi
        assert hidden[keyword].children == ()
    assert hidden["Rows"].value == "128" and hidden["Rows"].tag == "(0028,0010)" and hidden["Rows"].vr == "US"
    shown = {n.keyword: n for n in tag_tree(ds, reveal_phi=True)}
    assert shown["PatientName"].value == str(ds.PatientName)
    item = shown["OtherPatientIDsSequence"].children[0]
    assert item.children[0].keyword == "PatientID" and item.children[0].value == "SECRET-2"


def test_tag_tree_includes_file_meta_and_nested_sequences():
    stack = open_image(get_testdata_file("examples_palette.dcm"))
    nodes = tag_tree(stack.header(0))
    assert nodes[0].tag.startswith("(0002,")
    syntax = next(n for n in nodes if n.keyword == "TransferSyntaxUID")
    assert syntax.value == "1.2.840.10008.1.2.1 (Explicit VR Little Endian)"
    lut = next(n for n in nodes if n.keyword == "RedPaletteColorLookupTableData")
    assert lut.value.startswith("<") and lut.value.endswith("bytes>")
    assert "PixelData" not in {n.keyword for n in nodes}  # headers are read without pixels
