"""`annotate --task seg`: each label's grounding box (tiny Qwen2-VL) prompts the segmenter (tiny SAM).

Both tiny models have random weights, so both are scripted where the test needs a known result:
ClinKD's tokens answer a box in Qwen2-VL's dialect (through the real streamer and box parser),
and the SAM decoder fills exactly the prompt box. What is under test is the chain: the box
reaches the segmenter on the pixels ClinKD saw, the mask lands pending with its provenance, a
label without a box is a note, and a resumed run does not redo finished images.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file

import engine.clinkd
from cli import annotate as cli
from engine.annotations import Mask, Review, Source, load_document
from engine.preannotate import DONE, PreannotateSpec, PreTask, log_path, read_log
from engine.segmentation.predictor import Segmenter
from tests.engine.test_preannotate import write_images
from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_checkpoint
from tests.engine.tiny_sam import save_sam_dir

LUNG = "The left lung is located at <|box_start|>(100,200),(500,600)<|box_end|>."
NO_BOX = "I cannot find it in this image."


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    return save_sam_dir(tmp_path_factory.mktemp("tiny-sam") / "sam")


@pytest.fixture
def box_decoder(monkeypatch):
    """The decoder fills the prompt box: logits +10 inside it on SAM's 256 grid of the 1024 input."""

    def decode(self, entry, prompt, multimask=False):
        x1, y1, x2, y2 = (float(v) / 4 for v in prompt["input_boxes"].reshape(-1))
        logits = torch.full((1, 1, 256, 256), -10.0)
        logits[..., round(y1) : round(y2), round(x1) : round(x2)] = 10.0
        return logits, 0.9

    monkeypatch.setattr(Segmenter, "decode", decode)


@pytest.fixture
def scripted_clinkd(monkeypatch):
    """ClinKD answers every "left lung" with a box, "heart" never; ``asked`` counts the questions."""
    asked: list[str] = []
    real = engine.clinkd.load_model

    def load(settings):
        clinkd = real(settings)
        tokenizer = clinkd.processor.tokenizer

        def generate(input_ids, streamer, stopping_criteria, **_):
            prompt = tokenizer.decode(input_ids[0])
            asked.append(prompt)
            answer = LUNG if "left lung" in prompt else NO_BOX
            tokens = [*tokenizer(answer, add_special_tokens=False).input_ids, clinkd.eos_token_ids[0]]
            streamer.put(input_ids)
            out = input_ids
            for token in tokens:
                out = torch.cat([out, torch.tensor([[token]])], dim=1)
                streamer.put(torch.tensor([token]))
            streamer.end()
            return out

        monkeypatch.setattr(clinkd.model, "generate", generate)
        return clinkd

    monkeypatch.setattr(engine.clinkd, "load_model", load)
    return asked


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["annotate", *argv])
    return args.func(args)


