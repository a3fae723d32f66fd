"""``kpl_predict``: KPL on features alone, the one entry point the CLI and the GUI go through.

No model, no files: image features and description features in, labels and evidence out, so it
can be tested on synthetic features and reused on cached ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from engine.kpl.progress import CancelFlag, ProgressFn, check_cancel
from engine.kpl.proxies import learn_proxies, sinkhorn, stable_greenkhorn, text_proxies

Method = Literal["kpl", "text", "inmap"]
METHODS: tuple[str, ...] = ("kpl", "text", "inmap")
METHOD_TITLES = {
    "kpl": "KPL (knowledge text proxies + StableGreenkhorn + multimodal proxy learning)",
    "text": "Text proxy (top-k description ensemble, no pool learning)",
    "inmap": "InMaP-style (knowledge text proxies + balanced Sinkhorn + proxy learning)",
}


@dataclass(frozen=True)
class ProxyParams:
    """Hyper-parameters of pseudo-labelling and proxy learning (defaults: the authors' Main.py)."""

    tau_text: float = 0.01  # temperature of the text logits for pseudo-labels and transport
    tau_image: float = 0.04  # temperature of the proxy softmax
    alpha: float = 0.6  # rows of the plan above this become one-hot
    lr: float = 10.0  # halved whenever the gradient norm grows
    iterations: int = 2000  # proxy-learning steps
    ot_iterations: int = 20  # transport updates
    stop_early: bool = True  # stop at an exact fixed point (same result, see learn_proxies)

    def __post_init__(self) -> None:
        for name in ("tau_text", "tau_image", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.iterations < 0 or self.ot_iterations < 0:
            raise ValueError("iteration counts must not be negative")


@dataclass(frozen=True)
class KplPrediction:
    """Plain-data result of ``kpl_predict`` (numpy arrays, safe to hand to another thread).

    ``scores`` are cosines to the final proxies (n, C); ``probabilities`` their softmax at the
    method's temperature. ``selected[c]`` are the indices of class c's chosen descriptions, best
    first, and ``relevance[c]`` (n, k_c) each image's cosine to them.
    """

    predictions: np.ndarray
    text_predictions: np.ndarray
    scores: np.ndarray
    probabilities: np.ndarray
    text_scores: np.ndarray
    selected: tuple[np.ndarray, ...]
    relevance: tuple[np.ndarray, ...]
    method: str  # method actually applied ("text" for a single image whatever was asked)
    transductive: bool
    note: str
    proxy_iterations: int
    params: dict

    @property
    def n_images(self) -> int:
        return int(self.predictions.shape[0])


def _as_features(value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """Features as the authors hold them after extraction: float32, contiguous, not re-normalised
    (a second normalisation changes last bits, and KPL's halving rule reacts to last bits)."""
    tensor = value.detach() if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {tuple(tensor.shape)}")
    return tensor.float().contiguous()


def _check_unit_rows(tensor: torch.Tensor, name: str) -> None:
    norms = torch.linalg.vector_norm(tensor, dim=1)
    if not bool(((norms - 1).abs() <= 1e-2).all()):  # loose: fp16-normalised features are off by ~5e-4
        raise ValueError(f"{name} must be L2-normalised rows (as encode_pool and encode_texts return them)")


def kpl_predict(
    image_features: torch.Tensor | np.ndarray,
    description_features: Sequence[torch.Tensor | np.ndarray],
    k: int = 8,
    *,
    method: Method = "kpl",
    params: ProxyParams = ProxyParams(),
    progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
) -> KplPrediction:
    """Classify a pool of image features with knowledge descriptions.

    ``image_features`` (n, d); ``description_features`` one (m_c, d) block per class in class
    order, L2-normalised as the encoders return them (checked, not re-normalised: see
    ``_as_features``). With one image nothing can be learned from the pool, so
    the description-ensemble text proxy decides and the result says so.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(description_features) < 2:
        raise ValueError("need descriptions for at least two classes")
    with torch.inference_mode():
        x = _as_features(image_features, "image_features")
        blocks = [
            _as_features(b, f"description_features[{c}]").to(x.device) for c, b in enumerate(description_features)
        ]
        if any(b.shape[1] != x.shape[1] for b in blocks):
            raise ValueError("image and description features have different dimensions")
        _check_unit_rows(x, "image_features")
        for c, block in enumerate(blocks):
            _check_unit_rows(block, f"description_features[{c}]")
        check_cancel(cancel)
        proxies_t, selected = text_proxies(x, blocks, k)
        text_scores = x @ proxies_t
        n = x.shape[0]
        note = ""
        applied = method
        if method != "text" and n < 2:
            applied = "text"
            note = "single image: KPL needs a pool of images, so the description-ensemble text proxy decided"
        elif method != "text" and n < 2 * len(blocks):
            note = (
                f"small pool ({n} images, {len(blocks)} classes): KPL spreads the pool evenly over the classes,"
                " so results on small or one-sided pools are unreliable"
            )
        iterations = 0
        if applied == "text":
            scores, tau = text_scores, params.tau_text
        else:
            transport = stable_greenkhorn if applied == "kpl" else sinkhorn
            plan = transport(text_scores, tau=params.tau_text, iterations=params.ot_iterations)
            check_cancel(cancel)
            run = learn_proxies(
                x,
                proxies_t,
                plan,
                tau=params.tau_image,
                lr=params.lr,
                iterations=params.iterations,
                alpha=params.alpha,
                stop_early=params.stop_early,
                progress=progress,
                cancel=cancel,
            )
            iterations = run.iterations
            scores, tau = x @ run.proxies, params.tau_image
        relevance = tuple((x @ block[idx].T).cpu().numpy() for block, idx in zip(blocks, selected, strict=True))
        return KplPrediction(
            predictions=scores.argmax(1).cpu().numpy(),
            text_predictions=text_scores.argmax(1).cpu().numpy(),
            scores=scores.cpu().numpy(),
            probabilities=torch.softmax(scores / tau, 1).cpu().numpy(),
            text_scores=text_scores.cpu().numpy(),
            selected=tuple(idx.cpu().numpy() for idx in selected),
            relevance=relevance,
            method=applied,
            transductive=applied != "text",
            note=note,
            proxy_iterations=iterations,
            params={"k": k, "method": method, **asdict(params)},
        )
