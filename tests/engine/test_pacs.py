"""engine.pacs against a real Orthanc (tests/orthanc.py): DICOMweb and DIMSE, cache, errors, SR write-back."""

from __future__ import annotations

import functools
import logging
import socket
import threading
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keyring
import keyring.backend
import numpy as np
import pydicom
import pynetdicom.status
import pytest

from engine.annotations.commands import AddAnnotations
from engine.annotations.document import AnnotationDocument
from engine.annotations.image_ref import image_ref_from_stack
from engine.annotations.model import Review, Source
from engine.annotations.persistence import sidecar_path
from engine.imaging import open_paths
from engine.pacs import (
    InstanceCache,
    PacsError,
    PacsServer,
    PacsSettings,
    RetrieveCancelled,
    SendRejected,
    StudyQuery,
    connect,
    load_pacs_settings,
    parse_date_range,
    parse_dimse_url,
    retrieve_series,
    save_pacs_settings,
    server_from_url,
    store_keyring_secret,
)
from engine.pacs.errors import dimse_status_error
from engine.pacs.servers import settings_path
from engine.pacs.writeback import annotations_from_pacs, send_annotations
from engine.paths import data_dir, pacs_cache_dir
from tests.engine.foreign_sr import CT, dose_report, issue_22_report
from tests.orthanc import OUR_AET, OrthancServer, Seeded, ct_series, encode, free_port, seeded_orthanc

