"""KPL accuracy on a labelled folder: one sub-folder per class, named like the class.

The paper's setting (ImageFolder ``val/``): the whole folder is one transductive pool, and the
folder names give the truth. Reports the text proxy and the chosen method side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.imaging import ImageStack, LoadError, open_paths
from engine.kpl.cache import FeatureCache
from engine.kpl.classify import KplResult, KplSettings, classify_pool
from engine.kpl.clip import LoadedClip
from engine.kpl.images import Pool
from engine.kpl.knowledge import KnowledgeBase, KnowledgeError
from engine.kpl.progress import CancelFlag, ProgressFn


@dataclass(frozen=True)
class EvalReport:
    classes: tuple[str, ...]
    folders: dict[str, str]  # class name -> sub-folder it was read from
    truth: np.ndarray  # class index per classified image
    text_accuracy: float
    accuracy: float
    text_confusion: np.ndarray  # (C, C), rows = truth, columns = prediction
    confusion: np.ndarray
    result: KplResult


def class_folders(folder: str | os.PathLike[str], kb: KnowledgeBase) -> dict[int, Path]:
    """Map each sub-folder to the knowledge-base class it names (name or alias, loosely)."""
    root = Path(folder)
    if not root.is_dir():
        raise KnowledgeError(f"{root} is not a folder")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise KnowledgeError(f"{root} has no class sub-folders (expected one folder per class)")
    mapping: dict[int, Path] = {}
    for sub in subdirs:
        hits = [i for i, c in enumerate(kb.classes) if c.matches(sub.name)]
        if not hits:
            names = ", ".join(kb.class_names)
            raise KnowledgeError(
                f"folder {sub.name!r} names no class of {kb.name} ({names}); rename it or add an alias"
            )
        if hits[0] in mapping:
            raise KnowledgeError(
                f"folders {mapping[hits[0]].name!r} and {sub.name!r} both name class {kb.classes[hits[0]].name!r}"
            )
        mapping[hits[0]] = sub
    return mapping


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def evaluate_folder(
    folder: str | os.PathLike[str],
    kb: KnowledgeBase,
    clip: LoadedClip,
    settings: KplSettings = KplSettings(),
    *,
    cache: FeatureCache | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
) -> EvalReport:
    mapping = class_folders(folder, kb)
    frames: list[tuple[ImageStack, int]] = []
    labels: list[int] = []
    errors: list[LoadError] = []
    for cls, sub in sorted(mapping.items()):
        opened = open_paths([sub])
        errors.extend(opened.errors)
        for stack in opened.stacks:
            frames.extend((stack, i) for i in range(stack.n_frames))
            labels.extend([cls] * stack.n_frames)
    pool = Pool.from_frames(frames)
    pool.errors.extend(errors)
    result = classify_pool(pool, kb, clip, settings, cache=cache, progress=progress, cancel=cancel)
    index = {name: i for i, name in enumerate(kb.class_names)}
    truth = np.array([labels[r.image.index] for r in result.images], dtype=np.int64)
    predicted = np.array([index[r.label] for r in result.images], dtype=np.int64)
    text = np.array([index[r.text_label] for r in result.images], dtype=np.int64)
    n = len(kb.classes)
    return EvalReport(
        classes=kb.class_names,
        folders={kb.classes[c].name: str(p) for c, p in sorted(mapping.items())},
        truth=truth,
        text_accuracy=float((text == truth).mean()),
        accuracy=float((predicted == truth).mean()),
        text_confusion=confusion_matrix(truth, text, n),
        confusion=confusion_matrix(truth, predicted, n),
        result=result,
    )
