"""Knowledge bases: the bundled files, validation errors users will see, lookup by name or file."""

from __future__ import annotations

import copy
import json

import pytest

from engine.kpl.knowledge import (
    DEFAULT_TEMPLATE,
    KnowledgeError,
    available_knowledge,
    bundled_knowledge_dir,
    load_knowledge,
    parse_knowledge,
    resolve_knowledge,
    save_knowledge,
)

BUNDLED = {
    "tuberculosis-cxr": ["normal", "tuberculosis"],
    "diabetic-retinopathy": [
        "no apparent retinopathy",
        "mild nonproliferative retinopathy",
        "moderate nonproliferative retinopathy",
        "severe nonproliferative retinopathy",
        "proliferative retinopathy",
    ],
    "fundus-disease": ["normal", "cataract", "glaucoma", "retina disease"],
    "malaria-cells": ["parasitized", "uninfected"],
    "brain-tumor-mri": ["glioma", "meningioma", "pituitary tumor", "no tumor"],
}

VALID = {
    "task": "Test task",
    "modality": "chest X-ray",
    "classes": [
        {"name": "normal", "descriptions": ["clear lungs", "sharp angles"]},
        {"name": "abnormal", "prompt_name": "abnormal chest X-ray", "aliases": ["sick"], "descriptions": ["a cavity"]},
    ],
    "provenance": {"source": "unit test"},
}


def variant(edit) -> dict:
    data = copy.deepcopy(VALID)
    edit(data)
    return data


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_knowledge_bases_are_complete(name):
    kb = resolve_knowledge(name)
    assert kb.class_names == tuple(BUNDLED[name])
    assert kb.task and kb.modality and kb.provenance["source"]
    for cls in kb.classes:
        assert len(cls.descriptions) >= 30, cls.name
        assert all(len(d.split()) <= 14 for d in cls.descriptions), cls.name


def test_bundled_prompts_fit_in_clip_context():
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    longest = max(
        len(tokenizer.encode(prompt)) + 2  # start and end tokens
        for path in available_knowledge([bundled_knowledge_dir()])
        for prompts in load_knowledge(path).prompts(DEFAULT_TEMPLATE)
        for prompt in prompts
    )
    assert longest <= 77


def test_descriptions_are_distinct_across_classes_of_a_task():
    for name in BUNDLED:
        kb = resolve_knowledge(name)
        seen: dict[str, str] = {}
        for cls in kb.classes:
            for d in cls.descriptions:
                assert seen.setdefault(d.lower(), cls.name) == cls.name, (name, d)


def test_prompts_use_the_prompt_name_and_template():
    kb = parse_knowledge(VALID, "t")
    prompts = kb.prompts()
    assert prompts[0] == ["a photo of a normal, which has clear lungs", "a photo of a normal, which has sharp angles"]
    assert prompts[1] == ["a photo of a abnormal chest X-ray, which has a cavity"]
    assert kb.prompts("{class}: {description}")[1] == ["abnormal chest X-ray: a cavity"]
    with pytest.raises(KnowledgeError, match="lacks \\{description\\}"):
        kb.prompts("a photo of a {class}")


def test_folder_names_match_names_and_aliases_loosely():
    kb = parse_knowledge(VALID, "t")
    assert kb.classes[0].matches("Normal")
    assert kb.classes[1].matches("SICK")
    assert not kb.classes[1].matches("normal")
    dr = resolve_knowledge("diabetic-retinopathy")
    assert dr.classes[4].matches("4") and dr.classes[0].matches("no_dr")
    brain = resolve_knowledge("brain-tumor-mri")
    assert brain.classes[2].matches("pituitary_tumor") and brain.classes[3].matches("notumor")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("classes"), "missing 'classes'"),
        (lambda d: d["classes"].pop(), "need at least two classes, found 1"),
        (lambda d: d["classes"][1].pop("name"), r"classes\[1\]: missing 'name'"),
        (lambda d: d["classes"][0].pop("descriptions"), r"classes\[0\]: missing 'descriptions'"),
        (lambda d: d["classes"][0].update(descriptions=[]), "'normal'.descriptions: empty list"),
        (lambda d: d["classes"][1].update(name="Normal"), "duplicates class 'normal'"),
        (lambda d: d["classes"][1].update(aliases=["NORMAL"]), "alias 'NORMAL' already names class 'normal'"),
        (lambda d: d["classes"][0]["descriptions"].append("Clear lungs."), r"\[2\]: duplicates descriptions\[0\]"),
        (lambda d: d["classes"][0]["descriptions"].append(7), r"descriptions\[2\]: expected a string, got int"),
        (lambda d: d["classes"][0]["descriptions"].append("   "), r"descriptions\[2\]: empty string"),
        (lambda d: d["classes"][0].update(descriptions="clear lungs"), "expected a list of strings, got str"),
        (lambda d: d["classes"][0].update(descriptions=["x" * 201]), "201 characters"),
        (lambda d: d.update(classes={"normal": ["a"]}), "classes: expected a list of classes, got dict"),
        (lambda d: d.update(task=3), "task: expected a string, got int"),
        (lambda d: d["classes"][0].update(name=True), r"classes\[0\].name: expected a string, got bool"),
        (lambda d: d.update(provenance={}), "provenance.source: expected a string, got NoneType"),
        (lambda d: d.update(colour="red"), r"unknown keys \['colour'\]"),
        (lambda d: d["classes"][0].update(label="x"), r"unknown keys \['label'\]"),
        (lambda d: d.update(format="kpl/0"), "format 'kpl/0' is not"),
    ],
)
def test_validation_errors_name_the_place(edit, message):
    with pytest.raises(KnowledgeError, match=message) as err:
        parse_knowledge(variant(edit), "mine", "/tmp/mine.json")
    assert str(err.value).startswith("/tmp/mine.json: ")


def test_files_round_trip_and_report_json_errors(tmp_path):
    path = tmp_path / "my-task.json"
    save_knowledge(parse_knowledge(VALID, "my-task"), path)
    kb = load_knowledge(path)
    assert kb.name == "my-task" and kb.path == str(path)
    assert kb.to_json() == {"format": "clinlens-knowledge/1", **VALID}
    broken = tmp_path / "broken.json"
    broken.write_text('{"task": "x",\n "classes": [}', encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"broken.json: not valid JSON \(line 2"):
        load_knowledge(broken)
    with pytest.raises(KnowledgeError, match="no such knowledge base file"):
        load_knowledge(tmp_path / "absent.json")


def test_resolve_by_name_file_and_user_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINLENS_CONFIG_DIR", str(tmp_path / "config"))
    user_dir = tmp_path / "config" / "knowledge"
    user_dir.mkdir(parents=True)
    (user_dir / "my-task.json").write_text(json.dumps(VALID), encoding="utf-8")
    shadow = variant(lambda d: d.update(task="my own TB base"))
    (user_dir / "tuberculosis-cxr.json").write_text(json.dumps(shadow), encoding="utf-8")

    names = [p.stem for p in available_knowledge()]
    assert set(BUNDLED) | {"my-task"} == set(names)
    assert resolve_knowledge("my-task").task == "Test task"
    assert resolve_knowledge("tuberculosis-cxr").task == "my own TB base"  # the user's copy wins
    assert resolve_knowledge(str(user_dir / "my-task.json")).name == "my-task"
    with pytest.raises(KnowledgeError, match="no knowledge base named 'nope'; available: brain-tumor-mri"):
        resolve_knowledge("nope")