# An archive that is read-only for us: HTTP writes to DICOMweb are forbidden (Lua filter) and our
# AE title may not C-STORE (its modality entry says so).
READ_ONLY_LUA = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  return method ~= 'POST' or string.find(uri, '/dicom-web/', 1, true) == nil
end
"""


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    yield from seeded_orthanc(tmp_path_factory)


def web(pacs: Seeded, **kwargs) -> PacsServer:
    return server_from_url(pacs.server.dicomweb_url, **kwargs)


def dimse(pacs: Seeded, **kwargs) -> PacsServer:
    return server_from_url(pacs.server.dimse_url, our_aet=OUR_AET, **kwargs)


def _uids(series: list[pydicom.Dataset]) -> tuple[str, str]:
    return str(series[0].StudyInstanceUID), str(series[0].SeriesInstanceUID)


def _assert_whole_files(cache: InstanceCache, study: str, series: str) -> list[Path]:
    folder = cache.series_dir(study, series)
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")], "a half-written instance stayed in the cache"
    paths = cache.paths(study, series)
    for path in paths:
        ds = pydicom.dcmread(path)
        assert len(ds.PixelData) == ds.Rows * ds.Columns * 2  # complete pixel data
    return paths


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_search_and_retrieve_streams_a_multi_instance_series(pacs, protocol):
    server = web(pacs) if protocol == "dicomweb" else dimse(pacs)
    study, series = _uids(pacs.ct)
    with connect(server) as connection:
        assert "answered" in connection.echo()
        studies = connection.find_studies(StudyQuery(patient_id="PACS-CT"))
        assert [s.study_uid for s in studies] == [study]
        assert studies[0].modalities == ("CT",) and studies[0].series_count == 1
        assert studies[0].description == "Chest CT" and studies[0].date == "20240315"
        found = connection.find_series(study)
        assert [(s.series_uid, s.modality, s.instance_count) for s in found] == [(series, "CT", 12)]
        cache = InstanceCache()
        progress = []
        result = retrieve_series(
            connection,
            cache,
            study,
            series,
            on_instance=lambda path, done, total: progress.append((path.exists(), done, total)),
        )
    assert progress == [(True, i, 12) for i in range(1, 13)]  # streamed: each file whole before it is announced
    assert not result.from_cache and cache.is_complete(study, series)
    by_uid = {ds.SOPInstanceUID: ds for ds in pacs.ct}
    for path in result.paths:
        got = pydicom.dcmread(path)
        assert np.array_equal(got.pixel_array, by_uid[got.SOPInstanceUID].pixel_array)
    assert {pydicom.dcmread(p).SOPInstanceUID for p in result.paths} == set(by_uid)
    # reopening is served from the cache, even with the server unreachable
    offline = replace(
        server, url=server.url.replace(str(pacs.server.http_port), "1").replace(str(pacs.server.dicom_port), "1")
    )
    again = retrieve_series(connect(offline), cache, study, series)
    assert again.from_cache and sorted(again.paths) == sorted(result.paths)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_search_filters(pacs, protocol):
    server = web(pacs) if protocol == "dicomweb" else dimse(pacs)
    with connect(server) as connection:
        mr = connection.find_studies(StudyQuery(modality="MR"))
        assert [s.study_uid for s in mr] == [pacs.mr_study]
        dated = connection.find_studies(StudyQuery(date_range=parse_date_range("2023-01-01-20231231")))
        assert [s.study_uid for s in dated] == [str(pacs.corrupt[0].StudyInstanceUID)]
        described = connection.find_studies(StudyQuery(description="Chest CT"))
        assert [s.study_uid for s in described] == [str(pacs.ct[0].StudyInstanceUID)]
        assert connection.find_studies(StudyQuery(patient_id="NOBODY")) == []


def test_c_move_to_our_storage_scp(pacs):
    study, series = _uids(pacs.ct)
    server = dimse(pacs, storage_port=pacs.server.storage_port)
    received = []
    connect(server).retrieve_series(
        study, series, lambda ds: received.append(ds.SOPInstanceUID), threading.Event(), method="move"
    )
    assert sorted(received) == sorted(ds.SOPInstanceUID for ds in pacs.ct)


def test_c_get_refused_falls_back_to_c_move(tmp_path):
    """A PACS that lets our AE title move but not get (a common hospital setting)."""
    storage_port = free_port()
    move_only = {
        "DicomAlwaysAllowGet": False,
        "DicomModalities": {
            "clinlens": {
                "AET": OUR_AET,
                "Host": "127.0.0.1",
                "Port": storage_port,
                "AllowGet": False,
                "AllowMove": True,
            }
        },
    }
    with OrthancServer(tmp_path / "move-only", config=move_only) as server:
        slices = ct_series(6, seed=4)
        for ds in slices:
            server.upload(ds)
        study, series = _uids(slices)
        with pytest.raises(PacsError):  # C-GET alone is refused
            connect(server_from_url(server.dimse_url, our_aet=OUR_AET)).retrieve_series(
                study, series, lambda ds: None, threading.Event(), method="get"
            )
        result = retrieve_series(
            connect(server_from_url(server.dimse_url, our_aet=OUR_AET, storage_port=storage_port)),
            InstanceCache(),
            study,
            series,
        )
    assert sorted(pydicom.dcmread(p).SOPInstanceUID for p in result.paths) == sorted(ds.SOPInstanceUID for ds in slices)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_cancel_keeps_only_whole_instances(pacs, protocol):
    server = web(pacs) if protocol == "dicomweb" else dimse(pacs)
    study, series = _uids(pacs.ct)
    cache = InstanceCache()
    cancel = threading.Event()

    def on_instance(_path, done, _total):
        if done == 3:
            cancel.set()

    with pytest.raises(RetrieveCancelled):
        retrieve_series(connect(server), cache, study, series, on_instance=on_instance, cancel=cancel)
    assert not cache.is_complete(study, series)
    assert 3 <= len(_assert_whole_files(cache, study, series)) < 12


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_server_stopped_mid_retrieve(tmp_path, protocol):
    # 48 MB of pixels: more than loopback socket buffers hold, so the kill cuts the stream
    n = 96
    with OrthancServer(tmp_path / "dying") as server:
        slices = ct_series(n, size=512, seed=3)
        for ds in slices:
            server.upload(ds)
        study, series = _uids(slices)
        cache = InstanceCache()

        def on_instance(_path, done, _total):
            if done == 2:
                server.kill()

        url = server.dicomweb_url if protocol == "dicomweb" else server.dimse_url
        with pytest.raises(PacsError) as failure:
            retrieve_series(
                connect(server_from_url(url, our_aet=OUR_AET, timeout_s=5)),
                cache,
                study,
                series,
                on_instance=on_instance,
            )
    assert not isinstance(failure.value, RetrieveCancelled)
    assert "127.0.0.1" in str(failure.value)
    assert not cache.is_complete(study, series)
    assert 2 <= len(_assert_whole_files(cache, study, series)) < n


def test_corrupt_instance_is_reported_and_the_rest_opens(pacs):
    study, series = _uids(pacs.corrupt)
    result = retrieve_series(connect(web(pacs)), InstanceCache(), study, series)
    assert len(result.paths) == 5
    opened = open_paths([str(p) for p in result.paths])
    assert len(opened.errors) == 1 and str(pacs.corrupt[2].SOPInstanceUID) in {
        pydicom.dcmread(e.path, stop_before_pixels=True).SOPInstanceUID for e in opened.errors
    }
    assert [s.n_frames for s in opened.stacks] == [4]


def test_authentication(tmp_path, monkeypatch):
    with OrthancServer(tmp_path / "auth", users={"alice": "s3cret"}) as server:
        anonymous = server_from_url(server.dicomweb_url)
        with pytest.raises(PacsError, match="HTTP 401"):
            connect(anonymous).echo()
        monkeypatch.setenv("PACS_PASSWORD", "wrong")
        with pytest.raises(PacsError, match="credentials"):
            connect(server_from_url(server.dicomweb_url, username="alice", secret_env="PACS_PASSWORD")).echo()
        monkeypatch.setenv("PACS_PASSWORD", "s3cret")
        assert (
            "answered"
            in connect(server_from_url(server.dicomweb_url, username="alice", secret_env="PACS_PASSWORD")).echo()
        )
        monkeypatch.delenv("PACS_PASSWORD")
        with pytest.raises(PacsError, match=r"PACS_PASSWORD .*not set"):
            connect(server_from_url(server.dicomweb_url, username="alice", secret_env="PACS_PASSWORD"))


@pytest.fixture
def web_page_server(tmp_path):
    """A plain web server (a hospital intranet page, say) that answers every path with HTML."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "studies").write_text("<html><body>Welcome to the intranet</body></html>")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_each_failure_is_one_sentence(pacs, web_page_server):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()  # accepts TCP connections (backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        cases = {
            f"http://127.0.0.1:{closed_port}/dicom-web": "Connection refused",
            "http://no-such-pacs.invalid/dicom-web": "Unknown host",
            f"http://127.0.0.1:{pacs.server.http_port}/not-dicom-web": "Wrong URL",
            web_page_server: "not with DICOM",
            f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web": "timeout",
            f"dicom://ORTHANC@127.0.0.1:{closed_port}": "Connection refused",
            "dicom://ORTHANC@no-such-pacs.invalid:104": "Unknown host",
            f"dicom://ORTHANC@127.0.0.1:{silent.getsockname()[1]}": "no DICOM association",
        }
        for url, expected in cases.items():
            with pytest.raises(PacsError) as failure:
                connect(server_from_url(url, timeout_s=1)).echo()
            message = str(failure.value)
            assert expected in message, (url, message)
            assert message.count(". ") == 0 and message.endswith((".", ")")), message  # one sentence
    finally:
        silent.close()
    with pytest.raises(PacsError, match="not a PACS address"):
        server_from_url("ftp://pacs")
    with pytest.raises(PacsError, match="not a PACS address"):
        server_from_url("http://[::1/dicom-web")
    with pytest.raises(PacsError, match="not a valid DICOMweb URL"):
        connect(server_from_url("http://pacs:99999/dicom-web")).echo()
    with pytest.raises(PacsError, match="not a valid DIMSE address"):
        server_from_url("dicom://pacs:104")


