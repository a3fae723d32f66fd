"""A straight port of the authors' KPL math (JXLiu-AI/KPL ``Main.py``: ``zeroshot_classifier``
from features on, ``StableGreenkhorn``, ``sinkhorn``, ``image_opt``), the reference the engine
must equal bit for bit on whatever machine both run (tests/engine/test_kpl_math.py,
bench/bench_kpl.py).

Written the authors' way on purpose: the same torch calls in the same order, in-place updates
where they update in place, no early stop, no reuse. Only the interfaces differ: features come
in as tensors (no CLIP, no CUDA), the caller's plan is not modified, and the number of lr
halvings is returned for the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def authors_text_proxies(
    image_features: torch.Tensor, class_embeddings: Sequence[torch.Tensor], k: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``zeroshot_classifier`` after the text encoder: (d, C) proxies and each class's top-k."""
    image_feat = F.normalize(image_features, dim=-1)
    zeroshot_weights, selected = [], []
    for embeddings in class_embeddings:
        cos_sim = torch.matmul(image_feat, embeddings.to(torch.float32).T)
        mean_cos_sim = cos_sim.mean(dim=0)
        k_c = min(k, mean_cos_sim.size(0))
        _, top_k_indices = torch.topk(mean_cos_sim, k_c)
        class_embedding = embeddings[top_k_indices].mean(dim=0)
        class_embedding = F.normalize(class_embedding, dim=0)
        zeroshot_weights.append(class_embedding)
        selected.append(top_k_indices)
    return torch.stack(zeroshot_weights, dim=1).float(), selected


def authors_stable_greenkhorn(m: torch.Tensor, tau_t: float = 0.01, iters: int = 20) -> torch.Tensor:
    row, col = m.shape
    log_p = m / tau_t
    log_p -= torch.logsumexp(log_p, dim=1, keepdim=True)
    q = torch.ones(col, dtype=log_p.dtype, device=log_p.device) / col
    r = torch.ones(row, dtype=log_p.dtype, device=log_p.device) / row
    for _ in range(iters):
        col_violation = torch.abs(torch.sum(torch.exp(log_p), dim=0) - q)
        row_violation = torch.abs(torch.sum(torch.exp(log_p), dim=1) - r)
        if torch.max(col_violation) > torch.max(row_violation):
            j = torch.argmax(col_violation)
            log_p[:, j] -= torch.logsumexp(log_p[:, j], dim=0, keepdim=True)
            log_p[:, j] += torch.log(q[j])
        else:
            i = torch.argmax(row_violation)
            log_p[i, :] -= torch.logsumexp(log_p[i, :], dim=0, keepdim=True)
            log_p[i, :] += torch.log(r[i])
    return torch.exp(log_p)


def authors_sinkhorn(m: torch.Tensor, tau_t: float = 0.01, iters: int = 20) -> torch.Tensor:
    row, col = m.shape
    p = F.softmax(m / tau_t, dim=1)
    p /= row
    for _ in range(iters):
        p /= torch.sum(p, dim=0, keepdim=True)
        p /= col
        p /= torch.sum(p, dim=1, keepdim=True)
        p /= row
    p *= row
    return p


def authors_image_opt(
    feat: torch.Tensor,
    init_classifier: torch.Tensor,
    plabel: torch.Tensor,
    lr: float = 10.0,
    iters: int = 2000,
    tau_i: float = 0.04,
    alpha: float = 0.6,
) -> tuple[torch.Tensor, int]:
    """``image_opt``: the proxies after ``iters`` steps and how often lr was halved."""
    plabel = plabel.clone()  # theirs sharpens the caller's tensor in place
    ins, _ = feat.shape
    val, idx = torch.max(plabel, dim=1)
    mask = val > alpha
    plabel[mask, :] = 0
    plabel[mask, idx[mask]] = 1
    base = feat.T @ plabel
    classifier = init_classifier.clone()
    pre_norm = float("inf")
    halvings = 0
    for _ in range(iters):
        prob = F.softmax(feat @ classifier / tau_i, dim=1)
        grad = feat.T @ prob - base
        temp = torch.norm(grad)
        if temp > pre_norm:
            lr /= 2.0
            halvings += 1
        pre_norm = temp
        classifier -= (lr / (ins * tau_i)) * grad
        classifier = F.normalize(classifier, dim=0)
    return classifier, halvings


def authors_kpl(
    image_feat: torch.Tensor, class_embeddings: Sequence[torch.Tensor], k: int = 8
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Main.py's "image proxy + sinkhorn" labels and the selected descriptions per class."""
    text_classifier, selected = authors_text_proxies(image_feat, class_embeddings, k)
    logits_t = image_feat @ text_classifier
    plabel = authors_stable_greenkhorn(logits_t, 0.01, 20)
    image_classifier, _ = authors_image_opt(image_feat, text_classifier, plabel)
    return (image_feat @ image_classifier).argmax(1), selected
