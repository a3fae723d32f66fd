"""KPL: training-free zero-shot classification of an image pool with retrieved knowledge.

Knowledge bases (``knowledge``), the open_clip backend and its feature cache (``clip``,
``cache``), image pools (``images``), the math on features (``proxies``, ``predict``), and the
pipeline the CLI and the GUI worker call (``classify``, ``evaluate``). Nothing here imports Qt.
"""

from typing import TYPE_CHECKING

from engine.kpl.knowledge import (
    DEFAULT_TEMPLATE,
    KnowledgeBase,
    KnowledgeClass,
    KnowledgeError,
    available_knowledge,
    load_knowledge,
    parse_knowledge,
    resolve_knowledge,
    save_knowledge,
)
from engine.kpl.progress import (
    CancelFlag,
    Cancelled,
    ProgressFn,
)
from engine.lazy import lazy_attributes

# Knowledge bases and progress are light; everything else imports torch/open_clip (seconds),
# so it loads on first use (PEP 562): the GUI lists knowledge bases without paying for torch.
_LAZY = {
    "engine.kpl.cache": ("FeatureCache",),
    "engine.kpl.classify": (
        "Evidence",
        "ImageResult",
        "KplResult",
        "KplSettings",
        "classify_pool",
        "description_features",
    ),
    "engine.kpl.clip": (
        "ClipLoadError",
        "ClipSpec",
        "ClipSpecError",
        "ClipWeightsMissing",
        "LoadedClip",
        "encode_image_batch",
        "encode_texts",
        "load_clip",
    ),
    "engine.kpl.evaluate": ("EvalReport", "evaluate_folder"),
    "engine.kpl.images": ("EncodedPool", "Pool", "PoolImage", "encode_pool"),
    "engine.kpl.predict": (
        "METHOD_TITLES",
        "METHODS",
        "KplPrediction",
        "Method",
        "ProxyParams",
        "kpl_predict",
    ),
}

if TYPE_CHECKING:
    from engine.kpl.cache import FeatureCache
    from engine.kpl.classify import (
        Evidence,
        ImageResult,
        KplResult,
        KplSettings,
        classify_pool,
        description_features,
    )
    from engine.kpl.clip import (
        ClipLoadError,
        ClipSpec,
        ClipSpecError,
        ClipWeightsMissing,
        LoadedClip,
        encode_image_batch,
        encode_texts,
        load_clip,
    )
    from engine.kpl.evaluate import EvalReport, evaluate_folder
    from engine.kpl.images import EncodedPool, Pool, PoolImage, encode_pool
    from engine.kpl.predict import METHOD_TITLES, METHODS, KplPrediction, Method, ProxyParams, kpl_predict


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "DEFAULT_TEMPLATE",
    "METHODS",
    "METHOD_TITLES",
    "CancelFlag",
    "Cancelled",
    "ClipLoadError",
    "ClipSpec",
    "ClipSpecError",
    "ClipWeightsMissing",
    "EncodedPool",
    "EvalReport",
    "Evidence",
    "FeatureCache",
    "ImageResult",
    "KnowledgeBase",
    "KnowledgeClass",
    "KnowledgeError",
    "KplPrediction",
    "KplResult",
    "KplSettings",
    "LoadedClip",
    "Method",
    "Pool",
    "PoolImage",
    "ProgressFn",
    "ProxyParams",
    "available_knowledge",
    "classify_pool",
    "description_features",
    "encode_image_batch",
    "encode_pool",
    "encode_texts",
    "evaluate_folder",
    "kpl_predict",
    "load_clip",
    "load_knowledge",
    "parse_knowledge",
    "resolve_knowledge",
    "save_knowledge",
]
