"""Masks to and from Orthanc as DICOM SEG beside the SR: round trip, no duplicate, other series ignored."""

from __future__ import annotations

import numpy as np
import pytest

from engine.annotations.commands import AddAnnotations
from engine.annotations.document import AnnotationDocument
from engine.annotations.image_ref import image_ref_from_stack
from engine.annotations.model import Mask, Review
from engine.imaging import open_paths
from engine.pacs import InstanceCache, connect, retrieve_series, server_from_url
from engine.pacs.writeback import annotations_from_pacs, send_report
from tests.orthanc import OUR_AET, ct_series, seeded_orthanc


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    yield from seeded_orthanc(tmp_path_factory)


def _server(pacs, protocol: str):
    if protocol == "dicomweb":
        return server_from_url(pacs.server.dicomweb_url)
    return server_from_url(pacs.server.dimse_url, our_aet=OUR_AET)


def _masked_series(pacs, protocol: str, seed: int, study_uid: str | None = None, box: bool = False):
    """A fresh 4-slice CT in Orthanc, opened, with an accepted mask on two slices and a pending one."""
    slices = ct_series(4, seed=seed, patient_id=f"SEG-{seed}", study_uid=study_uid)
    for ds in slices:
        pacs.server.upload(ds)
    study, series = str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID)
    server = _server(pacs, protocol)
    paths = retrieve_series(connect(server), InstanceCache(), study, series).paths
    ref = image_ref_from_stack(open_paths([str(p) for p in paths]).stacks[0])
    doc = AnnotationDocument()
    doc.add_image(ref)
    arrays = {}
    for frame in (1, 2):
        array = np.zeros((ref.height, ref.width), bool)
        array[10 + frame : 30, 5 : 40 - frame] = True
        arrays[frame] = array
    kept = doc.new_mask(ref.image_id, arrays, "nodule", review=Review.ACCEPTED)
    pending = doc.new_mask(ref.image_id, {0: arrays[1]}, "liver", source="model")
    extra = [doc.new_box(ref.image_id, 1, 4, 4, 20, 20, "nodule")] if box else []
    doc.execute(AddAnnotations(ref.image_id, [kept, pending, *extra]))
    return server, ref, doc, kept


def _masks(reading) -> list[Mask]:
    return [a for a in reading.annotations if isinstance(a, Mask)]


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_reviewed_masks_go_as_a_seg_with_the_sr_and_come_back_with_the_same_pixels(pacs, protocol):
    server, ref, doc, kept = _masked_series(pacs, protocol, seed=41 if protocol == "dicomweb" else 42, box=True)
    with connect(server) as connection:
        sent = send_report(connection, doc, ref.image_id)
        assert sent.seg is not None and not sent.already_stored
        modalities = sorted(s.modality for s in connection.find_series(ref.study_instance_uid))
        assert modalities == ["CT", "SEG", "SR"]
        assert sent.sr is not None and sent.seg.StudyInstanceUID == sent.sr.StudyInstanceUID
        reading = annotations_from_pacs(connection, InstanceCache(), ref)
        again = send_report(connection, doc, ref.image_id)  # unchanged: nothing new is stored
        assert again.already_stored and again.seg.SOPInstanceUID == sent.seg.SOPInstanceUID
        seg_series = [s for s in connection.find_series(ref.study_instance_uid) if s.modality == "SEG"]
        assert len(seg_series) == 1
        assert len(connection.instance_uids(ref.study_instance_uid, seg_series[0].series_uid)) == 1
        reread = annotations_from_pacs(connection, InstanceCache(), ref)
    assert reading.warnings == ()
    [back] = _masks(reading)  # the pending "liver" mask stayed local
    assert back.label == "nodule" and back.review is Review.ACCEPTED
    assert sorted(back.arrays()) == [1, 2]
    for frame, array in kept.arrays().items():
        assert np.array_equal(back.arrays()[frame], array)
    assert [m.id for m in _masks(reread)] == [back.id]  # read twice, the same annotation


def test_a_seg_of_another_series_of_the_study_is_ignored(pacs):
    server, ref, doc, _kept = _masked_series(pacs, "dicomweb", seed=43)
    _, other_ref, other_doc, _ = _masked_series(pacs, "dicomweb", seed=44, study_uid=ref.study_instance_uid)
    assert (
        other_ref.study_instance_uid == ref.study_instance_uid != ""
        and other_ref.series_instance_uid != ref.series_instance_uid
    )
    with connect(server) as connection:
        assert send_report(connection, other_doc, other_ref.image_id).seg is not None
        reading = annotations_from_pacs(connection, InstanceCache(), ref)
        assert _masks(reading) == [] and reading.warnings == ()
        assert send_report(connection, doc, ref.image_id).sr is None  # masks without measurements: a SEG alone
        assert len(_masks(annotations_from_pacs(connection, InstanceCache(), other_ref))) == 1
