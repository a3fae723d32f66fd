"""The numerical core of KPL: text proxies, transport pseudo-labels and proxy learning.

Everything here is a port of the authors' code (JXLiu-AI/KPL ``Main.py``, itself a fork of
InMaP, Apache-2.0) that keeps their torch operations, their operation order and their dtype
(float32 after feature extraction): ``torch.matmul(normalize(X), T.T)`` for relevance,
``X.T @ P`` for the targets, ``X.T @ softmax(X W / tau)`` for the gradient, ``torch.norm`` for
the halving rule, in-place ``-=``/``+=`` updates in StableGreenkhorn. Float arithmetic is not
associative and the lr-halving rule reacts to the last bit of ||G||, so any reordering (even
an algebraically equal one such as (S^T X)^T for X^T S) makes the trajectory fork on some
CPU/BLAS kernels. With the same operations, a straight port of the authors' loop and this
module give the same bits on any machine, thread count or BLAS (docs/development/portability.md).

Speed comes only from work that is provably exact to skip: the early stop of ``learn_proxies``
(the loop state provably cycles) and not recomputing identical values (one ``exp`` per
Greenkhorn step, one normalisation of the pool for all classes).

The "StableGreenkhorn" quirk described in docs/user-guide/kpl.md (Methods) is reproduced on purpose: its rows sum to
1/n, so the confidence sharpening never fires and proxy learning becomes an implicit class
balancing. That quirk is what produced the published numbers; the usual Sinkhorn is offered
separately as ``sinkhorn`` (the InMaP method).

Conventions: ``X`` is (n, d) image features, description blocks are (m_c, d), proxies are
returned as (d, C) with unit columns (the authors' layout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.kpl.progress import CancelFlag, ProgressFn, check_cancel, report


def select_descriptions(image_features: torch.Tensor, descriptions: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` descriptions with the highest mean cosine to *all* pool images.

    The mean runs over the whole pool (every class), exactly as the authors do: retrieval picks
    what this kind of image shows, not what one predicted class shows. Best first.
    ``image_features`` must already be re-normalised as the authors do (``text_proxies`` does).
    """
    relevance = torch.matmul(image_features, descriptions.to(torch.float32).T).mean(dim=0)
    return torch.topk(relevance, min(k, relevance.size(0))).indices


