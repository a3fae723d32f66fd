"""KPL accuracy over several labelled datasets in one run, next to the authors' own log.

Each dataset is a folder with one sub-folder per class and its knowledge base; every one is scored
by ``engine.kpl.evaluate_folder`` (the same code as ``eval-kpl``), with one CLIP model loaded once.
The reference numbers are the authors' ``New_image_classification_medical.log`` (JXLiu-AI/KPL,
100 runs, 2024-04-23: text proxy / KPL accuracy for k = 5, 10, ..., 50 with OpenAI CLIP ViT-L/14
and ViT-L/14@336px), as summarised in shared/research/kpl.md section 5.1 (one decimal). They are
the authors' log, not the paper's tables, which could not be retrieved; they are shown only when
the dataset name, the backbone and k match a logged run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from engine.evaluation.report import markdown_table

if TYPE_CHECKING:  # engine.kpl loads open_clip: only when KPL is evaluated
    from engine.kpl import CancelFlag, FeatureCache, KplSettings, LoadedClip, ProgressFn

_K = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50)
_L14, _L14_336 = "ViT-L/14", "ViT-L/14@336px"


def _sweep(text: str) -> dict[int, tuple[float, float]]:
    pairs = [tuple(float(v) for v in cell.split("/")) for cell in text.split()]
    return dict(zip(_K, pairs, strict=True))


AUTHORS_LOG: dict[str, dict[str, dict[int, tuple[float, float]]]] = {
    "Montgomery": {
        _L14: _sweep(
            "58.0/66.7 58.0/69.6 58.7/71.7 59.4/72.5 59.4/71.0 60.1/70.3 60.1/68.1 60.9/70.3 60.9/70.3 61.6/68.8"
        ),
        _L14_336: _sweep(
            "58.0/66.7 58.0/68.8 58.0/70.3 58.0/68.1 58.0/66.7 58.0/67.4 58.0/68.8 58.7/67.4 59.4/69.6 60.9/71.0"
        ),
    },
    "Shenzhen": {
        _L14: _sweep(
            "49.5/73.7 50.5/73.7 50.5/73.6 50.3/73.6 50.5/74.0 50.8/74.6 51.1/74.6 51.7/75.4 53.0/75.2 55.7/75.2"
        ),
        _L14_336: _sweep(
            "49.4/78.5 50.6/77.6 52.9/78.2 51.1/77.6 51.5/77.0 52.1/78.1 55.3/78.8 56.5/78.5 60.3/78.1 62.4/78.2"
        ),
    },
    "IDRiD": {
        _L14: _sweep(
            "14.3/40.5 16.9/46.5 32.6/46.3 36.6/44.6 30.8/45.4 25.2/45.2 20.7/45.5 20.9/44.8 21.5/43.6 21.7/44.4"
        ),
        _L14_336: _sweep(
            "29.3/45.0 23.6/45.4 35.1/46.1 38.4/47.3 33.0/46.3 24.2/46.5 20.5/46.3 19.2/47.1 17.8/47.3 16.7/46.9"
        ),
    },
    "Cataract": {
        _L14: _sweep(
            "50.9/39.9 51.2/34.3 50.8/25.8 50.4/26.5 37.6/26.5 23.3/24.3 25.3/26.8 18.5/27.4 17.8/27.8 17.0/28.1"
        ),
        _L14_336: _sweep(
            "50.1/31.1 47.6/39.4 49.1/37.6 40.9/38.9 36.9/35.4 22.1/35.6 24.1/35.6 18.0/37.8 17.5/37.8 16.6/37.6"
        ),
    },
    "Malaria": {
        _L14: _sweep(
            "49.3/39.7 54.0/62.7 56.8/68.1 62.2/77.2 65.5/78.2 61.3/74.8 63.1/76.1 62.7/76.0 64.1/77.6 62.4/75.8"
        ),
        _L14_336: _sweep(
            "48.0/33.2 53.2/55.4 58.9/73.9 60.0/78.1 58.1/74.8 61.9/80.3 64.9/82.5 63.9/80.9 63.2/80.9 60.8/79.0"
        ),
    },
}
"""dataset -> backbone -> k -> (text-proxy accuracy %, KPL accuracy %), from the authors' log."""

_ALIASES = {
    "montgomery": "Montgomery",
    "montgomeryset": "Montgomery",
    "shenzhen": "Shenzhen",
    "chinaset": "Shenzhen",
    "idrid": "IDRiD",
    "cataract": "Cataract",
    "malaria": "Malaria",
    "malariacell": "Malaria",
    "cellimages": "Malaria",
}
_BACKBONES = {("ViT-L-14", "openai"): _L14, ("ViT-L-14-336", "openai"): _L14_336}


@dataclass(frozen=True)
class KplDataset:
    """One labelled dataset: a name (matched to the authors' log), its knowledge base and folder."""

    name: str
    knowledge: str  # knowledge base name or .json file
    folder: str  # one sub-folder of images per class


@dataclass(frozen=True)
class AuthorsRun:
    """What the authors' log says for this dataset and backbone."""

    dataset: str
    backbone: str
    k: int | None  # our k when the log has a run at it, else None
    text_accuracy: float | None  # at that k, as a fraction
    accuracy: float | None
    best_accuracy: float  # the best KPL accuracy over the logged k
    best_k: int


