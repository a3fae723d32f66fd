"""Every JSON file ClinLens reads, fuzzed: a clean error of the file's module or a usable value.

Two generators, both reproducible (fixed seeds, ``derandomize=True``):
- byte damage of real valid files written in the test (bit flips, truncation, deleted, repeated
  and inserted runs), as a cut transfer or a bad disk leaves them;
- Hypothesis structural damage of the same files (one node replaced by any JSON value, one key
  dropped), as a hand edit or another tool's writer leaves them.

The contract checked for each file kind (docs/reference/file-errors.md): the load function
returns a value that the rest of the app can use (save it back, export it, build a window
from it) or raises the one error type of its module, whose message names the file; nothing
else escapes, and the previous good state is kept (quarantine copies, unchanged documents).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.annotations import (
    AnnotationDocument,
    Box,
    DocumentError,
    ImageLabel,
    ImageRef,
    UnsupportedVersionError,
    load_document,
    open_sidecar,
    save_document,
)
from engine.annotations.formats import coco_dict, export_csv, export_json, import_annotations
from engine.annotations.persistence import document_to_dict
from engine.files import JsonFileError, read_json, write_json_atomic
from engine.imaging import FrameSource, PixelSpacing
from engine.imaging import presets as presets_module
from engine.imaging.presets import Preset, PresetError, builtin_presets, read_presets, save_user_preset
from engine.kpl.knowledge import KnowledgeError, bundled_knowledge_dir, load_knowledge, save_knowledge
from engine.paths import resources_dir

SCALE = int(os.environ.get("CLINLENS_FUZZ_SCALE", "1"))  # e.g. 25 for a long local run
FUZZ = settings(
    max_examples=40 * SCALE,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BYTE_CASES = 60 * SCALE  # seeded byte mutations per file kind


# --- damage generators -----------------------------------------------------------------------


def byte_mutations(valid: bytes, seed: int, count: int = BYTE_CASES) -> Iterator[bytes]:
    """Seeded damage of a valid file: flips, truncation, deleted/repeated/inserted runs."""
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(valid)
        kind = rng.choice(("flip", "flip", "truncate", "delete", "repeat", "insert", "digits"))
        if kind == "flip":
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            del data[rng.randrange(len(data)) :]
        elif kind == "delete":
            start = rng.randrange(len(data))
            del data[start : start + rng.randint(1, 40)]
        elif kind == "repeat":
            start = rng.randrange(len(data))
            data[start:start] = data[start : start + rng.randint(1, 40)]
        elif kind == "insert":
            start = rng.randrange(len(data))
            data[start:start] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:  # a digit changed into another: valid JSON, wrong value
            spots = [i for i, b in enumerate(data) if 0x30 <= b <= 0x39]
            for i in rng.sample(spots, min(len(spots), rng.randint(1, 3))):
                data[i] = rng.choice(b"0123456789-")
        yield bytes(data)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", " ", "#zzzzzz", "../../etc", "\x00", "1", "user", "box", "qwen2_vl"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _places(node: Any, path: tuple = ()) -> list[tuple]:
    places = [path]
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        places += _places(child, (*path, key))
    return places


@st.composite
def damaged_json(draw: Callable, valid: Any) -> Any:
    """``valid`` with one node replaced by any JSON value, or one object key removed."""
    data = json.loads(json.dumps(valid))
    path = draw(st.sampled_from(_places(data)))
    if not path:
        return draw(JSON_VALUES)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON_VALUES)
    return data


def write(path: Path, content: bytes | Any) -> bytes:
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    path.write_bytes(raw)
    return raw


# --- the shared reader -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b"1" * 5000, "4300 digits"),
        (b'{"x": NaN}', "NaN"),
        (b"[1e400]", "too large"),
        (b'"\\ud800"', "unpaired surrogate"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": }', "not valid JSON (line 1, column 7"),
    ],
)
def test_read_json_turns_every_json_failure_into_one_error(tmp_path, content, reason):
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(JsonFileError, match=r"bad\.json") as err:
        read_json(tmp_path / "bad.json")
    assert reason in str(err.value) and not err.value.unreadable
    assert (tmp_path / "bad.json").read_bytes() == path
    with pytest.raises(JsonFileError, match="cannot be read") as err:
        read_json(tmp_path)  # a folder
    assert err.value.unreadable
    write(tmp_path / "bom.json", b'\xef\xbb\xbf{"ok": 1}')  # Windows editors add a BOM
    assert read_json(tmp_path / "bom.json") == {"ok": 1}


# --- annotation sidecars, project files and imports ------------------------------------------


def _sample_document(folder: Path) -> AnnotationDocument:
    """Two images (a 3-frame DICOM series with spacing and UIDs, a PNG), labels, boxes, image labels."""
    series = [str(folder / f"ct{i}.dcm") for i in range(3)]
    doc = AnnotationDocument()
    doc.ensure_label("nodule", "#ff0000")
    doc.ensure_label("effusion", "#00aaff")
    ct = ImageRef(
        "series:1.2.3",
        tuple(series),
        64,
        48,
        3,
        tuple(FrameSource(p, f"1.2.3.{i}", 1) for i, p in enumerate(series)),
        kind="dicom",
        title="CT",
        spacing=PixelSpacing(0.7, 0.7, "PixelSpacing"),
        study_instance_uid="1.2",
        series_instance_uid="1.2.3",
    )
    png = ImageRef(
        str(folder / "chest.png"),
        (str(folder / "chest.png"),),
        32,
        32,
        1,
        (FrameSource(str(folder / "chest.png"), None, 1),),
        title="chest.png",
        channels=3,
    )
    doc.restore_image(
        ct,
        [
            Box(
                "a" * 32,
                1,
                1.5,
                2,
                30,
                40.25,
                "nodule",
                sop_instance_uid="1.2.3.1",
                frame_number=1,
                created="2026-01-01T00:00:00.000+00:00",
            ),
            Box(
                "b" * 32,
                2,
                0,
                0,
                64,
                48,
                "effusion",
                source="model",
                score=0.75,
                review="pending",
                note="check",
                sop_instance_uid="1.2.3.2",
                frame_number=1,
            ),
        ],
    )
    doc.restore_image(png, [Box("c" * 32, 0, 3, 4, 10, 12, "nodule"), ImageLabel("d" * 32, "effusion", score=0.9)])
    return doc


def _state(doc: AnnotationDocument) -> dict:
    """Everything a user could see of a document (the 'saved' time stamp aside) plus undo depth."""
    data = document_to_dict(doc)
    data.pop("saved")
    return {"doc": data, "revision": doc.revision}


def _usable(doc: AnnotationDocument, out: Path) -> None:
    """A loaded document must save back and export (the fields exporters format are sane)."""
    save_document(doc, out / "again.json")
    export_json(doc, out / "export.json")
    export_csv(doc, out / "export.csv")
    coco_dict(doc, out)


@pytest.fixture
def sidecar(tmp_path) -> tuple[Path, bytes, AnnotationDocument]:
    doc = _sample_document(tmp_path)
    path = tmp_path / ".clinlens" / "annotations.json"
    save_document(doc, path)
    return path, path.read_bytes(), doc


def _check_sidecar(path: Path, raw: bytes, out: Path) -> bool:
    path.write_bytes(raw)
    try:
        doc = load_document(path)
    except UnsupportedVersionError as err:  # "schema_version": 9 - not damaged
        assert path.name in str(err)
        with pytest.raises(UnsupportedVersionError):
            open_sidecar(path)
        assert path.read_bytes() == raw  # left where it is, never saved over
        return False
    except DocumentError as err:
        assert path.name in str(err)
        assert path.read_bytes() == raw  # loading never touches the file
        opened = open_sidecar(path)  # the autosave path: moved aside, kept
        assert opened.document.images == () and opened.problem
        assert opened.moved_to.read_bytes() == raw and not path.exists()
        opened.moved_to.unlink()
    else:
        _usable(doc, out)
        return True
    return False


def test_damaged_sidecar_bytes(sidecar, tmp_path):
    path, valid, _ = sidecar
    outcomes = [_check_sidecar(path, raw, tmp_path) for raw in byte_mutations(valid, seed=13)]
    assert any(outcomes) and not all(outcomes)  # the corpus holds both usable and damaged files


@FUZZ
@given(data=st.data())
def test_damaged_sidecar_structure(sidecar, tmp_path, data):
    path, valid, _ = sidecar
    _check_sidecar(path, json.dumps(data.draw(damaged_json(json.loads(valid)))).encode(), tmp_path)


@pytest.fixture
def import_target(tmp_path) -> tuple[AnnotationDocument, dict, Path]:
    """An open project to import into, and a COCO export of another project on the same images."""
    target = _sample_document(tmp_path)
    source = _sample_document(tmp_path)
    for image in source.images:
        for a in source.annotations(image.image_id):
            if isinstance(a, Box):
                source.restore_image(
                    image, [*source.annotations(image.image_id), Box(a.id[:-1] + "9", a.frame, 5, 5, 9, 9, "new label")]
                )
                break
    return target, coco_dict(source, tmp_path), tmp_path


def _check_import(target: AnnotationDocument, path: Path, raw: bytes) -> bool:
    path.write_bytes(raw)
    before = _state(target)
    try:
        import_annotations(target, path)
    except DocumentError as err:
        assert path.name in str(err)
        assert _state(target) == before  # a failed import changes nothing
        return False
    _usable(target, path.parent)
    return True


def test_damaged_coco_import_bytes(import_target):
    target, coco, folder = import_target
    valid = json.dumps(coco, indent=1).encode()
    outcomes = [_check_import(target, folder / "import.json", raw) for raw in byte_mutations(valid, seed=5)]
    assert any(outcomes) and not all(outcomes)


@FUZZ
@given(data=st.data())
def test_damaged_coco_import_structure(import_target, data):
    target, coco, folder = import_target
    _check_import(target, folder / "import.json", json.dumps(data.draw(damaged_json(coco))).encode())


def test_damaged_clinlens_json_import_bytes(import_target, sidecar):
    target, _, folder = import_target
    outcomes = [
        _check_import(target, folder / "import.clinlens.json", raw)
        for raw in byte_mutations(sidecar[1], seed=7, count=40 * SCALE)
    ]
    assert any(outcomes) and not all(outcomes)


def test_import_that_does_not_fit_the_open_images_changes_nothing(tmp_path):
    target = _sample_document(tmp_path)
    other = AnnotationDocument()
    other.ensure_label("fresh", "#123456")
    png = target.image(next(i.image_id for i in target.images if i.kind == "raster"))
    wide = ImageRef("elsewhere", png.paths, 32, 32, 2, (*png.frames, FrameSource(png.paths[0], None, 2)))
    other.restore_image(
        ImageRef("new.png", ("new.png",), 8, 8, 1, (FrameSource("new.png", None, 1),)),
        [Box("e" * 32, 0, 1, 1, 2, 2, "fresh")],
    )
    other.restore_image(wide, [Box("f" * 32, 1, 1, 1, 2, 2, "fresh")])  # same file, frame 1: not in target
    path = tmp_path / "import.json"
    write_json_atomic(path, document_to_dict(other, tmp_path))
    before = _state(target)
    with pytest.raises(DocumentError, match=r"import\.json: does not fit the open images: box f+ is on frame 1"):
        import_annotations(target, path)
    assert _state(target) == before and "fresh" not in {label.name for label in target.labels}


# --- knowledge bases -------------------------------------------------------------------------


def _check_knowledge(path: Path, raw: bytes, out: Path) -> bool:
    path.write_bytes(raw)
    try:
        kb = load_knowledge(path)
    except KnowledgeError as err:
        assert path.name in str(err)
        return False
    assert len(kb.prompts()) == len(kb.classes) >= 2
    save_knowledge(kb, out / "again.json")
    return True


def test_damaged_knowledge_base_bytes(tmp_path):
    valid = (bundled_knowledge_dir() / "tuberculosis-cxr.json").read_bytes()
    outcomes = [_check_knowledge(tmp_path / "tb.json", raw, tmp_path) for raw in byte_mutations(valid, seed=3)]
    assert any(outcomes) and not all(outcomes)


@FUZZ
@given(data=st.data())
def test_damaged_knowledge_base_structure(tmp_path, data):
    valid = json.loads((bundled_knowledge_dir() / "tuberculosis-cxr.json").read_text(encoding="utf-8"))
    _check_knowledge(tmp_path / "tb.json", json.dumps(data.draw(damaged_json(valid))).encode(), tmp_path)


# --- presets (a store the app rewrites; settings and recent files: tests/app/test_file_errors.py)


def _check_user_presets(raw: bytes) -> bool:
    path = presets_module.user_presets_path()
    path.write_bytes(raw)
    loaded = read_presets()
    if loaded.problem is None:
        for preset in loaded.value:
            window = preset.to_window()
            assert window.width > 0 and preset.key in (None, *"123456789")
        return True
    assert loaded.value == builtin_presets() and path.name in loaded.problem
    assert loaded.kept_as.read_bytes() == raw and not path.exists()
    save_user_preset(Preset("Mine", 10, 20, "9"))  # saving writes a fresh file, the copy stays
    assert loaded.kept_as.read_bytes() == raw
    loaded.kept_as.unlink()
    path.unlink()
    return False


@pytest.fixture
def user_presets() -> bytes:
    save_user_preset(Preset("Lung wide", -500, 1800, "2"))
    save_user_preset(Preset("Abdomen", 60, 360, None))
    return presets_module.user_presets_path().read_bytes()


def test_damaged_user_presets_bytes(user_presets):
    outcomes = [_check_user_presets(raw) for raw in byte_mutations(user_presets, seed=17)]
    assert any(outcomes) and not all(outcomes)


@FUZZ
@given(data=st.data())
def test_damaged_user_presets_structure(user_presets, data):
    _check_user_presets(json.dumps(data.draw(damaged_json(json.loads(user_presets)))).encode())


def test_damaged_builtin_presets_are_one_clear_error(tmp_path, monkeypatch):
    valid = (resources_dir() / "presets.json").read_bytes()
    path = tmp_path / "presets.json"
    monkeypatch.setattr(presets_module, "BUILTIN_PRESETS_PATH", path)
    for raw in byte_mutations(valid, seed=19, count=40 * SCALE):
        path.write_bytes(raw)
        try:
            presets = builtin_presets()
        except PresetError as err:
            assert str(path) in str(err)
        else:
            assert all(p.width > 0 for p in presets)


# --- model folders ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory) -> Path:
    """A copy of the tiny Qwen2-VL checkpoint whose config.json the tests damage (weights linked)."""
    from tests.engine.tiny_qwen import tiny_checkpoint

    built = tiny_checkpoint(tmp_path_factory)
    folder = tmp_path_factory.mktemp("damaged-qwen")
    for item in built.iterdir():
        if item.name.endswith("config.json"):
            shutil.copy(item, folder / item.name)
        else:
            (folder / item.name).symlink_to(item)
    return folder


def _check_qwen(folder: Path, name: str, raw: bytes, valid: bytes, *, load: bool) -> bool:
    from engine.clinkd import ModelFolderError
    from engine.clinkd.loader import LoadSettings, load_model, read_checkpoint_config
    from engine.training.model import _checkpoint_dtype
    from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS

    (folder / name).write_bytes(raw)
    try:
        read_checkpoint_config(folder)
        assert _checkpoint_dtype(str(folder)) in ("bfloat16", "float16", "float32")  # the training loader
        if load:
            load_model(LoadSettings(str(folder), device="cpu", min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
    except ModelFolderError as err:
        assert str(folder) in str(err)
        return False
    finally:
        (folder / name).write_bytes(valid)
    return True


def test_damaged_model_config_bytes_through_the_real_loader(qwen_folder):
    for name, seed in (("config.json", 29), ("processor_config.json", 31), ("generation_config.json", 37)):
        valid = (qwen_folder / name).read_bytes()
        outcomes = [
            _check_qwen(qwen_folder, name, raw, valid, load=True)
            for raw in byte_mutations(valid, seed=seed, count=12 * SCALE)
        ]
        assert any(outcomes) and not all(outcomes), name


SMALL_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 200)
    | st.floats(-2, 2)
    | st.sampled_from(["", "qwen2_vl", "float16", "bicubic", "silu"])
)


@settings(
    max_examples=30 * SCALE,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_damaged_model_config_structure_through_the_real_loader(qwen_folder, data):
    valid = (qwen_folder / "config.json").read_bytes()
    config = json.loads(valid)
    place = data.draw(st.sampled_from(_places(config)[1:]))
    parent = config
    for key in place[:-1]:
        parent = parent[key]
    # small values only: a config that asks for a huge model is honoured (as for a real 72B one)
    parent[place[-1]] = data.draw(SMALL_SCALARS | st.lists(SMALL_SCALARS, max_size=3))
    _check_qwen(qwen_folder, "config.json", json.dumps(config).encode(), valid, load=True)


@FUZZ
@given(data=st.data())
def test_damaged_model_config_any_json_is_validated(qwen_folder, data):
    valid = (qwen_folder / "config.json").read_bytes()
    damaged = json.dumps(data.draw(damaged_json(json.loads(valid)))).encode()
    _check_qwen(qwen_folder, "config.json", damaged, valid, load=False)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    from tests.engine.tiny_clip import save_tiny_clip_dir

    return save_tiny_clip_dir(tmp_path_factory.mktemp("damaged-clip"))


def _check_clip(folder: Path, raw: bytes, valid: bytes, *, load: bool) -> bool:
    from engine.kpl.clip import ClipLoadError, ClipSpec, load_clip, weight_files

    (folder / "open_clip_config.json").write_bytes(raw)
    try:
        if load:
            load_clip(f"local-dir:{folder}", device="cpu")
        else:
            weight_files(ClipSpec.parse(f"local-dir:{folder}"))
    except ClipLoadError as err:
        assert str(folder) in str(err)
        return False
    finally:
        (folder / "open_clip_config.json").write_bytes(valid)
    return True


def test_damaged_open_clip_config_bytes_through_the_real_loader(clip_folder):
    valid = (clip_folder / "open_clip_config.json").read_bytes()
    outcomes = [
        _check_clip(clip_folder, raw, valid, load=True) for raw in byte_mutations(valid, seed=41, count=25 * SCALE)
    ]
    assert any(outcomes) and not all(outcomes)


@settings(
    max_examples=20 * SCALE,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_damaged_open_clip_config_structure_through_the_real_loader(clip_folder, data):
    valid = (clip_folder / "open_clip_config.json").read_bytes()
    config = json.loads(valid)
    place = data.draw(st.sampled_from(_places(config)[1:]))
    parent = config
    for key in place[:-1]:
        parent = parent[key]
    parent[place[-1]] = data.draw(SMALL_SCALARS | st.lists(SMALL_SCALARS, max_size=3))
    _check_clip(clip_folder, json.dumps(config).encode(), valid, load=True)


@FUZZ
@given(data=st.data())
def test_damaged_open_clip_config_any_json_is_validated(clip_folder, data):
    valid = (clip_folder / "open_clip_config.json").read_bytes()
    _check_clip(clip_folder, json.dumps(data.draw(damaged_json(json.loads(valid)))).encode(), valid, load=False)


@FUZZ
@given(annotation_id=st.text(max_size=80) | st.text("0123456789abcdef", min_size=1, max_size=80))
def test_any_annotation_id_from_a_file_gives_a_valid_sr_tracking_uid(annotation_id):
    """Ids in imported or hand-edited files are any text; the DICOM SR export must still work."""
    import re

    from engine.annotations.formats.dicom_sr import tracking_uid

    uid = tracking_uid(annotation_id)
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", uid) and len(uid) <= 64


def test_a_damaged_sidecar_that_cannot_be_moved_aside_is_never_saved_over(tmp_path, monkeypatch):
    import engine.files

    path = tmp_path / "x.png.clinlens.json"
    path.write_bytes(b"{ cut")

    def refuse(*_args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(engine.files.os, "replace", refuse)
    with pytest.raises(DocumentError, match=r"not valid JSON .*could not be moved aside: Permission denied"):
        open_sidecar(path)  # the window then keeps this image set's annotations unsaved (read-only)
    assert path.read_bytes() == b"{ cut"
