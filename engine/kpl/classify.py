"""KPL over an image pool, end to end: what the CLI runs and the GUI worker calls.

``classify_pool`` encodes the pool (cached), encodes the knowledge prompts (cached), runs
``kpl_predict`` and returns a ``KplResult`` of plain data: per image the label, the score of
every class and the winning class's selected descriptions with their relevance to that image.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from engine.imaging import LoadError
from engine.kpl.cache import FeatureCache, text_key
from engine.kpl.clip import LoadedClip, encode_texts, overlong_prompts
from engine.kpl.images import Pool, PoolEncoder, PoolImage, encode_pool
from engine.kpl.knowledge import DEFAULT_TEMPLATE, KnowledgeBase, check_template
from engine.kpl.predict import METHODS, KplPrediction, ProxyParams, kpl_predict
from engine.kpl.progress import CancelFlag, ProgressFn, check_cancel, report


@dataclass(frozen=True)
class KplSettings:
    k: int = 8  # descriptions kept per class
    method: str = "kpl"  # "kpl" | "text" | "inmap"
    template: str = DEFAULT_TEMPLATE
    params: ProxyParams = field(default_factory=ProxyParams)
    batch_size: int = 32  # images per CLIP forward pass

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.k < 1 or self.batch_size < 1:
            raise ValueError("k and batch_size must be at least 1")
        check_template(self.template)


@dataclass(frozen=True)
class Evidence:
    description: str
    relevance: float  # cosine between this image and the description's prompt


@dataclass(frozen=True)
class ImageResult:
    image: PoolImage
    label: str
    score: float  # probability of the label
    scores: tuple[float, ...]  # probability of every class, in class order
    text_label: str  # what the text proxy alone says
    evidence: tuple[Evidence, ...]  # the label's selected descriptions, most relevant first


@dataclass(frozen=True)
class KplResult:
    classes: tuple[str, ...]
    images: tuple[ImageResult, ...]
    method: str  # method applied ("text" for a single image)
    transductive: bool
    note: str
    knowledge: str
    model: str
    settings: dict[str, Any]
    selected: tuple[tuple[str, ...], ...]  # per class, the descriptions chosen for the pool
    errors: tuple[LoadError, ...]
    warnings: tuple[str, ...]
    cache_hits: int
    cache_misses: int
    timings: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def description_features(
    kb: KnowledgeBase,
    clip: LoadedClip,
    template: str = DEFAULT_TEMPLATE,
    *,
    cache: FeatureCache | None = None,
    cancel: CancelFlag | None = None,
) -> tuple[list[torch.Tensor], list[str]]:
    """Text features of every description prompt, one (m_c, d) block per class, and warnings."""
    prompts = kb.prompts(template)
    flat = [p for block in prompts for p in block]
    namespace = clip.cache_namespace
    keys = [text_key(p) for p in flat]
    found = cache.get(namespace, keys) if cache is not None else {}
    missing = [i for i, k in enumerate(keys) if k not in found]
    vectors: dict[int, torch.Tensor] = {i: torch.from_numpy(found[k].copy()) for i, k in enumerate(keys) if k in found}
    if missing:
        encoded = encode_texts(clip, [flat[i] for i in missing], cancel=cancel)
        vectors.update(zip(missing, encoded, strict=True))
        if cache is not None:
            cache.put(namespace, [(keys[i], v.numpy()) for i, v in zip(missing, encoded, strict=True)])
    warnings = [f"prompt cut to the model's text length: {p!r}" for p in overlong_prompts(clip, flat)]
    blocks, start = [], 0
    for block in prompts:
        blocks.append(torch.stack([vectors[i] for i in range(start, start + len(block))]))
        start += len(block)
    return blocks, warnings


def assemble(
    prediction: KplPrediction,
    images: list[PoolImage],
    kb: KnowledgeBase,
) -> tuple[ImageResult, ...]:
    """Per-image results from a prediction (images in feature order)."""
    names = kb.class_names
    out = []
    for row, image in enumerate(images):
        label = int(prediction.predictions[row])
        chosen = prediction.selected[label]
        relevance = prediction.relevance[label][row]
        order = np.argsort(-relevance, kind="stable")
        evidence = tuple(Evidence(kb.classes[label].descriptions[int(chosen[j])], float(relevance[j])) for j in order)
        probs = prediction.probabilities[row]
        out.append(
            ImageResult(
                image=image,
                label=names[label],
                score=float(probs[label]),
                scores=tuple(float(p) for p in probs),
                text_label=names[int(prediction.text_predictions[row])],
                evidence=evidence,
            )
        )
    return tuple(out)


def classify_pool(
    pool: Pool,
    kb: KnowledgeBase,
    clip: LoadedClip,
    settings: KplSettings = KplSettings(),
    *,
    cache: FeatureCache | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
    encoder: PoolEncoder | None = None,
) -> KplResult:
    """Classify every frame of ``pool`` with ``kb``'s classes. Images that cannot be decoded are
    reported in ``errors`` and left out; an empty pool raises ValueError.

    ``encoder`` encodes the images (``encode_pool``: threads here by default, or a Ray cluster);
    the proxies are always learned here, from the whole pool at once, as KPL needs.
    """
    t0 = time.perf_counter()
    encoded = encode_pool(
        pool, clip, cache=cache, batch_size=settings.batch_size, progress=progress, cancel=cancel, encoder=encoder
    )
    if not encoded.kept:
        raise ValueError("no image in the pool could be read")
    t1 = time.perf_counter()
    report(progress, "knowledge", 0, 1)
    blocks, warnings = description_features(kb, clip, settings.template, cache=cache, cancel=cancel)
    report(progress, "knowledge", 1, 1)
    check_cancel(cancel)
    t2 = time.perf_counter()
    prediction = kpl_predict(
        encoded.features,
        blocks,
        settings.k,
        method=settings.method,  # type: ignore[arg-type]
        params=settings.params,
        progress=progress,
        cancel=cancel,
    )
    t3 = time.perf_counter()
    kept_images = [pool.images[i] for i in encoded.kept]
    selected = tuple(
        tuple(c.descriptions[int(j)] for j in idx) for c, idx in zip(kb.classes, prediction.selected, strict=True)
    )
    return KplResult(
        classes=kb.class_names,
        images=assemble(prediction, kept_images, kb),
        method=prediction.method,
        transductive=prediction.transductive,
        note=prediction.note,
        knowledge=kb.name,
        model=str(clip.spec),
        settings={**prediction.params, "template": settings.template, "proxy_iterations": prediction.proxy_iterations},
        selected=selected,
        errors=tuple(pool.errors) + encoded.errors,
        warnings=tuple(warnings),
        cache_hits=encoded.cache_hits,
        cache_misses=encoded.cache_misses,
        timings={"images": t1 - t0, "knowledge": t2 - t1, "proxies": t3 - t2},
    )
