"""Assistant settings: validated before they are kept, saved per user, robust to damaged files."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

from PySide6.QtCore import Qt, QThreadPool
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QComboBox, QGroupBox, QLineEdit, QSpinBox

from app.inference.settings import AssistantSettings, read_settings, save_settings, settings_path
from app.inference.settings_dialog import SettingsDialog
from engine.files import Loaded
from tests.engine.openai_stub import OpenAIStub, StubBehaviour


def test_dialog_refuses_bad_values_and_returns_good_ones(qtbot, tmp_path):
    dialog = SettingsDialog(AssistantSettings(), ["tuberculosis-cxr", "malaria-cells"])
    qtbot.addWidget(dialog)
    dialog.clinkd_dir.setText(str(tmp_path / "missing"))
    dialog.server_url.setText("gpu-server:8000")
    dialog.accept()
    assert dialog.result() == 0  # not accepted
    assert "does not exist" in dialog.problems.text() and "http://" in dialog.problems.text()
    dialog.clinkd_dir.setText(str(tmp_path))
    dialog.server_url.setText("")
    dialog.knowledge.setCurrentText("malaria-cells")
    dialog.best_of.setValue(4)
    dialog.accept()
    assert dialog.result() == 1
    value = dialog.value()
    assert (value.clinkd_dir, value.knowledge, value.best_of) == (str(tmp_path), "malaria-cells", 4)


def test_settings_round_trip_and_damaged_file_falls_back(tmp_path):
    save_settings(AssistantSettings(clip_model="ViT-L-14:openai", kpl_k=5))
    assert read_settings() == Loaded(AssistantSettings(clip_model="ViT-L-14:openai", kpl_k=5))
    settings_path().write_text('{"kpl_k": 5, "unknown": 1, "device": "cpu"}')  # a newer version's key: ignored
    assert read_settings() == Loaded(AssistantSettings(kpl_k=5, device="cpu"))
    for damaged, reason in (
        ('{"kpl_k": 5, "device": "cpu"', "not valid JSON (line 1"),
        ('{"kpl_k": "five", "device": "cpu"}', 'kpl_k must be an integer, not "five"'),
    ):
        settings_path().write_text(damaged)
        loaded = read_settings()
        assert loaded.value == AssistantSettings()  # defaults, nothing half-applied
        assert reason in loaded.problem and "assistant.json" in loaded.problem
        assert loaded.kept_as.name.startswith("assistant.json.damaged-") and loaded.kept_as.read_text() == damaged
        save_settings(AssistantSettings(kpl_k=7))  # saving never overwrites the damaged copy
        assert loaded.kept_as.read_text() == damaged
        assert read_settings() == Loaded(AssistantSettings(kpl_k=7))


def _dialog(qtbot) -> SettingsDialog:
    dialog = SettingsDialog(AssistantSettings(), ["tuberculosis-cxr"])
    qtbot.addWidget(dialog)
    return dialog


def test_the_second_opinion_is_where_the_second_model_is_and_the_rest_is_shared(qtbot, tmp_path):
    settings = AssistantSettings(clinkd_dir=str(tmp_path), second_server_url="gpu:8000", device="cpu")
    assert settings.second_configured
    assert any("second opinion's server URL" in p for p in settings.problems())
    assert any("second opinion's model folder" in p for p in replace(settings, second_dir="/nope").problems())
    second = settings.for_model("second")
    assert (second.clinkd_dir, second.server_url, second.device) == ("", "gpu:8000", "cpu")
    assert settings.for_model("primary") is settings
    dialog = SettingsDialog(settings, ["tuberculosis-cxr"])
    qtbot.addWidget(dialog)
    dialog.second_server_url.setText("")
    dialog.second_dir.setText(str(tmp_path))
    assert dialog.value().second_dir == str(tmp_path) and not dialog.value().problems()


def test_every_field_has_a_tooltip_and_sits_in_a_group(qtbot):
    dialog = _dialog(qtbot)
    fields = [w for kind in (QLineEdit, QComboBox, QSpinBox) for w in dialog.findChildren(kind)]
    editors = [w for w in fields if not isinstance(w.parent(), QComboBox | QSpinBox)]  # not their inner line edits
    assert len(editors) == 22
    for widget in editors:
        assert widget.toolTip().strip(), f"{widget!r} has no tooltip"
        assert "Default:" in widget.toolTip()
    titles = {box.title() for box in dialog.findChildren(QGroupBox)}
    assert {"ClinKD model", "Second opinion", "Answers", "Classify (KPL)", "Files", "Report"} <= titles
    assert "1024×1024" in dialog.max_pixels.toolTip() and "30 s" in dialog.decode_timeout_s.toolTip()


def test_test_button_shows_the_served_model(qtbot):
    dialog = _dialog(qtbot)
    assert not dialog.test_button.isEnabled()  # no URL yet
    with OpenAIStub(StubBehaviour(models=("clinkd-7b",))) as stub:
        dialog.server_url.setText(stub.url)
        with qtbot.waitSignal(dialog.tested, timeout=10000) as blocker:
            QTest.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
            assert not dialog.test_button.isEnabled()  # one test at a time; the dialog stays usable
        assert blocker.args == [True, "OK: serves clinkd-7b"]
        assert dialog.test_result.text() == "OK: serves clinkd-7b" and dialog.test_button.isEnabled()
        dialog.server_model.setText("other")
        with qtbot.waitSignal(dialog.tested, timeout=10000) as blocker:
            dialog.test_server()
        assert blocker.args[0] is False and "does not serve model 'other'" in dialog.test_result.text()


def test_test_button_on_a_closed_port_says_why_in_a_sentence(qtbot):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dialog = _dialog(qtbot)
    dialog.show()
    dialog.server_url.setText(f"http://127.0.0.1:{port}")
    with qtbot.waitSignal(dialog.tested, timeout=10000) as blocker:
        dialog.test_server()
    assert blocker.args[0] is False
    text = dialog.test_result.text()
    assert text.startswith(f"Cannot connect to the inference server at http://127.0.0.1:{port}: connection refused.")
    assert dialog.test_button.isEnabled()
    qtbot.wait_until(
        lambda: dialog.test_result.height() >= dialog.test_result.heightForWidth(dialog.test_result.width())
    )


def test_closing_the_dialog_mid_test_leaves_no_thread(qtbot):
    """A server that accepts the connection and never answers: closing the dialog must not wait
    for the read timeout, and the late failure must not reach the closed dialog."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the connection; nobody ever answers
        dialog = _dialog(qtbot)
        dialog.server_url.setText(f"http://127.0.0.1:{silent.getsockname()[1]}")
        dialog.show()
        results: list = []
        dialog.tested.connect(lambda ok, text: results.append(text))
        dialog.test_server()
        assert dialog.testing and not dialog.test_button.isEnabled()
        started = time.monotonic()
        dialog.reject()
        assert not dialog.testing and not dialog.isVisible()
        assert QThreadPool.globalInstance().waitForDone(3000)  # the shut-down socket ends the check at once
        assert time.monotonic() - started < 3
    qtbot.wait(50)  # let any queued late signal arrive: it is ignored
    assert results == []


def test_a_segmentation_model_folder_that_does_not_exist_is_a_problem(tmp_path):
    assert AssistantSettings(segmentation_model=str(tmp_path)).problems() == []
    [problem] = AssistantSettings(segmentation_model=str(tmp_path / "gone")).problems()
    assert "segmentation model folder" in problem and "gone" in problem
