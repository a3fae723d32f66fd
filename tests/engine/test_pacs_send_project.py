"""``main.py pacs send --project``: each image's reviewed annotations as SR and reviewed masks as SEG,
through the window's ``send_report``, against the real Orthanc of tests/orthanc.py."""

from __future__ import annotations

import numpy as np
import pytest

from engine.annotations import AnnotationDocument, save_document
from engine.annotations.commands import AddAnnotations
from engine.annotations.image_ref import image_ref_from_stack
from engine.annotations.model import Review
from engine.imaging import open_paths
from engine.pacs import connect, server_from_url
from main import main
from tests.orthanc import OUR_AET, ct_series, seeded_orthanc


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    yield from seeded_orthanc(tmp_path_factory)


def _series(pacs, folder, seed: int):
    """A 3-slice CT uploaded to Orthanc and written to ``folder`` (the project's local copy)."""
    folder.mkdir()
    slices = ct_series(3, seed=seed, patient_id=f"SEND-{seed}")
    for index, ds in enumerate(slices):
        pacs.server.upload(ds)
        ds.save_as(folder / f"{index}.dcm", enforce_file_format=True)
    return image_ref_from_stack(open_paths([str(folder)]).stacks[0])


def _project(pacs, tmp_path, seed: int):
    """A project of two series: one with an accepted box and an accepted mask (and a pending mask),
    one with only a pending model mask."""
    doc = AnnotationDocument()
    reviewed, pending_only = _series(pacs, tmp_path / "a", seed), _series(pacs, tmp_path / "b", seed + 1)
    array = np.zeros((reviewed.height, reviewed.width), bool)
    array[10:30, 12:40] = True
    for ref in (reviewed, pending_only):
        doc.add_image(ref)
    doc.execute(
        AddAnnotations(
            reviewed.image_id,
            [
                doc.new_mask(reviewed.image_id, {1: array}, "nodule", review=Review.ACCEPTED),
                doc.new_mask(reviewed.image_id, {0: array}, "liver", source="model"),
                doc.new_box(reviewed.image_id, 1, 4, 4, 20, 20, "nodule", review=Review.ACCEPTED),
            ],
        )
    )
    doc.execute(
        AddAnnotations(
            pending_only.image_id, [doc.new_mask(pending_only.image_id, {0: array}, "liver", source="model")]
        )
    )
    project = tmp_path / "project.json"
    save_document(doc, project)
    return project, reviewed, pending_only


def _modalities(url: str, study_uid: str) -> dict[str, int]:
    """Series modality -> instances, as Orthanc answers a query."""
    with connect(server_from_url(url, our_aet=OUR_AET)) as connection:
        return {
            s.modality: len(connection.instance_uids(study_uid, s.series_uid))
            for s in connection.find_series(study_uid)
        }


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_a_project_sends_sr_and_seg_per_image_and_a_resend_stores_nothing(pacs, protocol, tmp_path, capsys):
    url = pacs.server.dicomweb_url if protocol == "dicomweb" else pacs.server.dimse_url
    project, reviewed, pending_only = _project(pacs, tmp_path, seed=61 if protocol == "dicomweb" else 63)
    send = ["pacs", "send", "--url", url, "--aet", OUR_AET, "--project", str(project)]
    assert main(send) == 0
    lines = capsys.readouterr().out.splitlines()
    [stored] = [line for line in lines if reviewed.image_id in line]
    assert ": stored DICOM SR " in stored and " and DICOM SEG " in stored
    [nothing] = [line for line in lines if pending_only.image_id in line]
    assert "Nothing to send" in nothing and "pending review" in nothing
    assert _modalities(url, reviewed.study_instance_uid) == {"CT": 3, "SR": 1, "SEG": 1}
    assert _modalities(url, pending_only.study_instance_uid) == {"CT": 3}  # the pending mask stayed local

    assert main(send) == 0  # unchanged annotations: the archive holds them already
    [again] = [line for line in capsys.readouterr().out.splitlines() if reviewed.image_id in line]
    assert "already stored, nothing sent again" in again
    assert _modalities(url, reviewed.study_instance_uid) == {"CT": 3, "SR": 1, "SEG": 1}


def test_only_the_chosen_images_and_bad_input(pacs, tmp_path, capsys):
    url = pacs.server.dicomweb_url
    project, reviewed, pending_only = _project(pacs, tmp_path, seed=65)
    base = ["pacs", "send", "--url", url, "--project", str(project)]
    assert main([*base, "--image", str(tmp_path / "b" / "0.dcm")]) == 0  # an image named by one of its files
    out = capsys.readouterr().out
    assert pending_only.image_id in out and reviewed.image_id not in out
    assert _modalities(url, reviewed.study_instance_uid) == {"CT": 3}
    assert main([*base, "--image", reviewed.image_id]) == 0
    assert "stored DICOM SR" in capsys.readouterr().out
    assert main([*base, "--image", "series:1.2.3"]) == 2
    assert "--image series:1.2.3 is not an image of" in capsys.readouterr().err
    assert main(["pacs", "send", "--url", url, "--image", reviewed.image_id]) == 2
    assert "--image needs --project" in capsys.readouterr().err
    assert main(["pacs", "send", "--url", url]) == 2
    assert "send needs DICOM files, or --project" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["pacs", "send", "--url", url, "--project", str(tmp_path / "broken.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
