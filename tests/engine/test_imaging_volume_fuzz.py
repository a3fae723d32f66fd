"""Damaged volume geometry: every case is a volume whose three planes render, or one clean error.

Three pristine volumes (a CT series of single-frame files, one Enhanced CT multi-frame file with
per-frame positions, and pydicom's RT Dose grid stacked by GridFrameOffsetVector) have their
geometry headers damaged: positions, orientations, spacings, frame offsets, frame counts,
functional groups, rows and columns, set to NaN, infinities, 1e308, 0, negative values,
missing, empty, too few or too many values, text, or another VR. Every combination of
attribute and damage runs once, then seeded random cases damage two or three attributes at once.
Values are written as raw element bytes, so the files hold exactly what a damaged archive would.

The contract, per case: a file the image guard refuses is a LoadError naming it (Rows 0, pixel
data shorter than NumberOfFrames says); every stack opened is either a volume whose axial,
coronal and sagittal planes render to a uint8 image of positive size, or a VolumeError in one
sentence that names one of its files and a geometry attribute. Nothing else may escape.
"""

from __future__ import annotations

import copy
import math
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from engine.imaging import ImageLoadError, ImageStack, Plane, VolumeError, load_volume, open_paths, render
from tests.engine.phantom import Phantom

SEED = 22
RANDOM_CASES = 60
ATTRIBUTES = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "GridFrameOffsetVector",
    "NumberOfFrames",
    "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence",
    "PlanePositionSequence",
    "PlaneOrientationSequence",
    "PixelMeasuresSequence",
    "Rows",
    "Columns",
)


# ----- damage: what is written in place of an element's value
@dataclass(frozen=True)
class Damage:
    name: str
    apply: Callable[[Dataset, str, random.Random], None]


def _set_raw(item: Dataset, keyword: str, vr: str, value: bytes) -> None:
    """Put exactly these value bytes in the element (pydicom writes raw elements unchanged)."""
    if len(value) % 2:
        value += b"\0" if vr in ("US", "OB", "UN") else b" "
    tag = Tag(tag_for_keyword(keyword))
    item._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def _text_values(item: Dataset, keyword: str) -> list[str]:
    value = item.get(keyword)
    if value is None:
        return ["1"]
    items = list(value) if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]
    return [str(v) for v in items] or ["1"]


def _number_string(keyword: str) -> str:
    return "IS" if keyword == "NumberOfFrames" else "DS"


def _one_value(text: str) -> Callable[[Dataset, str, random.Random], None]:
    """One value of the attribute (chosen by the seed) replaced by `text`."""

    def apply(item: Dataset, keyword: str, rng: random.Random) -> None:
        if keyword in ("Rows", "Columns"):
            _set_raw(item, keyword, "US", struct.pack("<H", _as_ushort(text)))
            return
        values = _text_values(item, keyword)
        values[rng.randrange(len(values))] = text
        _set_raw(item, keyword, _number_string(keyword), "\\".join(values).encode())

    return apply


def _all_values(text: str) -> Callable[[Dataset, str, random.Random], None]:
    def apply(item: Dataset, keyword: str, rng: random.Random) -> None:
        if keyword in ("Rows", "Columns"):
            _one_value(text)(item, keyword, rng)
            return
        values = [text] * len(_text_values(item, keyword))
        _set_raw(item, keyword, _number_string(keyword), "\\".join(values).encode())

    return apply


def _as_ushort(text: str) -> int:
    try:
        number = float(text)
    except ValueError:
        return 0
    return 0 if not math.isfinite(number) else int(min(max(number, 0), 65535))


def _missing(item: Dataset, keyword: str, rng: random.Random) -> None:
    if keyword in item:
        del item[keyword]


def _empty(item: Dataset, keyword: str, rng: random.Random) -> None:
    _set_raw(item, keyword, "US" if keyword in ("Rows", "Columns") else _number_string(keyword), b"")


def _too_few(item: Dataset, keyword: str, rng: random.Random) -> None:
    values = _text_values(item, keyword)
    _set_raw(item, keyword, _number_string(keyword), "\\".join(values[:-1] or ["1\\2"]).encode())


