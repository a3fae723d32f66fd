"""Assistant settings: validated before they are kept, saved per user, robust to damaged files."""

from __future__ import annotations

from app.inference.settings import AssistantSettings, read_settings, save_settings, settings_path
from app.inference.settings_dialog import SettingsDialog
from engine.files import Loaded


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
