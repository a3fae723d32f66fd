"""`main.py segment`: a box to a mask file, through the production loader and the exporters.

The tiny random SAM proves the plumbing only. Where a test needs a known mask it scripts the
decoder (logits +10 over the whole image), as the Ask tests script tokens: what is under test
is the command, the propagation, the measurements and the files, never the model's skill.
"""

from __future__ import annotations

import shutil

import highdicom as hd
import nibabel
import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from cli.segmentation import main
from engine.imaging import open_image
from engine.segmentation.predictor import Segmenter
from tests.engine.dicom_tools import dciodvfy_errors
from tests.engine.phantom import Phantom
from tests.engine.tiny_sam import save_sam_dir


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    return save_sam_dir(tmp_path_factory.mktemp("tiny-sam") / "sam")


@pytest.fixture
def whole_image(monkeypatch):
    """The decoder says "everything": every pixel of the image (not the padding) is in the mask."""
    logits = torch.full((1, 1, 256, 256), 10.0)
    monkeypatch.setattr(Segmenter, "decode", lambda self, entry, prompt, multimask=False: (logits, 0.9))


@pytest.fixture
def ct(tmp_path):
    target = tmp_path / "CT_small.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), target)
    return target


def test_the_tiny_model_writes_a_valid_seg_of_the_frame(sam_dir, ct, tmp_path, capsys):
    out = tmp_path / "mask.dcm"
    code = main(["segment", str(ct), "--box", "40,8,90,50", "--model", str(sam_dir), "--out", str(out)])
    printed = capsys.readouterr()
    if code == 2:  # random weights may see nothing in the box: then nothing is written, and it says so
        assert "found nothing inside --box" in printed.err and not out.exists()
        return
    assert code == 0 and out.exists(), printed.err
    assert dciodvfy_errors(out) == []
    seg = hd.seg.segread(out)
    assert seg.SegmentSequence[0].SegmentLabel == "segment"
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == str(pydicom.dcmread(ct).SeriesInstanceUID)


def test_a_scripted_mask_is_measured_in_mm_and_hu_on_one_frame(sam_dir, ct, tmp_path, capsys, whole_image):
    out = tmp_path / "mask.json"
    assert main(["segment", str(ct), "--box", "40,8,90,50", "--model", str(sam_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    stack = open_image(str(ct))
    frame = stack.frame(0)
    rows, columns = frame.modality_values().shape
    area = rows * columns * stack.spacing.row_mm * stack.spacing.col_mm  # every pixel is in the mask
    assert f"area: {area:.4g} mm2" in printed
    assert f"mean: {frame.modality_values().mean():.4g} [hnsf'U]" in printed  # computed here, in this run
    assert "wrote" in printed and out.exists()


def test_propagation_through_a_series_writes_a_nifti_of_those_slices(sam_dir, tmp_path, capsys, whole_image):
    series = Phantom().write_series(tmp_path / "series")
    out = tmp_path / "sphere.nii.gz"
    argv = ["segment", str(series), "--frame", "20", "--box", "10,10,40,40", "--propagate", "15:24"]
    assert main([*argv, "--model", str(sam_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "mask 'segment' on 10 frame(s): 15, 16, 17, 18, 19, 20, 21, 22, 23, 24" in printed.out
    assert "segmenting 10/10" in printed.err
    labels = np.asarray(nibabel.load(out).dataobj)
    assert int((labels > 0).sum()) == 10 * 64 * 60  # ten whole slices of the 40 x 64 x 60 phantom
    phantom = Phantom()
    volume_ml = 10 * 64 * 60 * phantom.pixel_mm**2 * phantom.slice_mm / 1000
    assert f"volume: {volume_ml:.4g} mL" in printed.out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--box", "1,2,3", "--out", "m.dcm"], "--box takes 4 numbers"),
        (["--box", "1,2,30,40", "--out", "m.txt"], "must end in one of .dcm, .nii.gz, .png, .json"),
        (["--box", "1,2,30,40", "--out", "m.dcm", "--propagate", "2:3"], "must hold --frame 1"),
        (["--box", "1,2,30,40", "--out", "m.dcm", "--point", "5,5,7"], "is 1 (inside) or 0 (outside)"),
        (["--box", "500,500,600,600", "--out", "m.dcm"], "box"),
    ],
)
def test_bad_input_is_one_sentence_and_writes_nothing(sam_dir, ct, tmp_path, capsys, monkeypatch, extra, words):
    monkeypatch.chdir(tmp_path)
    assert main(["segment", str(ct), "--model", str(sam_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert not list(tmp_path.glob("m.*"))


def test_a_folder_that_is_not_a_sam_model_is_refused(ct, tmp_path, capsys):
    (tmp_path / "not-sam").mkdir()
    (tmp_path / "not-sam" / "config.json").write_text('{"model_type": "qwen2_vl"}')
    code = main(["segment", str(ct), "--box", "1,2,30,40", "--model", str(tmp_path / "not-sam"), "--out", "m.dcm"])
    assert code == 2 and "not-sam" in capsys.readouterr().err


def test_a_coronal_plane_mask_covers_that_row_of_voxels_in_every_slice(sam_dir, tmp_path, capsys, whole_image):
    phantom = Phantom()
    series = phantom.write_series(tmp_path / "series")
    out = tmp_path / "coronal.nii.gz"
    argv = ["segment", str(series), "--plane", "coronal", "--slice", "31", "--box", "5,5,50,90"]
    assert main([*argv, "--model", str(sam_dir), "--out", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr()
    assert f"on {phantom.slices} frame(s)" in printed.out
    labels = np.asarray(nibabel.load(out).dataobj) > 0
    assert int(labels.sum()) == phantom.slices * phantom.columns  # one row of 60 voxels on each of 40 slices
    row_axis = labels.shape.index(phantom.rows)
    rows = np.flatnonzero(labels.any(axis=tuple(a for a in range(3) if a != row_axis)))
    assert rows.tolist() in ([30], [phantom.rows - 1 - 30])  # coronal slice 31 is row index 30 (NIfTI may flip)


def test_plane_and_propagate_are_refused_together(sam_dir, tmp_path, capsys):
    series = Phantom().write_series(tmp_path / "series")
    out = tmp_path / "m.dcm"
    argv = ["segment", str(series), "--plane", "axial", "--propagate", "1:3", "--box", "1,1,9,9"]
    assert main([*argv, "--model", str(sam_dir), "--out", str(out)]) == 2
    assert "--plane and --propagate cannot be used together" in capsys.readouterr().err and not out.exists()