def _annotated_series(pacs: Seeded, protocol: str):
    """Retrieve the CT series and annotate it: a user box, an accepted model box, a KPL label, a rejected box."""
    study, series = _uids(pacs.ct)
    server = web(pacs) if protocol == "dicomweb" else dimse(pacs)
    result = retrieve_series(connect(server), InstanceCache(), study, series)
    stack = open_paths([str(p) for p in result.paths]).stacks[0]
    ref = image_ref_from_stack(stack)
    doc = AnnotationDocument()
    doc.add_image(ref)
    user = doc.new_box(ref.image_id, 3, 10.25, 12, 30, 40.5, "nodule")
    model = doc.new_box(
        ref.image_id,
        5,
        1,
        2,
        20,
        22,
        "mass",
        source=Source.MODEL,
        score=0.875,
        note="where is the mass?",
        review=Review.ACCEPTED,
    )
    rejected = doc.new_box(ref.image_id, 6, 1, 2, 20, 22, "artefact", source=Source.MODEL, review=Review.REJECTED)
    kpl = doc.new_image_label(
        ref.image_id, "tuberculosis", score=0.61, note="cavitary lesion in the upper lobe", review=Review.ACCEPTED
    )
    doc.execute(AddAnnotations(ref.image_id, [user, model, rejected, kpl]))
    return server, ref, doc, (user, model, kpl)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_sr_write_back_round_trip(pacs, protocol):
    server, ref, doc, kept = _annotated_series(pacs, protocol)
    with connect(server) as connection:
        sr = send_annotations(connection, doc, ref.image_id)
        assert sr.Modality == "SR" and sr.StudyInstanceUID == ref.study_instance_uid
        referenced = {
            item.ReferencedSOPInstanceUID
            for study in sr.CurrentRequestedProcedureEvidenceSequence
            for s in study.ReferencedSeriesSequence
            for item in s.ReferencedSOPSequence
        }
        assert referenced == {f.sop_instance_uid for f in ref.frames}
        found = annotations_from_pacs(connection, InstanceCache(), ref).annotations
    back = {a.id: a for a in found}
    assert set(back) >= {a.id for a in kept} and all(a.label != "artefact" for a in found)
    for original in kept:
        got = back[original.id]
        assert (got.label, got.source, got.review) == (original.label, original.source, original.review)
        assert got.score == pytest.approx(original.score) if original.score is not None else got.score is None
        if original.source is not Source.USER:
            assert got.note == original.note
        if hasattr(original, "x1"):
            assert (got.frame, got.sop_instance_uid) == (original.frame, original.sop_instance_uid)
            assert np.allclose([got.x1, got.y1, got.x2, got.y2], [original.x1, original.y1, original.x2, original.y2])