def _too_many(item: Dataset, keyword: str, rng: random.Random) -> None:
    values = [*_text_values(item, keyword), "0"]
    _set_raw(item, keyword, _number_string(keyword), "\\".join(values).encode())


def _negated(item: Dataset, keyword: str, rng: random.Random) -> None:
    values = _text_values(item, keyword)
    k = rng.randrange(len(values))
    values[k] = values[k][1:] if values[k].startswith("-") else "-" + values[k]
    _set_raw(item, keyword, _number_string(keyword), "\\".join(values).encode())


def _as_us(item: Dataset, keyword: str, rng: random.Random) -> None:
    _set_raw(item, keyword, "US", struct.pack("<H", rng.randrange(65536)))


def _as_ob(item: Dataset, keyword: str, rng: random.Random) -> None:
    _set_raw(item, keyword, "OB", "\\".join(_text_values(item, keyword)).encode())


def _as_text_vr(item: Dataset, keyword: str, rng: random.Random) -> None:
    _set_raw(item, keyword, "LO", b"left\\up\\3")


def _as_sequence(item: Dataset, keyword: str, rng: random.Random) -> None:
    item.add_new(Tag(tag_for_keyword(keyword)), "SQ", [Dataset()])


DAMAGES = (
    Damage("nan", _one_value("nan")),
    Damage("all nan", _all_values("nan")),
    Damage("inf", _one_value("inf")),
    Damage("-inf", _one_value("-inf")),
    Damage("1e999", _one_value("1e999")),
    Damage("1e308", _one_value("1e308")),
    Damage("-1e308", _one_value("-1e308")),
    Damage("1e5", _one_value("1e5")),
    Damage("1e-9", _one_value("1e-9")),
    Damage("0", _one_value("0")),
    Damage("all 0", _all_values("0")),
    Damage("-1", _one_value("-1")),
    Damage("7", _one_value("7")),
    Damage("negated", _negated),
    Damage("missing", _missing),
    Damage("empty", _empty),
    Damage("too few", _too_few),
    Damage("too many", _too_many),
    Damage("text", _one_value("abc")),
    Damage("as US", _as_us),
    Damage("as OB", _as_ob),
    Damage("as LO", _as_text_vr),
    Damage("as SQ", _as_sequence),
)


# ----- sequences: damage to a functional group itself
def _drop_item(item: Dataset, keyword: str, rng: random.Random) -> None:
    sequence = item[keyword].value
    del sequence[rng.randrange(len(sequence))]


def _empty_sequence(item: Dataset, keyword: str, rng: random.Random) -> None:
    item[keyword].value = []


def _empty_item(item: Dataset, keyword: str, rng: random.Random) -> None:
    item[keyword].value = [Dataset()]


SEQUENCE_DAMAGES = (
    Damage("drop an item", _drop_item),
    Damage("no items", _empty_sequence),
    Damage("an empty item", _empty_item),
    Damage("missing", _missing),
    Damage("as OB", _as_ob),
    Damage("as US", _as_us),
)


# ----- the pristine volumes and where their geometry lives
PHANTOM = {"rows": 20, "columns": 18, "slices": 6, "pixel_mm": 1.5, "slice_mm": 3.0, "centre_voxel": (3, 10, 9)}


@dataclass(frozen=True)
class Target:
    """An element to damage: which volume, which file, which (nested) item, which attribute."""

    volume: str
    keyword: str
    path: tuple[tuple[str, int], ...] = ()  # (sequence keyword, item index) from the file to the item
    file_index: int | None = None  # series: a seeded file when None
    moved_from: str | None = None  # the value starts as this attribute's, which is then removed

    def item(self, ds: Dataset, rng: random.Random) -> Dataset:
        for sequence, index in self.path:
            items = ds[sequence].value
            ds = items[index if index >= 0 else rng.randrange(len(items))]
        if self.moved_from is not None and self.moved_from in ds:
            setattr(ds, self.keyword, ds[self.moved_from].value)
            del ds[self.moved_from]
        return ds


