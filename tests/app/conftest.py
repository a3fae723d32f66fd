"""Qt-side guards, in the spirit of napari's conftest: a test must not leave a QThread running."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import torch
from pydicom.data import get_testdata_file
from PySide6.QtCore import QThread, QThreadPool
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

from tests.engine.tiny_qwen import tiny_checkpoint

# A grounded answer in Qwen2-VL's dialect: "spine" at (250,500)-(750,1000) on the 0-1000 grid.
BOX_ANSWER = "<|object_ref_start|>spine<|object_ref_end|><|box_start|>(250,500),(750,1000)<|box_end|>"


@pytest.fixture(autouse=True)
def no_leaked_qthreads(monkeypatch, qapp):
    started: list[QThread] = []
    original_start = QThread.start

    def recording_start(self, *args, **kwargs):
        started.append(self)
        return original_start(self, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", recording_start)
    yield
    pool = QThreadPool.globalInstance()
    assert pool.waitForDone(5000), "test left QThreadPool jobs running"
    running = [t for t in started if t.isRunning()]
    assert not running, f"test left {len(running)} QThread(s) running; stop and wait() them"


@pytest.fixture
def tiny_folder(tmp_path_factory):
    """A tiny random-weight Qwen2-VL checkpoint folder, built once per session."""
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture
def second_folder(tiny_folder, tmp_path):
    """Another checkpoint folder for a second opinion: the tiny model's files under another name (the
    ``scripted`` fixture's ``by_model`` gives it its own answer)."""
    return Path(shutil.copytree(tiny_folder, tmp_path / "second-opinion"))


@pytest.fixture
def ct(tmp_path) -> str:
    """A copy of pydicom's CT_small.dcm in its own folder (annotations are saved beside it)."""
    target = tmp_path / "CT_small.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), target)
    return str(target)


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    """A tiny random-weight SAM folder (config, weights, processor) for the production loader."""
    from tests.engine.tiny_sam import save_sam_dir

    return save_sam_dir(tmp_path_factory.mktemp("tiny-sam") / "sam")


@pytest.fixture
def square(monkeypatch):
    """The mask decoder scripted to a known square of the 256 x 256 grid (+10 inside, -10 outside):
    the plumbing is under test, never the random model's masks."""
    from engine.segmentation.predictor import Segmenter

    logits = torch.full((1, 1, 256, 256), -10.0)
    logits[..., 40:100, 40:100] = 10.0
    monkeypatch.setattr(Segmenter, "decode", lambda self, entry, prompt, multimask=False: (logits, 0.87))


@pytest.fixture
def rtdose(tmp_path) -> str:
    """A copy of pydicom's 15-frame rtdose.dcm: annotations autosave beside the image, and the
    shared test file in the environment must never get a sidecar that later tests would open."""
    target = tmp_path / "rtdose" / "rtdose.dcm"
    target.parent.mkdir()
    shutil.copy(get_testdata_file("rtdose.dcm"), target)
    return str(target)


@pytest.fixture
def scripted(monkeypatch, tiny_folder):
    """Make generate() answer ``control["answer"]`` for every row of a batch, token by token,
    through the real streamer and stopping criteria: the plumbing (streaming, cancel, parsing,
    overlays) is under test, never the model's words. With ``pause_after`` set it waits after that
    many tokens until ``gate`` is set (a test cancels in that pause). ``by_model`` maps a checkpoint
    folder's name to its own answer (or a callable giving the next one): two models (a second opinion)
    answer differently. ``pace``, when set, is called with the model folder's name and the step
    before each token, and with step None after the last: a test paces two models' streams with it."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    tokenizing = threading.Lock()  # two models answering at once share this one tokenizer
    control = {"answer": BOX_ANSWER, "pause_after": None, "gate": threading.Event(), "by_model": {}, "pace": None}

    def generate(self, input_ids=None, streamer=None, stopping_criteria=(), **_):
        name = Path(str(self.name_or_path)).name
        answer = control["by_model"].get(name, control["answer"])
        answer = answer() if callable(answer) else answer  # a callable: the next answer of a scripted series
        with tokenizing:
            tokens = tokenizer(answer, add_special_tokens=False).input_ids
            tokens.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
        pace = control["pace"] or (lambda _name, _step: None)
        streamer.put(input_ids)
        out = input_ids
        for step, token in enumerate(tokens):
            if step == control["pause_after"]:
                assert control["gate"].wait(20), "the test never released the scripted answer"
            pace(name, step)
            column = torch.full((input_ids.shape[0], 1), token)
            out = torch.cat([out, column], dim=1)
            streamer.put(column[:, 0])
            if any(bool(c(out, None).all()) for c in stopping_criteria):
                break
        pace(name, None)
        streamer.end()
        return out

    monkeypatch.setattr(Qwen2VLForConditionalGeneration, "generate", generate)
    return control
