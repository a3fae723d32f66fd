"""engine.pacs over DIMSE against dcmtk (tests/dcmtk.py): dcmqrscp as the archive, storescp as a send target.

Echo, find, get, move and store; no bare TCP probe (dcmqrscp logs each as a protocol error); a
C-MOVE to an AE title the archive does not know says what to add; the C-MOVE listener takes the
archive's C-STOREs and refuses a stranger's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from engine.pacs import InstanceCache, PacsError, StudyQuery, connect, retrieve_series, server_from_url
from engine.pacs.listener import StorageListener, bind_address
from tests.dcmtk import ARCHIVE_AET, FSM_ERROR, Dcmqrscp, Storescp
from tests.orthanc import OUR_AET, ct_series, free_port


@dataclass
class Archive:
    server: Dcmqrscp
    study_uid: str
    series: dict[str, list[pydicom.Dataset]]  # SeriesInstanceUID -> its instances


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """dcmqrscp holding one study of two CT series, seeded through our own C-STORE."""
    with Dcmqrscp(tmp_path_factory.mktemp("dcmqrscp")) as server:
        first = ct_series(4, seed=11, patient_id="DCMTK-CT", description="Dcmtk CT")
        second = ct_series(
            3, seed=12, patient_id="DCMTK-CT", description="Dcmtk CT", study_uid=first[0].StudyInstanceUID
        )
        sent = connect(server_from_url(server.url, our_aet=OUR_AET)).send(first + second)
        assert sent == 7
        yield Archive(server, str(first[0].StudyInstanceUID), {str(s[0].SeriesInstanceUID): s for s in (first, second)})


def _sop_uids(datasets) -> list[str]:
    return sorted(str(ds.SOPInstanceUID) for ds in datasets)


def test_echo_find_and_get_a_study_without_protocol_errors(archive, tmp_path):
    connection = connect(server_from_url(archive.server.url, our_aet=OUR_AET))
    assert "answered" in connection.echo()
    studies = connection.find_studies(StudyQuery(patient_id="DCMTK-CT"))
    assert [s.study_uid for s in studies] == [archive.study_uid]
    found = connection.find_series(archive.study_uid)
    assert sorted(s.series_uid for s in found) == sorted(archive.series)
    cache = InstanceCache(tmp_path / "cache")
    for series_uid, instances in archive.series.items():
        result = retrieve_series(connection, cache, archive.study_uid, series_uid)
        assert _sop_uids(pydicom.dcmread(p) for p in result.paths) == _sop_uids(instances)
    log = archive.server.log()
    assert FSM_ERROR not in log, log  # every association was a real one: no bare TCP probe


def test_c_move_into_our_listener(archive):
    series_uid, instances = next(iter(archive.series.items()))
    server = server_from_url(archive.server.url, our_aet=OUR_AET, storage_port=archive.server.move_port)
    received = []
    connect(server).retrieve_series(
        archive.study_uid, series_uid, lambda ds: received.append(ds), threading.Event(), method="move"
    )
    assert _sop_uids(received) == _sop_uids(instances)
    assert FSM_ERROR not in archive.server.log()


def test_move_to_an_unknown_destination_says_what_to_add(archive):
    port = free_port()
    stranger = server_from_url(archive.server.url, our_aet="UNKNOWNAE", storage_port=port)
    series_uid = next(iter(archive.series))
    with pytest.raises(PacsError) as failure:
        connect(stranger).retrieve_series(archive.study_uid, series_uid, lambda ds: None, threading.Event(), "move")
    message = str(failure.value)
    assert "(status 0xa801)" in message, message
    assert (
        f"the archive does not know AE UNKNOWNAE as a move destination: add it with this host and port "
        f"(127.0.0.1:{port})." in message
    )


def test_send_to_storescp(tmp_path):
    slices = ct_series(2, seed=13)
    with Storescp(tmp_path / "storescp") as target:
        assert connect(server_from_url(target.url, our_aet=OUR_AET)).send(slices) == 2
        stored = [pydicom.dcmread(p) for p in target.received.iterdir()]
        log = target.log()
    assert _sop_uids(stored) == _sop_uids(slices)
    assert FSM_ERROR not in log


def _store_from(aet: str, port: int, dataset: pydicom.Dataset, bind: str = "127.0.0.1"):
    """One C-STORE from ``aet`` at ``bind`` to 127.0.0.1:``port``: its status, or why there was none."""
    ae = AE(ae_title=aet)
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title=OUR_AET, bind_address=(bind, 0))
    if assoc.is_rejected:
        return "rejected"
    if not assoc.is_established:
        return "no association"
    status = assoc.send_c_store(dataset)
    assoc.release()
    return status.Status


def test_listener_takes_the_archive_and_refuses_strangers():
    """The archive (its AE title, its address) may C-STORE; another AE title, or the right AE title
    from another address (127.0.0.2: loopback, but not the archive's address), may not."""
    port = free_port()
    server = server_from_url(f"dicom://{ARCHIVE_AET}@127.0.0.1:{free_port()}", our_aet=OUR_AET, storage_port=port)
    stored = []

    def on_store(event) -> int:
        stored.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    instance = ct_series(1, seed=14)[0]
    with StorageListener(server, on_store) as listener:
        assert listener.host == "127.0.0.1"  # the archive is on this machine: listen on loopback only
        assert _store_from("STRANGER", port, instance) == "rejected"
        assert _store_from(ARCHIVE_AET, port, instance, bind="127.0.0.2") == "no association"
        assert stored == []
        assert _store_from(ARCHIVE_AET, port, instance) == 0x0000
    assert stored == [str(instance.SOPInstanceUID)]


def test_listener_bind_address():
    local = server_from_url("dicom://PACS@127.0.0.1:104", storage_port=11112)
    assert bind_address(local, frozenset({"127.0.0.1"})) == "127.0.0.1"
    assert bind_address(local, frozenset({"::1"})) == "::1"
    assert bind_address(local, frozenset({"10.1.2.3"})) == ""  # a remote archive must reach us
    configured = server_from_url("dicom://PACS@10.1.2.3:104", storage_port=11112, storage_bind="192.168.1.20")
    assert bind_address(configured, frozenset({"10.1.2.3"})) == "192.168.1.20"