def test_rejected_send_leaves_local_annotations(tmp_path, pacs):
    _server, ref, doc, _kept = _annotated_series(pacs, "dicomweb")
    before = doc.annotations(ref.image_id)
    read_only = {
        "DicomAlwaysAllowStore": False,
        "DicomModalities": {"clinlens": {"AET": OUR_AET, "Host": "127.0.0.1", "Port": 104, "AllowStore": False}},
    }
    with OrthancServer(tmp_path / "strict", lua=READ_ONLY_LUA, config=read_only) as strict:
        strict.upload(encode(pydicom.dcmread(ref.paths[0])))
        for url in (strict.dicomweb_url, strict.dimse_url):
            with pytest.raises(SendRejected, match="rejected"):
                send_annotations(connect(server_from_url(url, our_aet=OUR_AET)), doc, ref.image_id)
    assert doc.annotations(ref.image_id) == before


def test_annotations_of_pacs_images_live_in_the_data_folder(pacs):
    study, series = _uids(pacs.ct)
    result = retrieve_series(connect(web(pacs)), InstanceCache(), study, series)
    path = sidecar_path([str(p) for p in result.paths])
    assert path.is_relative_to(data_dir()) and not path.is_relative_to(pacs_cache_dir())
    assert study in path.parts and path.name.startswith(series)


def test_cache_evicts_least_recently_used_series(pacs, tmp_path):
    cache = InstanceCache(tmp_path / "cache", limit_bytes=10**9)
    connection = connect(web(pacs))
    study, series = _uids(pacs.ct)
    bad_study, bad_series = _uids(pacs.corrupt)
    retrieve_series(connection, cache, bad_study, bad_series)
    retrieve_series(connection, cache, study, series)
    ct_size = sum(p.stat().st_size for p in cache.paths(study, series))
    cache.limit_bytes = ct_size + 4096
    assert cache.evict().removed == (cache.series_dir(bad_study, bad_series),)  # the older one goes first
    assert cache.is_complete(study, series)


