"""Where an image set's annotations are kept: beside the images, or in the user data folder."""

from __future__ import annotations

import os
from pathlib import Path

from engine.annotations import AnnotationDocument, annotation_path, save_document, sidecar_path, user_data_path
from engine.paths import data_dir, resources_dir

DEMO = resources_dir() / "demo" / "CT_small.dcm"


def test_a_writable_folder_keeps_the_sidecar_beside_the_images(tmp_path):
    image = tmp_path / "scan.dcm"
    image.write_bytes(b"")
    assert annotation_path([image]) == sidecar_path([image]) == tmp_path / "scan.dcm.clinlens.json"
    assert annotation_path([tmp_path]) == tmp_path / ".clinlens" / "annotations.json"


def test_the_bundled_demo_image_keeps_its_annotations_in_the_user_data_folder():
    path = annotation_path([DEMO])
    assert path.parent == data_dir() / "annotations"
    assert path.name.startswith("CT_small.dcm-") and path.suffix == ".json"
    assert not path.is_relative_to(resources_dir())
    assert annotation_path([str(DEMO)]) == path  # the same set finds the same file


def test_a_read_only_folder_sends_annotations_to_the_user_data_folder(tmp_path, monkeypatch):
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.png").write_bytes(b"")
    (share / "b.png").write_bytes(b"")
    real_access = os.access
    # root ignores permission bits, so the read-only share is what os.access reports for it
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == share else real_access(p, mode))
    one, both = annotation_path([share / "a.png"]), annotation_path([share / "b.png", share / "a.png"])
    assert one.is_relative_to(data_dir()) and both.is_relative_to(data_dir())
    assert one != both  # keyed by the image set
    assert both == annotation_path([share / "a.png", share / "b.png"])  # order does not matter
    assert annotation_path([share]).is_relative_to(data_dir())  # the folder's .clinlens/ cannot be made


def test_an_existing_sidecar_is_still_used_when_the_folder_turns_read_only(tmp_path, monkeypatch):
    image = tmp_path / "scan.dcm"
    image.write_bytes(b"")
    save_document(AnnotationDocument(), sidecar_path([image]))
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    assert annotation_path([image]) == sidecar_path([image])


def test_user_data_names_are_safe_file_names(tmp_path):
    odd = tmp_path / "a b:c*?.dcm"
    name = user_data_path([odd]).name
    assert name.startswith("a_b_c__.dcm-") and "/" not in name