SERIES_KEYWORDS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "NumberOfFrames")
TARGETS = (
    *(Target("series", k) for k in (*SERIES_KEYWORDS, "GridFrameOffsetVector", "Rows")),
    Target("series", "ImagerPixelSpacing", moved_from="PixelSpacing"),  # a projection image's spacing
    Target("series", "ImageOrientationPatient", file_index=0),  # the slice the others are compared with
    Target(
        "enhanced", "ImagePositionPatient", (("PerFrameFunctionalGroupsSequence", -1), ("PlanePositionSequence", 0))
    ),
    Target(
        "enhanced", "ImageOrientationPatient", (("SharedFunctionalGroupsSequence", 0), ("PlaneOrientationSequence", 0))
    ),
    Target("enhanced", "PixelSpacing", (("SharedFunctionalGroupsSequence", 0), ("PixelMeasuresSequence", 0))),
    Target("enhanced", "NumberOfFrames"),
    Target("enhanced", "Columns"),
    Target("dose", "GridFrameOffsetVector"),
    Target("dose", "ImagePositionPatient"),
    Target("dose", "ImageOrientationPatient"),
    Target("dose", "PixelSpacing"),
    Target("dose", "NumberOfFrames"),
    Target("dose", "Rows"),
)
SEQUENCE_TARGETS = (
    Target("enhanced", "PerFrameFunctionalGroupsSequence"),
    Target("enhanced", "PlanePositionSequence", (("PerFrameFunctionalGroupsSequence", -1),)),
    Target("enhanced", "PlaneOrientationSequence", (("SharedFunctionalGroupsSequence", 0),)),
    Target("enhanced", "SharedFunctionalGroupsSequence"),
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, list[tuple[str, Dataset]]]:
    """Each volume as (file name, dataset) pairs, read back from real files."""
    root = tmp_path_factory.mktemp("pristine")
    phantom = Phantom(**PHANTOM)
    series = sorted(phantom.write_series(root / "series").glob("*.dcm"))
    enhanced = phantom.write_enhanced(root / "enhanced.dcm")
    dose = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    dose.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # implicit VR files cannot carry a wrong VR
    dose.save_as(root / "rtdose.dcm", enforce_file_format=True)
    return {
        "series": [(path.name, pydicom.dcmread(path)) for path in series],
        "enhanced": [(enhanced.name, pydicom.dcmread(enhanced))],
        "dose": [("rtdose.dcm", pydicom.dcmread(root / "rtdose.dcm"))],
    }


def write_case(pristine, folder: Path, damages: list[tuple[Target, Damage]], rng: random.Random) -> set[str]:
    """A damaged copy of one volume in `folder` (every damage hits the same volume); the names of
    the files damaged."""
    files = [(name, copy.deepcopy(ds)) for name, ds in pristine[damages[0][0].volume]]
    touched = set()
    for target, damage in damages:
        name, ds = files[target.file_index if target.file_index is not None else rng.randrange(len(files))]
        damage.apply(target.item(ds, rng), target.keyword, rng)
        touched.add(name)
    folder.mkdir(parents=True)
    for name, ds in files:
        ds.save_as(folder / name, enforce_file_format=True)
    return touched


# ----- the contract
def check_case(folder: Path, touched: set[str]) -> str:
    """Assert the contract for every stack the damaged folder opens as; the outcome of the
    largest (the series a user would open): volume, VolumeError, ImageLoadError or refused."""
    result = open_paths([folder])
    for error in result.errors:
        name = os.path.basename(error.path)
        assert name in touched and name in error.message, error.message
    outcomes = [(stack.n_frames, volume_outcome(stack)) for stack in result.stacks]
    return max(outcomes)[1] if outcomes else "refused by the image guard"


