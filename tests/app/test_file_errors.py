"""Damaged settings-type files in the window: said in the red strip, defaults used, nothing lost.

The engine side (every kind of damage, fuzzed) is tests/engine/test_fuzz_files.py; here the
window keeps its previous good state: the settings and presets it falls back to, the document a
failed import must not touch, the knowledge base a bad file must not replace.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from PySide6.QtWidgets import QFileDialog

from app.annotations.box_tools import Tool
from app.inference.settings import AssistantSettings, read_settings, save_settings, settings_path
from app.kpl.classify_panel import LOAD_FILE
from app.main_window import MainWindow
from app.viewer.recent_files import load_recent, remember
from engine.annotations.persistence import document_to_dict
from engine.clinkd import Task
from engine.imaging.presets import builtin_presets, user_presets_path
from engine.paths import config_dir
from tests.app.test_annotation_tools import drag, make_window, open_and_wait, panel_rows
from tests.app.test_assistant import make_window as make_assistant_window
from tests.app.test_assistant import open_and_wait as open_one
from tests.engine.test_fuzz_files import FUZZ, SCALE, byte_mutations, damaged_json
from tests.engine.tiny_qwen import TINY_MAX_PIXELS


def test_damaged_settings_and_presets_give_defaults_say_so_and_are_kept(qtbot, tmp_path):
    save_settings(AssistantSettings(clip_model="ViT-B-16:/w/clip.pt", kpl_k=4))
    settings_path().write_text('{"clip_model": "ViT-B-16:/w/clip.pt", "kpl_k": "four"}')
    user_presets_path().write_bytes(b'{"version": 1, "presets": [{"name": "Mine", "center": 40, "wid')
    main = make_window(qtbot)
    text = main.banner.label.text()
    assert main.banner.isVisible()
    assert "Assistant settings could not be read" in text and 'kpl_k must be an integer, not "four"' in text
    assert "Your window presets could not be read" in text and "not valid JSON" in text
    assert "Using the built-in presets only" in text
    assert main.assistant_settings == AssistantSettings()  # defaults, nothing half-applied
    [kept_settings] = settings_path().parent.glob("assistant.json.damaged-*")
    [kept_presets] = user_presets_path().parent.glob("presets.json.damaged-*")
    assert kept_settings.name in text and kept_presets.name in text
    assert json.loads(kept_settings.read_text())["kpl_k"] == "four"
    menu_names = [a.text().split("  (")[0] for a in main.window_menu.actions() if "(C " in a.text()]
    assert menu_names == [p.name for p in builtin_presets()]
    assert main.grab().save(str(tmp_path / "file-errors-banner.png"))  # docs/screenshots/ holds a copy
    main.set_assistant_settings(AssistantSettings(kpl_k=6))  # saving writes a fresh file...
    assert json.loads(kept_settings.read_text())["kpl_k"] == "four"  # ...the damaged copy stays


@pytest.fixture
def ct(tmp_path) -> str:
    target = tmp_path / "study" / "CT_small.dcm"
    target.parent.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), target)
    return str(target)


def _state(main: MainWindow) -> dict:
    data = document_to_dict(main.annotations.doc)
    data.pop("saved")
    return {"doc": data, "revision": main.annotations.doc.revision, "rows": panel_rows(main)}


def test_a_failed_import_leaves_the_document_as_it_was(qtbot, ct, tmp_path):
    main = make_window(qtbot)
    open_and_wait(qtbot, main, [ct])
    main.set_tool(Tool.BOX)
    drag(main, (10, 10), (20, 30))
    exported = Path(main.export_annotations("coco", str(tmp_path / "boxes.json"))[0])
    coco = json.loads(exported.read_text())
    without_xyxy = {k: v for k, v in coco["annotations"][0].items() if k not in ("xyxy", "clinlens_id")}
    before = _state(main)
    cases = {
        "cut.json": (exported.read_bytes()[:-30], "not valid JSON"),  # a cut transfer
        "wrong.json": (
            json.dumps({**coco, "annotations": [{**without_xyxy, "bbox": [1, 2, "3", 4]}]}),
            "annotations[0].bbox: expected four numbers",
        ),
        "frame.json": (
            json.dumps({**coco, "images": [{**coco["images"][0], "frame": 5}]}),  # CT_small: 1 frame
            "is on frame 5 but the image has 1 frame(s)",
        ),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert main.import_annotations(str(path)) == 0
        assert main.banner.isVisible() and f"Could not import {name}" in main.banner.label.text()
        assert reason in main.banner.label.text()
        assert _state(main) == before


def test_a_bad_knowledge_file_keeps_the_previous_base_selected(qtbot, tmp_path, monkeypatch):
    save_settings(AssistantSettings(knowledge="tuberculosis-cxr"))
    main = make_window(qtbot)
    panel = main.classify_panel
    bad = tmp_path / "my-task.json"
    bad.write_text('{"task": "x", "modality": "CXR", "classes": [{"name": "a"}], "provenance": {}}')
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(bad), ""))
    panel.knowledge.setCurrentText(LOAD_FILE)
    panel.knowledge.activated.emit(panel.knowledge.currentIndex())
    assert main.assistant_settings.knowledge == "tuberculosis-cxr"
    assert panel.knowledge.currentText() == "tuberculosis-cxr"
    assert panel.knowledge_error.isVisibleTo(panel)
    assert "Kept 'tuberculosis-cxr'" in panel.knowledge_error.text() and "my-task.json" in panel.knowledge_error.text()
    good = tmp_path / "good.json"
    shutil.copy(Path(__file__).resolve().parents[2] / "resources" / "knowledge" / "tuberculosis-cxr.json", good)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(good), ""))
    panel.knowledge.setCurrentText(LOAD_FILE)
    panel.knowledge.activated.emit(panel.knowledge.currentIndex())
    assert main.assistant_settings.knowledge == str(good) and not panel.knowledge_error.isVisibleTo(panel)


def test_a_damaged_model_folder_is_refused_and_the_loaded_model_stays(qtbot, ct, tiny_folder, scripted, tmp_path):
    main = make_assistant_window(qtbot, AssistantSettings(clinkd_dir=str(tiny_folder), max_pixels=TINY_MAX_PIXELS))
    open_one(qtbot, main, ct)
    panel = main.ask_panel
    with qtbot.waitSignal(panel.answer_finished, timeout=60000):
        panel.ask("What is this?", Task.FREE, None)
    loaded = main.service.worker._clinkd["primary"]
    assert loaded is not None
    damaged = Path(shutil.copytree(tiny_folder, tmp_path / "damaged"))
    (damaged / "config.json").write_bytes((tiny_folder / "config.json").read_bytes()[:200])  # a cut copy
    main.set_assistant_settings(replace(main.assistant_settings, clinkd_dir=str(damaged)))
    with qtbot.waitSignal(panel.answer_finished, timeout=60000):
        panel.ask("And now?", Task.FREE, None)
    turn = panel.conversations.turns(main.state.stack.key)[1]
    assert turn.status == "error" and "config.json: not valid JSON" in turn.error
    assert main.service.worker._clinkd["primary"] is loaded  # the working model was not let go for a bad folder


# --- settings and recent files, fuzzed like the engine's files (tests/engine/test_fuzz_files.py)

SETTINGS = AssistantSettings(
    clinkd_dir="/models/clinkd", clip_model="ViT-B-16:/w/clip.pt", device="cpu", max_new_tokens=120, kpl_k=4
)


def _check_settings(raw: bytes) -> bool:
    path = settings_path()
    path.write_bytes(raw)
    loaded = read_settings()
    if loaded.problem is None:
        assert isinstance(loaded.value, AssistantSettings)
        for name, value in vars(loaded.value).items():
            assert type(value) is type(getattr(SETTINGS, name))
        loaded.value.problems()  # sentences, never an exception
        save_settings(loaded.value)
        return True
    # defaults, said so, the damaged bytes kept and never overwritten
    assert loaded.value == AssistantSettings() and "assistant.json" in loaded.problem
    assert loaded.kept_as.read_bytes() == raw and not path.exists()
    save_settings(loaded.value)
    assert loaded.kept_as.read_bytes() == raw
    loaded.kept_as.unlink()
    return False


def test_damaged_settings_bytes():
    save_settings(SETTINGS)
    outcomes = [_check_settings(raw) for raw in byte_mutations(settings_path().read_bytes(), seed=11)]
    assert any(outcomes) and not all(outcomes)


@FUZZ
@given(data=st.data())
def test_damaged_settings_structure(data):
    _check_settings(json.dumps(data.draw(damaged_json(vars(SETTINGS)))).encode())


def test_damaged_recent_files_list():
    remember(["/data/a", "/data/b"])
    store = config_dir() / "recent.json"
    for raw in byte_mutations(store.read_bytes(), seed=23, count=30 * SCALE):
        store.write_bytes(raw)
        recent = load_recent()
        assert all(isinstance(p, str) for p in recent)
        if not store.exists():  # damaged: moved aside, never overwritten
            [kept] = store.parent.glob("recent.json.damaged-*")
            assert kept.read_bytes() == raw
            kept.unlink()
        remember(["/data/c"])