def test_open_series_are_pinned_and_a_full_cache_warns_once(pacs, tmp_path, caplog):
    """A cache of 4 KB, smaller than any series: the series being retrieved and the pinned (open)
    ones stay, the cache goes over its limit, and says so once, not after every retrieve."""
    cache = InstanceCache(tmp_path / "cache", limit_bytes=4096)
    connection = connect(web(pacs))
    study, series = _uids(pacs.ct)
    bad_study, bad_series = _uids(pacs.corrupt)
    mr_series = connection.find_series(pacs.mr_study)[0].series_uid
    with caplog.at_level(logging.WARNING, logger="engine.pacs.cache"):
        first = retrieve_series(connection, cache, study, series)
        cache.pin(study, series)  # the viewer opened it
        second = retrieve_series(connection, cache, bad_study, bad_series)
        cache.pin(bad_study, bad_series)
        third = retrieve_series(connection, cache, pacs.mr_study, mr_series)
    assert cache.is_complete(study, series) and cache.is_complete(bad_study, bad_series)
    assert cache.is_complete(pacs.mr_study, mr_series)
    assert "over its limit of 4 KB" in first.warning and second.warning == third.warning == ""
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [first.warning]
    assert cache.take_warning() == first.warning and cache.take_warning() == ""  # for the GUI, once
    stuck = cache.evict()  # the MR series is neither open nor being retrieved any more
    assert stuck.removed == (cache.series_dir(pacs.mr_study, mr_series),) and stuck.over_limit_bytes > 0
    cache.unpin(study, series)  # closed: the next eviction may take it
    assert cache.evict().removed == (cache.series_dir(study, series),)
    assert cache.is_complete(bad_study, bad_series)
    assert cache.series_of(cache.paths(bad_study, bad_series)[0]) == (bad_study, bad_series)
    assert cache.series_of(tmp_path / "elsewhere.dcm") is None


def test_reading_a_studys_sr_keeps_the_open_image_series(pacs, tmp_path):
    """The SR retrieve after opening a series evicts to fit the cache; it used to take the image
    series just opened (frames decode lazily from those files). Pinned, it stays."""
    slices = ct_series(3, seed=21, patient_id="PACS-PIN", description="Pinned CT")
    for ds in slices:
        pacs.server.upload(ds)
    study, series = _uids(slices)
    connection = connect(dimse(pacs))
    paths = retrieve_series(connection, InstanceCache(tmp_path / "first"), study, series).paths
    ref = image_ref_from_stack(open_paths([str(p) for p in paths]).stacks[0])
    doc = AnnotationDocument()
    doc.add_image(ref)
    box = doc.new_box(ref.image_id, 1, 4, 4, 20, 20, "nodule")
    doc.execute(AddAnnotations(ref.image_id, [box]))
    send_annotations(connection, doc, ref.image_id)
    for pinned in (False, True):
        cache = InstanceCache(tmp_path / f"pinned-{pinned}", limit_bytes=4096)
        opened = retrieve_series(connection, cache, study, series).paths
        if pinned:
            cache.pin(study, series)
        found = annotations_from_pacs(connection, cache, ref)
        assert [a.id for a in found.annotations] == [box.id]
        assert all(p.exists() for p in opened) is pinned  # unpinned: the old bug, shown once