def volume_outcome(stack: ImageStack) -> str:
    names = [os.path.basename(path) for path in stack.paths]
    try:
        volume = load_volume(stack)
    except VolumeError as error:
        message = str(error)
        assert message.endswith(".") and "\n" not in message and ". " not in message, message
        if stack.n_frames == 1 and "has one slice" in message:
            return "one slice"
        assert any(name in message for name in names), f"no file named: {message}"
        assert any(keyword in message for keyword in ATTRIBUTES), f"no attribute named: {message}"
        return "VolumeError"
    except ImageLoadError as error:  # a frame the image guard would not decode
        assert any(name in str(error) for name in names), str(error)
        return "ImageLoadError"
    for plane in Plane:
        axes = volume.axes(plane)
        for index in {0, axes.n_positions // 2, axes.n_positions - 1}:
            pixels = render(volume.plane_frame(plane, index))
            assert pixels.dtype == np.uint8 and pixels.shape == (axes.height, axes.width) and pixels.size > 0
    facts = volume.geometry.to_dict()  # `main.py info --json`
    assert all(math.isfinite(v) for v in facts["slice_offsets_mm"] + facts["orientation"])
    return "volume"


def run_cases(pristine, root: Path, cases: list[tuple[str, list[tuple[Target, Damage]]]]) -> Counter:
    """Every case checked; failures are collected so one run lists them all."""
    outcomes: Counter = Counter()
    failures = []
    for number, (case_id, damages) in enumerate(cases):
        rng = random.Random(f"{SEED}:{case_id}")
        folder = root / f"case{number:04d}"
        touched = write_case(pristine, folder, damages, rng)
        try:
            outcomes[check_case(folder, touched)] += 1
        except Exception as error:  # noqa: BLE001 - a fuzz oracle reports every escaping failure
            failures.append(f"{case_id}: {type(error).__name__}: {error}")
    assert not failures, f"{len(failures)} of {len(cases)} cases broke the contract:\n" + "\n".join(failures)
    return outcomes


def grid_cases() -> list[tuple[str, list[tuple[Target, Damage]]]]:
    cases = [(f"{t.volume} {t.keyword} {d.name}", [(t, d)]) for t in TARGETS for d in DAMAGES]
    cases += [(f"{t.volume} {t.keyword} {d.name}", [(t, d)]) for t in SEQUENCE_TARGETS for d in SEQUENCE_DAMAGES]
    return cases


def random_cases(count: int) -> list[tuple[str, list[tuple[Target, Damage]]]]:
    """Two or three damages in one volume; sequence damage last, so element damage finds its item."""
    rng = random.Random(SEED)
    cases = []
    for number in range(count):
        volume = rng.choice(["series", "enhanced", "dose"])
        elements = [t for t in TARGETS if t.volume == volume]
        damages = [(rng.choice(elements), rng.choice(DAMAGES)) for _ in range(rng.randint(2, 3))]
        sequences = [t for t in SEQUENCE_TARGETS if t.volume == volume]
        if sequences and rng.random() < 0.3:
            damages.append((rng.choice(sequences), rng.choice(SEQUENCE_DAMAGES)))
        label = " + ".join(f"{t.keyword} {d.name}" for t, d in damages)
        cases.append((f"random {number} {volume}: {label}", damages))
    return cases


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about each invalid value it reads
def test_every_single_geometry_damage_is_a_volume_or_one_clean_error(pristine, tmp_path):
    started = time.perf_counter()
    cases = grid_cases()
    outcomes = run_cases(pristine, tmp_path, cases)
    print(f"\n{len(cases)} single-damage cases in {time.perf_counter() - started:.1f} s: {dict(outcomes)}")
    assert sum(outcomes.values()) == len(cases)
    assert outcomes["volume"] > 50 and outcomes["VolumeError"] > 100  # both sides of the contract are exercised


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_seeded_multiple_geometry_damage_is_a_volume_or_one_clean_error(pristine, tmp_path):
    started = time.perf_counter()
    cases = random_cases(RANDOM_CASES)
    outcomes = run_cases(pristine, tmp_path, cases)
    print(f"\n{len(cases)} multi-damage cases in {time.perf_counter() - started:.1f} s: {dict(outcomes)}")
    assert sum(outcomes.values()) == len(cases)


def test_the_cases_are_the_same_on_every_run():
    """CI reproduces a failure by its case id: the corpus depends on the seed only."""
    assert [case_id for case_id, _ in random_cases(5)] == [case_id for case_id, _ in random_cases(5)]
    assert len(grid_cases()) == len(TARGETS) * len(DAMAGES) + len(SEQUENCE_TARGETS) * len(SEQUENCE_DAMAGES)