def text_proxies(
    image_features: torch.Tensor, description_features: Sequence[torch.Tensor], k: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Knowledge-enhanced text proxies (d, C) and the selected description indices per class.

    Each proxy is the re-normalised unweighted mean of its class's top-k descriptions. As in the
    authors' ``zeroshot_classifier``, relevance is measured against the pool normalised once more
    (``F.normalize(image_features, dim=-1)``), computed once for all classes.
    """
    pool = F.normalize(image_features, dim=-1)
    proxies, selected = [], []
    for block in description_features:
        idx = select_descriptions(pool, block, k)
        proxies.append(F.normalize(block[idx].mean(dim=0), dim=0))
        selected.append(idx)
    return torch.stack(proxies, dim=1).float(), selected


def stable_greenkhorn(logits: torch.Tensor, tau: float = 0.01, iterations: int = 20) -> torch.Tensor:
    """The authors' "StableGreenkhorn" transport plan for (n, C) cosine logits.

    Greedy: each step rescales only the single row or column whose marginal is furthest from its
    target (columns 1/C, rows 1/n; the column wins only on a strict ">", first index on ties).
    There is deliberately no final rescale, so the plan's rows sum to about 1/n (see module doc).
    The authors take ``exp(log_P)`` twice per step; it is the same tensor, so it is taken once.
    """
    n, c = logits.shape
    log_plan = logits / tau
    log_plan -= torch.logsumexp(log_plan, dim=1, keepdim=True)
    col_target = torch.ones(c, dtype=log_plan.dtype, device=log_plan.device) / c
    row_target = torch.ones(n, dtype=log_plan.dtype, device=log_plan.device) / n
    for _ in range(iterations):
        plan = torch.exp(log_plan)
        col_viol = torch.abs(torch.sum(plan, dim=0) - col_target)
        row_viol = torch.abs(torch.sum(plan, dim=1) - row_target)
        if torch.max(col_viol) > torch.max(row_viol):
            j = torch.argmax(col_viol)
            log_plan[:, j] -= torch.logsumexp(log_plan[:, j], dim=0, keepdim=True)
            log_plan[:, j] += torch.log(col_target[j])
        else:
            i = torch.argmax(row_viol)
            log_plan[i, :] -= torch.logsumexp(log_plan[i, :], dim=0, keepdim=True)
            log_plan[i, :] += torch.log(row_target[i])
    return torch.exp(log_plan)


def sinkhorn(logits: torch.Tensor, tau: float = 0.01, iterations: int = 20) -> torch.Tensor:
    """InMaP's balanced Sinkhorn: alternate column (1/C) and row (1/n) scaling, then rows to 1.

    Unlike ``stable_greenkhorn`` the result is row-stochastic, so confident rows get sharpened.
    The authors' operations in their order (``sinkhorn`` in Main.py, gamma = 0).
    """
    n, c = logits.shape
    plan = F.softmax(logits / tau, dim=1)
    plan /= n
    for _ in range(iterations):
        plan /= torch.sum(plan, dim=0, keepdim=True)
        plan /= c
        plan /= torch.sum(plan, dim=1, keepdim=True)
        plan /= n
    plan *= n
    return plan


def sharpen(plan: torch.Tensor, alpha: float) -> torch.Tensor:
    """Rows whose largest entry exceeds ``alpha`` become one-hot (InMaP's confidence step)."""
    plan = plan.clone()
    top, arg = torch.max(plan, dim=1)
    confident = top > alpha
    plan[confident, :] = 0
    plan[confident, arg[confident]] = 1
    return plan


@dataclass(frozen=True)
class ProxyRun:
    """Learned proxies (d, C) and how the run went (for logs, tests and the bench)."""

    proxies: torch.Tensor
    iterations: int  # iterations actually computed
    halvings: int
    final_lr: float
    period: int  # 0: ran to the end; 1: stopped at a fixed point; p > 1: stopped on a p-cycle


@dataclass(frozen=True)
class _State:
    proxies: torch.Tensor
    lr: float
    norm: float  # ||G|| of the step that produced this state (the next step compares with it)
    frozen: bool  # that step's subtraction left the proxies bit for bit unchanged


_MAX_PERIOD = 8


def learn_proxies(
    image_features: torch.Tensor,
    initial_proxies: torch.Tensor,
    plan: torch.Tensor,
    *,
    tau: float = 0.04,
    lr: float = 10.0,
    iterations: int = 2000,
    alpha: float = 0.6,
    stop_early: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
) -> ProxyRun:
    """InMaP's projected gradient descent of the proxies towards the transport targets.

    The authors' ``image_opt``, operation for operation: S = softmax(X @ W / tau),
    G = X.T @ S - X.T @ P, lr halves whenever torch.norm(G) rose, W <- normalize(W - lr / (n tau)
    * G, dim=0). Nothing is reordered (see the module doc), so the result equals a straight port
    of their loop bit for bit on whatever machine both run.

    ``stop_early`` stops once the proxies provably only cycle for the rest of the run, and
    returns exactly what the full run ends with (proxies, lr, halvings). The step map is
    deterministic, so W_t == W_(t-p) cycles forever with period p when either
    - lr and the last ||G|| also repeat (the whole loop state repeats; p = 1 is a fixed point), or
    - each of the last p subtractions W - step G left W bit for bit unchanged: G depends on W
      only, so it repeats with W; the step only shrinks from here (lr never grows) and rounding
      is monotone, so every later subtraction is a no-op too and W just cycles through
      re-normalisations, whatever lr does meanwhile.
    The lr of the skipped iterations is replayed from the cycle's ||G|| values. Which of these
    happens, and when, depends on the machine's last bits; that the result equals the full run
    does not. ``stop_early=False`` runs every iteration.
    """
    feat = image_features.contiguous()
    n = feat.shape[0]
    base = feat.T @ sharpen(plan, alpha)
    proxies = initial_proxies.clone()
    halvings = 0
    history = [_State(proxies, lr, math.inf, False)]  # the last states s_(t-k) .. s_t
    report_every = max(1, iterations // 100)
    for it in range(iterations):
        if it % report_every == 0:
            check_cancel(cancel)
            report(progress, "proxies", it, iterations)
        prob = F.softmax(feat @ proxies / tau, dim=1)
        grad = feat.T @ prob - base
        norm = float(torch.norm(grad))  # float32 -> float is exact: the same comparison as theirs
        if norm > history[-1].norm:
            lr /= 2.0
            halvings += 1
        moved = proxies - (lr / (n * tau)) * grad  # their in-place ``-=``, same kernel and values
        frozen = stop_early and torch.equal(moved, proxies)
        proxies = F.normalize(moved, dim=0)
        if not stop_early:
            history[-1] = _State(proxies, lr, norm, False)
            continue
        state = _State(proxies, lr, norm, frozen)
        period = _cycle(history, state)
        if period:
            report(progress, "proxies", iterations, iterations)
            return _finish(history, state, period, it + 1, iterations, halvings)
        history.append(state)
        del history[:-_MAX_PERIOD]
    report(progress, "proxies", iterations, iterations)
    return ProxyRun(proxies=proxies, iterations=iterations, halvings=halvings, final_lr=lr, period=0)


def _cycle(history: list[_State], state: _State) -> int:
    """The period p with s_t's proxies equal to s_(t-p)'s and a proof the cycle lasts; else 0."""
    for period in range(1, len(history) + 1):
        old = history[-period]
        if not torch.equal(old.proxies, state.proxies):
            continue
        repeats = old.lr == state.lr and old.norm == state.norm
        frozen = state.frozen and all(s.frozen for s in history[len(history) - period + 1 :])
        if repeats or frozen:
            return period
    return 0


def _finish(history: list[_State], state: _State, period: int, done: int, total: int, halvings: int) -> ProxyRun:
    """The end state of a run that cycles with ``period`` from step ``done`` on."""
    cycle = [*history[len(history) - period + 1 :], state]  # s_(t-p+1) .. s_t
    offset = (total - done) % period
    proxies = state.proxies if offset == 0 else cycle[offset - 1].proxies
    lr, previous = state.lr, state.norm
    for j in range(total - done):  # replay the halving rule on the cycle's gradient norms
        norm = cycle[j % period].norm
        if norm > previous:
            lr /= 2
            halvings += 1
        previous = norm
    return ProxyRun(proxies=proxies, iterations=done, halvings=halvings, final_lr=lr, period=period)
