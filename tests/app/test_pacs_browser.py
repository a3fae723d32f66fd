"""Open from PACS, as a user drives it, against the real Orthanc of tests/orthanc.py."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

import app.pacs.controller
from app.main_window import MainWindow
from app.pacs.servers_dialog import PacsServersDialog
from engine.annotations.commands import AddAnnotations
from engine.annotations.document import AnnotationDocument
from engine.annotations.image_ref import image_ref_from_stack
from engine.imaging import Window, open_paths
from engine.pacs import (
    InstanceCache,
    PacsServer,
    PacsSettings,
    connect,
    load_pacs_settings,
    retrieve_series,
    save_pacs_settings,
)
from engine.pacs.writeback import send_annotations
from engine.paths import data_dir
from tests.engine.foreign_sr import CT, dose_report, issue_22_report
from tests.orthanc import OUR_AET, seeded_orthanc


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    yield from seeded_orthanc(tmp_path_factory)


@pytest.fixture
def window(qtbot, pacs):
    save_pacs_settings(
        PacsSettings(
            servers=(
                PacsServer("Orthanc (DICOMweb)", pacs.server.dicomweb_url),
                PacsServer("Orthanc (DIMSE)", pacs.server.dimse_url, our_aet=OUR_AET),
            )
        )
    )
    main = MainWindow()
    qtbot.addWidget(main)
    main.resize(1100, 750)
    main.show()
    qtbot.waitExposed(main)
    yield main
    main.close()


def test_search_expand_and_open_streams_into_the_viewer(qtbot, window, pacs, tmp_path):
    browser = window.pacs.browse()
    qtbot.addWidget(browser)
    browser.patient_id.setText("PACS-CT")
    with qtbot.waitSignal(browser.search_finished, timeout=20000) as searched:
        browser.search_button.click()
    assert searched.args == [1]
    study = browser.results.topLevelItem(0)
    assert [study.text(i) for i in range(2, 5)] == ["2024-03-15", "CT", "Chest CT"]
    assert study.text(0) == study.text(1) == "(hidden)"  # identifiers hidden by default
    browser.reveal_phi.setChecked(True)
    assert (study.text(0), study.text(1)) == ("Test Pacs", "PACS-CT")
    browser.reveal_phi.setChecked(False)
    assert browser.results.isSortingEnabled()
    with qtbot.waitSignal(browser.series_loaded, timeout=20000):
        study.setExpanded(True)
    series = study.child(0)
    assert (series.text(3), series.text(4), series.text(7)) == ("CT", "Chest CT series", "12")
    browser.grab().save(str(tmp_path / "browser.png"))
    frames_shown = []
    window.pacs.partial_shown.connect(frames_shown.append)
    lung = Window(-600, 1500)

    def choose_display_while_streaming(n_frames: int) -> None:
        if n_frames == 1:  # the user windows and inverts the first image
            window.state.set_window(lung)
            window.state.toggle_invert()

    window.pacs.partial_shown.connect(choose_display_while_streaming)
    browser.results.setCurrentItem(series)
    assert browser.open_button.isEnabled()
    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        browser.open_button.click()
    assert frames_shown[0] == 1  # the first image was on screen before the series was complete
    assert window.state.stack.n_frames == 12 and window.image_list.count() == 1
    assert window.frame_status.text() == "Frame 1/12"
    assert (window.state.window, window.state.invert) == (lung, True)  # kept while the series grew
    assert window.annotations.document_path().is_relative_to(data_dir())
    assert not window.pacs.progress_bar.isVisible()
    qtbot.wait(100)  # let the status bar re-layout for the new frame count before the screenshot
    window.grab().save(str(tmp_path / "window.png"))


def test_reopening_a_study_shows_the_boxes_stored_as_sr_and_sends_new_ones(qtbot, window, pacs, tmp_path):
    study_uid, series_uid = str(pacs.ct[0].StudyInstanceUID), str(pacs.ct[0].SeriesInstanceUID)
    dimse = PacsServer("Orthanc (DIMSE)", pacs.server.dimse_url, our_aet=OUR_AET)
    # another workstation annotated the series and stored the SR in the archive
    other = retrieve_series(connect(dimse), InstanceCache(tmp_path / "elsewhere"), study_uid, series_uid)
    ref = image_ref_from_stack(open_paths([str(p) for p in other.paths]).stacks[0])
    doc = AnnotationDocument()
    doc.add_image(ref)
    box = doc.new_box(ref.image_id, 4, 8, 9, 30, 33, "nodule")
    doc.execute(AddAnnotations(ref.image_id, [box]))
    send_annotations(connect(dimse), doc, ref.image_id)

    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        window.pacs.open_series(dimse, study_uid, series_uid)
    shown = {b.id: b for b in window.annotations.boxes()}
    assert box.id in shown and (shown[box.id].frame, shown[box.id].label) == (4, "nodule")

    window.state.set_frame(2)
    added = window.annotations.add_box(2, 5, 5, 20, 20)
    with qtbot.waitSignal(window.pacs.send_finished, timeout=30000) as sent:
        window.pacs.send_current()
    assert "sent to Orthanc (DIMSE)" in sent.args[0]
    assert window.annotations.box(added.id) is not None


def sr_instances(server: PacsServer, study_uid: str) -> set[str]:
    connection = connect(server)
    return {
        uid
        for series in connection.find_series(study_uid)
        if series.modality == "SR"
        for uid in connection.instance_uids(study_uid, series.series_uid)
    }


def test_sending_unchanged_annotations_again_stores_no_duplicate_sr(qtbot, window, pacs):
    """Send, send again: one SR in the study and the user is told it was already there; a change
    is a new report."""
    study_uid, series_uid = str(pacs.ct[0].StudyInstanceUID), str(pacs.ct[0].SeriesInstanceUID)
    dimse = PacsServer("Orthanc (DIMSE)", pacs.server.dimse_url, our_aet=OUR_AET)
    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        window.pacs.open_series(dimse, study_uid, series_uid)
    item = window.image_list.item(window.image_list.currentRow())  # marked with where it came from
    assert item.text().startswith("⇩ ") and item.text().endswith("— Orthanc (DIMSE)")
    assert "From PACS: Orthanc (DIMSE)" in item.toolTip() and f"Series UID {series_uid}" in item.toolTip()
    window.annotations.add_box(1, 3, 3, 17, 19)
    before = sr_instances(dimse, study_uid)
    with qtbot.waitSignal(window.pacs.send_finished, timeout=30000) as first:
        window.pacs.send_current()
    assert "sent to Orthanc (DIMSE)" in first.args[0]
    after_first = sr_instances(dimse, study_uid)
    assert len(after_first - before) == 1
    with qtbot.waitSignal(window.pacs.send_finished, timeout=30000) as second:
        window.pacs.send_current()
    assert "Not sent again" in second.args[0] and "already holds these annotations" in second.args[0]
    assert sr_instances(dimse, study_uid) == after_first
    assert "Not sent again" in window.statusBar().currentMessage()
    window.annotations.add_box(1, 30, 30, 40, 40)  # changed: a new report
    with qtbot.waitSignal(window.pacs.send_finished, timeout=30000) as third:
        window.pacs.send_current()
    assert "sent to" in third.args[0] and len(sr_instances(dimse, study_uid) - after_first) == 1


def test_a_mask_without_measurements_is_sent_as_a_seg_alone(qtbot, window, pacs):
    """Masks without values have no place in the SR: the send stores a SEG only and says so."""
    import numpy as np

    from engine.annotations import AddAnnotations, RemoveAnnotations

    study_uid, series_uid = str(pacs.ct[0].StudyInstanceUID), str(pacs.ct[0].SeriesInstanceUID)
    dimse = PacsServer("Orthanc (DIMSE)", pacs.server.dimse_url, our_aet=OUR_AET)
    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        window.pacs.open_series(dimse, study_uid, series_uid)
    qtbot.wait_until(lambda: window.state.frame is not None)
    controller = window.annotations
    shape = window.state.frame.modality_values().shape
    inside = np.zeros(shape, dtype=bool)
    inside[5:20, 8:30] = True
    earlier = [a.id for a in controller.doc.annotations(controller.image_id)]  # other tests' SRs read back
    if earlier:
        controller.doc.execute(RemoveAnnotations(controller.image_id, earlier))
    mask = controller.doc.new_mask(controller.image_id, {1: inside}, "lesion")  # drawn by the user: accepted
    controller.doc.execute(AddAnnotations(controller.image_id, [mask]))
    with qtbot.waitSignal(window.pacs.send_finished, timeout=30000) as sent:
        window.pacs.send_current()
    assert "as DICOM SEG " in sent.args[0] and "DICOM SR" not in sent.args[0]


def test_sending_without_annotations_says_so_first(qtbot, window, tmp_path):
    """The demo case: nothing drawn yet is the reason given, not the DICOM-sources rule."""
    from PIL import Image
    from pydicom.data import get_testdata_file

    ct = tmp_path / "CT_small.dcm"
    ct.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    with qtbot.waitSignal(window.load_finished, timeout=20000):
        window.open([str(ct)])
    with qtbot.waitSignal(window.pacs.send_finished, timeout=30000) as sent:
        window.pacs.send_current()
    assert "no annotations yet" in sent.args[0] and "DICOM sources" not in sent.args[0]
    assert "no annotations yet" in window.banner.label.text()
    picture = tmp_path / "xray.png"
    Image.new("L", (64, 64), 80).save(picture)
    with qtbot.waitSignal(window.load_finished, timeout=20000):
        window.open([str(picture)])
    window.annotations.add_box(0, 3, 3, 17, 19)
    with qtbot.waitSignal(window.pacs.send_finished, timeout=30000) as sent:
        window.pacs.send_current()
    assert "not DICOM" in sent.args[0]


def test_servers_dialog_tests_the_connection(qtbot, pacs):
    dialog = PacsServersDialog(PacsSettings(servers=(PacsServer("Orthanc", pacs.server.dicomweb_url),)))
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.tested, timeout=20000) as tested:
        dialog.test_button.click()
    assert tested.args[0] is True and "answered" in tested.args[1]
    dialog.url.setText(f"dicom://ORTHANC@127.0.0.1:{pacs.server.http_port}")  # the HTTP port is not DICOM
    with qtbot.waitSignal(dialog.tested, timeout=20000) as tested:
        dialog.test_button.click()
    assert tested.args[0] is False and "association" in tested.args[1]
    dialog.url.setText("pacs.example.org")
    dialog.test_button.click()
    assert "not a PACS address" in dialog.result.text()


def test_cancel_while_retrieving_keeps_the_window_usable(qtbot, window, pacs):
    """Cancel right after starting (mid-stream cancel is timed exactly in tests/engine/test_pacs.py)."""
    study_uid, series_uid = str(pacs.ct[0].StudyInstanceUID), str(pacs.ct[0].SeriesInstanceUID)
    server = PacsServer("Orthanc (DIMSE)", pacs.server.dimse_url, our_aet=OUR_AET)
    with qtbot.waitSignal(window.pacs.retrieve_failed, timeout=60000) as failed:
        window.pacs.open_series(server, study_uid, series_uid)
        assert window.pacs.cancel_button.isVisible()
        window.pacs.cancel_button.click()
    assert failed.args == ["Retrieve cancelled."]
    assert not window.pacs.busy and not window.pacs.cancel_button.isVisible()
    cache = InstanceCache()
    assert not cache.is_complete(study_uid, series_uid)
    assert not list(cache.series_dir(study_uid, series_uid).glob(".*.part"))  # nothing half-written
    assert window.image_list.count() == 0  # an incomplete series is never bound to annotations


def test_a_corrupt_instance_is_listed_and_the_rest_opens(qtbot, window, pacs):
    study_uid, series_uid = str(pacs.corrupt[0].StudyInstanceUID), str(pacs.corrupt[0].SeriesInstanceUID)
    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        window.pacs.open_series(PacsServer("Orthanc", pacs.server.dicomweb_url), study_uid, series_uid)
    assert window.state.stack.n_frames == 4
    assert window.banner.isVisible() and "Could not open 1 file" in window.banner.label.text()


def test_servers_dialog_saves_entries_without_secrets(qtbot, pacs):
    dialog = PacsServersDialog(PacsSettings())
    qtbot.addWidget(dialog)
    dialog.name.setText("Hospital")
    dialog.url.setText("dicom://PACS@pacs.example.org:104")
    assert dialog.our_aet.isEnabled() and not dialog.auth.isEnabled()
    dialog.url.setText("https://pacs.example.org/dicom-web")
    assert not dialog.our_aet.isEnabled() and not dialog.secret_env.isEnabled()
    dialog.auth.setCurrentText("basic")
    assert dialog.username.isEnabled() and dialog.secret_env.isEnabled()
    dialog.accept()
    assert dialog.result.text() == "Hospital: HTTP basic authentication needs a user name."
    dialog.username.setText("reader")
    dialog.secret_env.setText("HOSPITAL_PASSWORD")
    dialog.accept()
    saved = load_pacs_settings().servers
    assert [(s.name, s.auth, s.username, s.secret_env) for s in saved] == [
        ("Hospital", "basic", "reader", "HOSPITAL_PASSWORD")
    ]


def test_open_series_stay_in_a_tiny_cache(qtbot, window, pacs, monkeypatch, tmp_path):
    """Opening a study reads its SR reports, and every retrieve evicts to fit the cache: with a 4 KB
    cache that used to delete the image series just opened (its frames decode lazily from the
    files). Open series are pinned; the cache goes over its limit and the status bar says so."""
    monkeypatch.setattr(app.pacs.controller, "BYTES_PER_MB", 1)  # the default 4096 MB limit: 4 KB
    study_uid, series_uid = str(pacs.ct[0].StudyInstanceUID), str(pacs.ct[0].SeriesInstanceUID)
    dimse = PacsServer("Orthanc (DIMSE)", pacs.server.dimse_url, our_aet=OUR_AET)
    other = retrieve_series(connect(dimse), InstanceCache(tmp_path / "elsewhere"), study_uid, series_uid)
    ref = image_ref_from_stack(open_paths([str(p) for p in other.paths]).stacks[0])
    doc = AnnotationDocument()
    doc.add_image(ref)
    doc.execute(AddAnnotations(ref.image_id, [doc.new_box(ref.image_id, 2, 8, 9, 30, 33, "nodule")]))
    send_annotations(connect(dimse), doc, ref.image_id)  # the study now has an SR series to read back

    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        window.pacs.open_series(dimse, study_uid, series_uid)
    ct = window.state.stack
    assert ct.n_frames == 12 and all(Path(p).exists() for p in ct.paths)
    assert "over its limit of 4 KB" in window.statusBar().currentMessage()
    bad_study, bad_series = str(pacs.corrupt[0].StudyInstanceUID), str(pacs.corrupt[0].SeriesInstanceUID)
    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        window.pacs.open_series(PacsServer("Orthanc", pacs.server.dicomweb_url), bad_study, bad_series)
    assert window.image_list.count() == 2 and all(Path(p).exists() for p in ct.paths)
    assert window.pacs.cache.pinned() == {(study_uid, series_uid), (bad_study, bad_series)}


def test_a_foreign_sr_in_the_study_never_stops_the_series_from_opening(qtbot, window, pacs):
    """Issue 22: OHIF's report with a TEXT finding and a NUM without a value, beside a dose report."""
    header = pydicom.dcmread(CT)
    for report in (issue_22_report(header), dose_report(header)):
        pacs.server.upload(report)
    server = PacsServer("Orthanc", pacs.server.dicomweb_url)
    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        window.pacs.open_series(server, str(header.StudyInstanceUID), str(header.SeriesInstanceUID))
    assert window.state.stack.n_frames == 1 and "incomplete" not in window.windowTitle()
    controller = window.annotations
    labels = {a.label for a in controller.doc.annotations(controller.image_id)}
    assert {"spiculated nodule", "Mass", "Cyst"} <= labels
    banner = window.banner.label.text()
    assert window.banner.isVisible() and "'Arrow1'" in banner and "no point annotation" in banner