class _MemoryKeyring(keyring.backend.KeyringBackend):
    """Stands in for the OS keyring (Keychain, Credential Locker, Secret Service), absent here."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.secrets.get((service, username))

    def set_password(self, service, username, password):
        self.secrets[(service, username)] = password

    def delete_password(self, service, username):
        self.secrets.pop((service, username), None)


def test_settings_never_hold_secrets_and_find_them_in_env_or_keyring(monkeypatch, tmp_path):
    server = PacsServer(
        "Hospital", "https://pacs.example.org/dicom-web", auth="bearer", secret_env="HOSPITAL_TOKEN", use_keyring=True
    )
    save_pacs_settings(PacsSettings(servers=(server,), cache_limit_mb=512))
    text = settings_path().read_text()
    assert "HOSPITAL_TOKEN" in text and "t0ken" not in text
    assert load_pacs_settings() == PacsSettings(servers=(server,), cache_limit_mb=512)
    monkeypatch.setenv("HOSPITAL_TOKEN", "t0ken")
    assert server.secret() == "t0ken"
    monkeypatch.delenv("HOSPITAL_TOKEN")
    previous = keyring.get_keyring()
    keyring.set_keyring(_MemoryKeyring())
    try:
        with pytest.raises(PacsError, match="keyring has no secret for Hospital"):
            server.secret()
        store_keyring_secret("Hospital", "from-keyring")
        assert server.secret() == "from-keyring"
        assert "from-keyring" not in settings_path().read_text()
    finally:
        keyring.set_keyring(previous)
    settings_path().write_text("{ not json")
    assert load_pacs_settings() == PacsSettings()  # a damaged file does not stop the app
    assert server_from_url("dicom://STORESCP@[::1]:11112").kind == "dimse"
    assert parse_dimse_url("dicom://STORESCP@[::1]:11112").host == "::1"


# Every status PS3.4 defines as a refusal of these services (failure, cancel; for C-GET and C-MOVE
# also the "some sub-operations failed" warning), per pynetdicom's copy of the standard's tables.
_REFUSALS = {
    "C-FIND": pynetdicom.status.QR_FIND_SERVICE_CLASS_STATUS,
    "C-GET": pynetdicom.status.QR_GET_SERVICE_CLASS_STATUS,
    "C-MOVE": pynetdicom.status.QR_MOVE_SERVICE_CLASS_STATUS,
    "C-STORE": pynetdicom.status.STORAGE_SERVICE_CLASS_STATUS,
}


@pytest.mark.parametrize("service", sorted(_REFUSALS))
def test_every_refusal_status_says_what_to_do(service):
    codes = [
        code
        for code, (category, _) in _REFUSALS[service].items()
        if category in ("Failure", "Cancel") or (code == 0xB000 and service in ("C-GET", "C-MOVE"))
    ]
    assert len(codes) > 20
    for code in codes:
        message = str(dimse_status_error(service, code, "pacs:104", aet="CLINLENS", listener="10.0.0.7:11112"))
        assert message.startswith(f"pacs:104 refused the {service} (status {code:#06x}): "), message
        assert "no such status" not in message and message.count(". ") == 0 and message.endswith("."), message
        assert ": " in message.split("): ", 1)[1], message  # what happened: what to do
    if service == "C-MOVE":
        assert str(dimse_status_error(service, 0xA801, "pacs:104", aet="CLINLENS", listener="10.0.0.7:11112")) == (
            "pacs:104 refused the C-MOVE (status 0xa801): the archive does not know AE CLINLENS as a move "
            "destination: add it with this host and port (10.0.0.7:11112)."
        )


def test_foreign_srs_of_a_study_are_read_tolerantly(tmp_path):
    """Issue 22: another tool's SR (a TEXT finding, a NUM without a value) and a dose report in the
    study must not fail the read; the mappable groups come back and the rest are warnings."""
    header = pydicom.dcmread(CT)
    with OrthancServer(tmp_path / "foreign") as server:
        for dataset in (header, issue_22_report(header), dose_report(header)):
            server.upload(dataset)
        cache = InstanceCache(tmp_path / "cache")
        with connect(server_from_url(server.dicomweb_url)) as connection:
            result = retrieve_series(connection, cache, str(header.StudyInstanceUID), str(header.SeriesInstanceUID))
            ref = image_ref_from_stack(open_paths([str(p) for p in result.paths]).stacks[0])
            reading = annotations_from_pacs(connection, cache, ref)
    assert {a.label for a in reading.annotations} == {"spiculated nodule", "Mass", "Cyst"}
    assert len(reading.warnings) == 2 and all("from OHIF" in w for w in reading.warnings)  # dose report: logged only
    assert "'Arrow1'" in reading.summary()