def seg_argv(images: Path, qwen: Path, sam: Path, out: Path, labels: str = "left lung,heart") -> list[str]:
    return [
        str(images),
        "--task",
        "seg",
        "--labels",
        labels,
        "--model",
        str(qwen),
        "--min-pixels",
        str(TINY_MIN_PIXELS),
        "--max-pixels",
        str(TINY_MAX_PIXELS),
        "--segmentation-model",
        str(sam),
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


def masks_of(out: Path) -> list[Mask]:
    doc = load_document(out)
    return [a for ref in doc.images for a in doc.annotations(ref.image_id) if isinstance(a, Mask)]


def test_each_label_box_becomes_a_pending_mask_inside_it_and_a_resumed_run_redoes_nothing(
    tmp_path, tmp_path_factory, sam_dir, box_decoder, scripted_clinkd, capsys
) -> None:
    qwen = tiny_checkpoint(tmp_path_factory)
    images = write_images(tmp_path / "images", 3, broken=False)  # 80 x 40 pictures
    shutil.copy(get_testdata_file("CT_small.dcm"), images / "ct.dcm")  # 128 x 128 CT with pixel spacing
    out = tmp_path / "project.json"
    argv = seg_argv(images, qwen, sam_dir, out)

    assert run_cli(*argv) == 0
    printed = capsys.readouterr().out
    assert len(scripted_clinkd) == 8  # 4 images x 2 labels
    assert "images: 4 of 4 annotated" in printed and "masks proposed: 4" in printed
    assert printed.count("heart: ClinKD found no box, so there is no mask") == 4

    doc = load_document(out)
    masks = masks_of(out)
    assert len(masks) == 4 and {m.label for m in masks} == {"left lung"}
    assert {m.source for m in masks} == {Source.MODEL} and {m.review for m in masks} == {Review.PENDING}
    for ref in doc.images:
        [mask] = [a for a in doc.annotations(ref.image_id) if isinstance(a, Mask)]
        [frame] = mask.frames
        pixels = frame.rle.decode()
        x1, y1, x2, y2 = 0.1 * ref.width, 0.2 * ref.height, 0.5 * ref.width, 0.6 * ref.height  # the answer's box
        rows, cols = np.nonzero(pixels)
        assert pixels.sum() >= 0.8 * (x2 - x1) * (y2 - y1)  # the box is filled ...
        assert (
            cols.min() >= x1 - 1 and cols.max() < x2 + 1 and rows.min() >= y1 - 1 and rows.max() < y2 + 1
        )  # ... no more
        provenance = mask.provenance
        assert provenance.task == "seg" and provenance.question == "Where is the left lung located in the image?"
        assert provenance.answer == LUNG and provenance.window.startswith("as displayed")
        assert provenance.model == f"{qwen.name} + {sam_dir.name}"
        settings = json.loads(provenance.settings)
        assert settings["segmenter"] == sam_dir.name and settings["frame"] == 0
        assert settings["boxes"] == [pytest.approx([x1, y1, x2, y2], abs=0.01)]
    ct_mask = next(m for ref in doc.images if ref.paths[0].endswith("ct.dcm") for m in doc.annotations(ref.image_id))
    assert {v.name for v in ct_mask.values} >= {"area", "mean"}  # measured on the CT's pixel spacing and HU
    records = read_log(log_path(out))
    assert [r["status"] for r in records] == [DONE] * 4 and {r["masks"] for r in records} == {1}
    assert all(r["notes"] == ["heart: ClinKD found no box, so there is no mask"] for r in records)

    # resume: nothing left to do, nothing asked, no duplicate masks
    assert run_cli(*argv) == 0
    assert len(scripted_clinkd) == 8
    assert "4 skipped, already done" in capsys.readouterr().out
    assert len(masks_of(out)) == 4


def test_seg_needs_a_segmentation_model_and_refuses_a_wrong_folder_before_anything_runs(tmp_path, capsys) -> None:
    images = write_images(tmp_path / "images", 1, broken=False)
    out = tmp_path / "project.json"
    base = [str(images), "--task", "seg", "--labels", "heart", "--model", str(tmp_path), "--out", str(out)]
    assert run_cli(*base) == 2
    assert "--task seg needs --segmentation-model" in capsys.readouterr().err
    (tmp_path / "not-sam").mkdir()
    assert run_cli(*base, "--segmentation-model", str(tmp_path / "not-sam")) == 2
    assert "not-sam" in capsys.readouterr().err and not out.exists()
    assert run_cli(str(images), "--task", "seg", "--model", str(tmp_path), "--out", str(out)) == 2
    assert "--task seg needs --labels" in capsys.readouterr().err


def test_the_segmenter_is_part_of_the_settings_key() -> None:
    spec = PreannotateSpec(PreTask.SEG, ("heart",), segmenter="sam-vit-base")
    other = PreannotateSpec(PreTask.SEG, ("heart",), segmenter="medsam")
    assert spec.key("clinkd") != other.key("clinkd") != PreannotateSpec(PreTask.VG, ("heart",)).key("clinkd")
    assert PreannotateSpec(PreTask.VG, ("heart",), segmenter="x").segmenter == ""