def test_a_failure_reading_the_srs_still_opens_the_series(qtbot, window, pacs, monkeypatch):
    """Whatever goes wrong reading the study's SRs (here: a bug), the retrieved series opens."""

    def broken(*args, **kwargs):
        raise RuntimeError("bug in the SR reader")

    monkeypatch.setattr("engine.pacs.writeback.annotations_from_pacs", broken)
    header = pydicom.dcmread(CT)
    with qtbot.waitSignal(window.pacs.retrieve_finished, timeout=60000):
        window.pacs.open_series(
            PacsServer("Orthanc", pacs.server.dicomweb_url), str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
        )
    assert window.state.stack.n_frames == 1 and "incomplete" not in window.windowTitle()
    assert "could not be read (RuntimeError: bug in the SR reader)" in window.banner.label.text()


def test_servers_dialog_says_what_to_type_in_full_and_shows_the_whole_message(qtbot, tmp_path):
    """The empty-URL message once ended at "dicom://": now it is complete and wraps inside the dialog."""
    dialog = PacsServersDialog(PacsSettings())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.test_button.click()  # a new entry: no URL yet
    message = dialog.result.text()
    assert message == (
        "Enter the server's address: http(s)://host:port/dicom-web for DICOMweb or dicom://AET@host:port for DIMSE."
    )
    dialog.url.setText("pacs.example.org")
    dialog.test_button.click()
    assert dialog.result.text().startswith("pacs.example.org is not a PACS address: enter http(s)://host:port")
    assert dialog.result.text().endswith("dicom://AET@host:port for DIMSE.")
    long = "The archive refused the association: " + "calling AE title not recognised, check its list; " * 4
    dialog._show_result(False, long.strip())
    label = dialog.result
    assert label.wordWrap()
    qtbot.wait_until(lambda: label.height() >= label.heightForWidth(label.width()))
    assert label.heightForWidth(label.width()) > label.fontMetrics().height()  # it really wraps
    inside = label.geometry().translated(label.parentWidget().mapTo(dialog, label.pos()) - label.pos())
    assert dialog.rect().contains(inside)
    assert dialog.grab().save(str(tmp_path / "pacs-servers-message.png"))
