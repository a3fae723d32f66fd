"""Builders shared by the annotation tests (no tests here): hand-built refs, real DICOM copies."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file

from engine.annotations import AddAnnotations, AnnotationDocument, ImageRef, SetImageReviewed, image_ref_from_stack
from engine.imaging import FrameSource, PixelSpacing, open_paths


class Clock:
    """Distinct, increasing timestamps so tests can see which edit touched what."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> str:
        return f"2026-01-01T00:00:{next(self._ticks):02d}.000+00:00"


def raster_ref(path: str = "/data/chest.png", width: int = 40, height: int = 30) -> ImageRef:
    return ImageRef(path, (path,), width, height, 1, (FrameSource(path, None, 1),), title="chest.png")


def series_ref(n_frames: int = 3, image_id: str = "series:1.2.3") -> ImageRef:
    paths = tuple(f"/data/ct/slice{i}.dcm" for i in range(n_frames))
    frames = tuple(FrameSource(p, f"1.2.3.{i}", 1) for i, p in enumerate(paths))
    return ImageRef(
        image_id,
        paths,
        64,
        48,
        n_frames,
        frames,
        kind="dicom",
        title="CT",
        spacing=PixelSpacing(0.5, 0.7, "PixelSpacing"),
        study_instance_uid="1.2",
        series_instance_uid="1.2.3",
    )


def new_doc(*refs: ImageRef, undo_limit: int = 100) -> AnnotationDocument:
    doc = AnnotationDocument(undo_limit=undo_limit, clock=Clock())
    for ref in refs:
        doc.add_image(ref)
    return doc


def add_box(
    doc: AnnotationDocument, image_id: str, rect=(1.0, 2.0, 10.0, 12.0), label: str = "nodule", frame: int = 0, **kwargs
):
    box = doc.new_box(image_id, frame, *rect, label, **kwargs)
    assert doc.execute(AddAnnotations(image_id, [box]))
    return box


def image_set(folder: Path) -> list[ImageRef]:
    """A real mixed image set, opened through engine.imaging.

    * ``ct.dcm``: CT_small.dcm with a non-square PixelSpacing (0.5 mm rows, 0.8 mm columns);
    * ``us.dcm``: examples_ybr_color.dcm, 30 frames of 320x240 (multi-frame, non-square image);
    * ``photo.png``: a 40x30 raster.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.PixelSpacing = [0.5, 0.8]
    ct.save_as(folder / "ct.dcm")
    shutil.copy(get_testdata_file("examples_ybr_color.dcm"), folder / "us.dcm")
    Image.fromarray(np.arange(40 * 30, dtype=np.uint8).reshape(30, 40)).save(folder / "photo.png")
    result = open_paths([folder])
    assert not result.errors, result.errors
    return [image_ref_from_stack(stack) for stack in result.stacks]


def by_title(refs: list[ImageRef], fragment: str) -> ImageRef:
    return next(r for r in refs if any(fragment in p for p in r.paths))


def annotated_set(folder: Path) -> tuple[AnnotationDocument, dict[str, ImageRef]]:
    """The real image set with boxes that exercise every export rule.

    CT: a user box with float corners and a rejected model box. US: boxes on frame 0 and on
    frame 17 (frame number 18), a classifier image label, and the image marked reviewed.
    PNG: a box that sticks out of the image (clipped by YOLO/VOC/SR) and a note with a comma.
    """
    refs = image_set(folder)
    ct, us, png = by_title(refs, "ct.dcm"), by_title(refs, "us.dcm"), by_title(refs, "photo.png")
    doc = new_doc(ct, us, png)
    doc.ensure_label("nodule", "#ff0000")
    add_box(doc, ct.image_id, (10.1, 20.25, 50.5, 60.75), "nodule")
    add_box(doc, ct.image_id, (70, 70, 90, 100), "calcification", source="model", score=0.31, review="rejected")
    add_box(doc, us.image_id, (5, 6, 100, 200), "nodule", frame=0, source="model", score=0.9)
    add_box(doc, us.image_id, (200.5, 100, 319, 239.5), "cyst", frame=17, note="check")
    label = doc.new_image_label(us.image_id, "benign", score=0.75)
    doc.execute(AddAnnotations(us.image_id, [label]))
    doc.execute(SetImageReviewed(us.image_id, True))
    add_box(doc, png.image_id, (30, 20, 45, 35), "nodule", note="edge, clipped")
    doc.set_last_frame(us.image_id, 17)
    return doc, {"ct": ct, "us": us, "png": png}