@dataclass(frozen=True)
class KplSetResult:
    name: str
    folder: str
    knowledge: str
    images: int
    classes: int
    method: str
    text_accuracy: float
    accuracy: float
    authors: AuthorsRun | None
    warnings: tuple[str, ...] = field(default=())


def authors_run(dataset: str, model: str, pretrained: str, k: int) -> AuthorsRun | None:
    """The authors' logged numbers for a dataset name and an open_clip model, None when there are none."""
    key = _ALIASES.get(re.sub(r"[^a-z]", "", dataset.lower()))
    backbone = _BACKBONES.get((model, pretrained))
    if key is None or backbone is None:
        return None
    sweep = AUTHORS_LOG[key][backbone]
    best_k = max(sweep, key=lambda kk: sweep[kk][1])
    text, final = sweep.get(k, (None, None))
    return AuthorsRun(
        dataset=key,
        backbone=backbone,
        k=k if k in sweep else None,
        text_accuracy=None if text is None else round(text / 100, 4),
        accuracy=None if final is None else round(final / 100, 4),
        best_accuracy=round(sweep[best_k][1] / 100, 4),
        best_k=best_k,
    )


def check_kpl_sets(datasets: Sequence[KplDataset]) -> None:
    """Resolve every knowledge base and class folder before any image is encoded (fail in seconds)."""
    from engine.kpl import KnowledgeError, resolve_knowledge
    from engine.kpl.evaluate import class_folders

    names = [d.name for d in datasets]
    if not datasets or len(set(names)) != len(names):
        raise ValueError("give each dataset once, with a name of its own")
    for dataset in datasets:
        try:
            class_folders(dataset.folder, resolve_knowledge(dataset.knowledge))
        except KnowledgeError as err:
            raise KnowledgeError(f"{dataset.name}: {err}") from None


def evaluate_kpl_sets(
    datasets: Sequence[KplDataset],
    clip: LoadedClip,
    settings: KplSettings | None = None,
    *,
    cache: FeatureCache | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
) -> list[KplSetResult]:
    """Score every dataset with ``engine.kpl.evaluate_folder`` (the code of ``eval-kpl``), in order.

    ``progress`` stages are prefixed with the dataset name; a set ``cancel`` raises
    ``engine.kpl.Cancelled`` from inside the running dataset.
    """
    from engine.kpl import KplSettings, evaluate_folder, resolve_knowledge

    check_kpl_sets(datasets)
    settings = settings or KplSettings()
    results = []
    for dataset in datasets:

        def staged(stage: str, done: int, total: int, name: str = dataset.name) -> None:
            if progress is not None:
                progress(f"{name}: {stage}", done, total)

        kb = resolve_knowledge(dataset.knowledge)
        report = evaluate_folder(dataset.folder, kb, clip, settings, cache=cache, progress=staged, cancel=cancel)
        warnings = [e.message for e in report.result.errors] + list(report.result.warnings)
        missing = [c for c in report.classes if c not in report.folders]
        if missing:
            warnings.append(f"no folder for {', '.join(missing)}; KPL still spreads the pool over every class")
        results.append(
            KplSetResult(
                name=dataset.name,
                folder=os.fspath(dataset.folder),
                knowledge=kb.name,
                images=int(report.truth.size),
                classes=len(report.classes),
                method=report.result.method,
                text_accuracy=report.text_accuracy,
                accuracy=report.accuracy,
                authors=authors_run(dataset.name, clip.spec.model, clip.spec.pretrained, settings.k),
                warnings=tuple(warnings),
            )
        )
    return results


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def kpl_sets_markdown(results: Sequence[KplSetResult], model: str, k: int) -> str:
    """Our text-proxy and method accuracy per dataset, beside the authors' log at the same k."""
    method = results[0].method if results else "kpl"
    header = [
        "dataset",
        "images",
        "classes",
        "text proxy (%)",
        f"{method} (%)",
        f"authors' log, k={k}: text / KPL (%)",
        "authors' best KPL (%) (k)",
    ]
    rows = []
    for r in results:
        a = r.authors
        same_k = "—" if a is None or a.k is None else f"{_pct(a.text_accuracy)} / {_pct(a.accuracy)}"
        best = "—" if a is None else f"{_pct(a.best_accuracy)} ({a.best_k})"
        rows.append([r.name, str(r.images), str(r.classes), _pct(r.text_accuracy), _pct(r.accuracy), same_k, best])
    lines = [f"CLIP {model}, k={k}.", "", markdown_table(header, rows), ""]
    backbones = {a.backbone for r in results if (a := r.authors) is not None}
    if backbones:
        lines.append(
            f"Authors' numbers: their own log ({', '.join(sorted(backbones))}, OpenAI CLIP), not the "
            "paper's tables; they used their own knowledge base (feature_50.json), so expect a few points "
            "of difference."
        )
    else:
        lines.append(
            "No authors' numbers: the log covers Montgomery, Shenzhen, IDRiD, Cataract and Malaria with "
            "OpenAI CLIP ViT-L-14 / ViT-L-14-336 only."
        )
    return "\n".join(lines) + "\n"


def kpl_sets_json(results: Sequence[KplSetResult]) -> list[dict]:
    return [asdict(r) for r in results]
