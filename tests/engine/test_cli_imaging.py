"""`info` and `render` sub-commands: facts from the header, PNG equal to render(), clean errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_windowing

from cli import imaging as cli
from engine.imaging import Plane, Window, load_volume, open_image, render
from tests.engine.phantom import Phantom

CT = get_testdata_file("CT_small.dcm")
MR = get_testdata_file("MR_small.dcm")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINLENS_CONFIG_DIR", str(tmp_path / "config"))


def test_register_adds_both_commands_to_a_main_parser():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["render", "a.dcm", "b.png", "--preset", "Lung", "--frame", "2"])
    assert args.func is cli.run_render and args.preset == "Lung" and args.frame == 2
    assert parser.parse_args(["info", "a.dcm", "--json"]).func is cli.run_info


def test_info_json_reports_header_facts(capsys):
    assert cli.main(["info", CT, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    ds = pydicom.dcmread(CT)
    hu = apply_modality_lut(ds.pixel_array, ds)
    assert facts["modality"] == "CT" and facts["rows"] == 128 and facts["columns"] == 128 and facts["frames"] == 1
    assert facts["photometric_interpretation"] == "MONOCHROME2"
    assert facts["transfer_syntax"] == "Explicit VR Little Endian"
    assert facts["transfer_syntax_uid"] == ds.file_meta.TransferSyntaxUID
    assert facts["pixel_spacing_mm"] == [float(v) for v in ds.PixelSpacing]
    assert facts["pixel_spacing_source"] == "PixelSpacing"
    assert (facts["rescale_slope"], facts["rescale_intercept"]) == (float(ds.RescaleSlope), float(ds.RescaleIntercept))
    assert facts["header_windows"] == []
    assert (facts["modality_min"], facts["modality_max"]) == (hu.min(), hu.max())
    assert facts["modality_range_of"] == "frame 1"


def test_info_text_lists_header_windows(capsys):
    assert cli.main(["info", MR]) == 0
    out = capsys.readouterr().out
    assert "Header windows:  600/1600 LINEAR" in out
    assert "Rescale:         none (modality values = stored values)" in out
    assert "Modality values: min 127, max 2145 (frame 1)" in out
    assert "Transfer syntax: Explicit VR Little Endian (1.2.840.10008.1.2.1)" in out


@pytest.mark.parametrize("name", ["rtplan.dcm", "MR_truncated.dcm"])
def test_info_on_bad_input_exits_2_with_one_line(capsys, name):
    assert cli.main(["info", get_testdata_file(name)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {name}") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_info_on_empty_file_exits_2(tmp_path, capsys):
    (tmp_path / "zero.dcm").write_bytes(b"")
    assert cli.main(["info", str(tmp_path / "zero.dcm")]) == 2
    assert capsys.readouterr().err == "error: zero.dcm is empty (0 bytes).\n"


def test_render_with_window_matches_pydicom(tmp_path):
    out = tmp_path / "ct.png"
    assert cli.main(["render", CT, str(out), "--window=-600,1500"]) == 0
    written = np.asarray(Image.open(out))
    ds = pydicom.dcmread(CT)
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    y_min, y_max = -32768 - 1024, 32767 - 1024  # signed 16 bits stored, intercept -1024
    reference = (apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds) - y_min) / (y_max - y_min) * 255
    assert written.dtype == np.uint8 and written.shape == (128, 128)
    assert np.abs(written - reference).max() <= 0.5 + 1e-6


def test_render_writes_exactly_render_for_preset_invert_and_frame(tmp_path):
    out = tmp_path / "lung.png"
    assert cli.main(["render", CT, str(out), "--preset", "lung", "--invert"]) == 0
    frame = open_image(CT).frame(0)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), render(frame, Window(-600, 1500), invert=True))
    dose = get_testdata_file("rtdose.dcm")
    assert cli.main(["render", dose, str(out), "--frame", "4"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), render(open_image(dose).frame(3)))
    colour = get_testdata_file("examples_ybr_color.dcm")
    assert cli.main(["render", colour, str(out), "--frame", "30"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), open_image(colour).frame(29).stored)


def test_render_default_uses_the_header_window(tmp_path):
    out = tmp_path / "mr.png"
    assert cli.main(["render", MR, str(out)]) == 0
    frame = open_image(MR).frame(0)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), render(frame, frame.windows[0]))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--window", "40"], "--window expects CENTER,WIDTH"),
        (["--window", "40,-3"], "--window width must be positive"),
        (["--preset", "nope"], "unknown preset 'nope'; choose one of: Soft tissue (1), Lung (2)"),
        (["--frame", "2"], "--frame 2 is out of range"),
    ],
)
def test_render_rejects_bad_options_with_exit_2(tmp_path, capsys, extra, message):
    out = tmp_path / "x.png"
    assert cli.main(["render", CT, str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_render_bad_input_exits_2(tmp_path, capsys):
    assert cli.main(["render", get_testdata_file("test-SR.dcm"), str(tmp_path / "x.png")]) == 2
    assert "contains no image data" in capsys.readouterr().err


# --- volumes ---------------------------------------------------------------------------------


def test_render_plane_writes_the_reformat_at_display_aspect(tmp_path):
    phantom = Phantom()
    series = phantom.write_series(tmp_path / "series")
    out = tmp_path / "coronal.png"
    row = phantom.centre_voxel[1]
    assert cli.main(["render", str(series), str(out), "--plane", "coronal", "--slice", str(row + 1)]) == 0
    written = np.asarray(Image.open(out))
    # 40 slices 2 mm apart at 0.75 mm pixels: 107 rows, 60 columns
    assert written.shape == (round(40 * 2 / 0.75), phantom.columns)
    expected = render(load_volume(open_image(series)).plane_frame(Plane.CORONAL, row))
    assert np.array_equal(written, expected)
    assert written.max() > 128  # the sphere is on this plane


def test_render_plane_slice_out_of_range_and_not_a_volume(tmp_path, capsys):
    series = Phantom().write_series(tmp_path / "series")
    assert cli.main(["render", str(series), str(tmp_path / "x.png"), "--plane", "sagittal", "--slice", "61"]) == 2
    assert "sagittal plane" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    assert cli.main(["render", CT, str(tmp_path / "x.png"), "--plane", "axial"]) == 2
    assert "one slice" in capsys.readouterr().err
    assert cli.main(["render", CT, str(tmp_path / "x.png"), "--slice", "2"]) == 2
    assert "--slice needs --plane" in capsys.readouterr().err


def test_main_py_render_plane_of_damaged_geometry_prints_one_sentence_and_exits_2(tmp_path):
    """Issue 22: a short GridFrameOffsetVector was a traceback from `main.py render x.dcm --plane coronal`."""
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    ds.GridFrameOffsetVector = list(ds.GridFrameOffsetVector)[:5]
    ds.save_as(tmp_path / "x.dcm")
    result = subprocess.run(
        [sys.executable, "main.py", "render", str(tmp_path / "x.dcm"), str(tmp_path / "x.png"), "--plane", "coronal"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    errors = [line for line in result.stderr.splitlines() if "Warning" not in line and "warn_and_log" not in line]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert errors == ["error: x.dcm: GridFrameOffsetVector has 5 value(s), not 15."]
    assert not (tmp_path / "x.png").exists()


def test_info_json_reports_volume_geometry(tmp_path, capsys):
    series = Phantom(missing=(5,)).write_series(tmp_path / "series")
    assert cli.main(["info", str(series), "--json"]) == 0
    volume = json.loads(capsys.readouterr().out)["volume"]
    assert volume["dimensions"] == {"columns": 60, "rows": 64, "slices": 39}
    assert volume["spacing_mm"] == {"column": 0.75, "row": 0.75, "slice": 2.0}
    assert volume["orientation"] == [1, 0, 0, 0, 1, 0] and volume["regular_spacing"] is False
    assert volume["planes"]["coronal"]["height"] == round(40 * 2 / 0.75)
    assert "missing slice" in volume["warnings"][0]
    assert cli.main(["info", str(series)]) == 0
    text = capsys.readouterr().out
    assert "60 x 64 x 39 voxels, 0.75 x 0.75 x 2 mm" in text and "Warning:" in text
