"""The numerical core of KPL: text proxies, transport pseudo-labels and proxy learning.

Everything here works on L2-normalised float32 features and mirrors the authors' code
(JXLiu-AI/KPL ``Main.py``, itself a fork of InMaP, Apache-2.0) step by step, including the
"StableGreenkhorn" quirk described in docs/user-guide/kpl.md (Methods): its rows sum to 1/n, so the confidence
sharpening never fires and proxy learning becomes an implicit class balancing. That quirk is
what produced the published numbers, so it is reproduced on purpose; the usual Sinkhorn is
offered separately as ``sinkhorn`` (the InMaP method).

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
    """
    relevance = (image_features @ descriptions.T).mean(0)
    return relevance.topk(min(k, descriptions.shape[0])).indices


def text_proxies(
    image_features: torch.Tensor, description_features: Sequence[torch.Tensor], k: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Knowledge-enhanced text proxies (d, C) and the selected description indices per class.

    Each proxy is the re-normalised unweighted mean of its class's top-k descriptions.
    """
    proxies, selected = [], []
    for block in description_features:
        idx = select_descriptions(image_features, block, k)
        proxies.append(F.normalize(block[idx].mean(0), dim=0))
        selected.append(idx)
    return torch.stack(proxies, 1), selected


def stable_greenkhorn(logits: torch.Tensor, tau: float = 0.01, iterations: int = 20) -> torch.Tensor:
    """The authors' "StableGreenkhorn" transport plan for (n, C) cosine logits.

    Greedy: each step rescales only the single row or column whose marginal is furthest from its
    target (columns 1/C, rows 1/n; the column wins only on a strict ">", first index on ties).
    There is deliberately no final rescale, so the plan's rows sum to about 1/n (see module doc).
    """
    n, c = logits.shape
    log_plan = logits / tau
    log_plan = log_plan - log_plan.logsumexp(1, keepdim=True)
    col_target, row_target = 1.0 / c, 1.0 / n
    for _ in range(iterations):
        plan = log_plan.exp()
        col_viol = (plan.sum(0) - col_target).abs()
        row_viol = (plan.sum(1) - row_target).abs()
        if col_viol.max() > row_viol.max():
            j = int(col_viol.argmax())
            log_plan[:, j] += math.log(col_target) - log_plan[:, j].logsumexp(0)
        else:
            i = int(row_viol.argmax())
            log_plan[i, :] += math.log(row_target) - log_plan[i, :].logsumexp(0)
    return log_plan.exp()


def sinkhorn(logits: torch.Tensor, tau: float = 0.01, iterations: int = 20) -> torch.Tensor:
    """InMaP's balanced Sinkhorn: alternate column (1/C) and row (1/n) scaling, then rows to 1.

    Unlike ``stable_greenkhorn`` the result is row-stochastic, so confident rows get sharpened.
    """
    n, c = logits.shape
    plan = torch.softmax(logits / tau, 1) / n
    for _ in range(iterations):
        plan = plan / plan.sum(0, keepdim=True) / c
        plan = plan / plan.sum(1, keepdim=True) / n
    return plan * n


def sharpen(plan: torch.Tensor, alpha: float) -> torch.Tensor:
    """Rows whose largest entry exceeds ``alpha`` become one-hot (InMaP's confidence step)."""
    plan = plan.clone()
    top, arg = plan.max(1)
    confident = top > alpha
    plan[confident] = 0
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

    Per step: S = softmax(X W / tau), G = X^T S - X^T P, lr halves whenever ||G|| rose,
    W <- normalise_columns(W - lr / (n tau) G): the authors' arithmetic, element for element.
    X^T S is computed as (S^T X)^T, which streams X in memory order (about 3x faster on CPU) and
    gives bit-identical values; G is then laid out (d, C) like theirs, because the norm and the
    normalisation sum in memory order and the halving rule reacts to the last bit of ||G||.

    ``stop_early`` stops once the proxies provably only cycle for the rest of the run, and
    returns exactly what the full run ends with (proxies, lr, halvings). The step map is
    deterministic, so W_t == W_(t-p) cycles forever with period p when either
    - lr and the last ||G|| also repeat (the whole loop state repeats; p = 1 is a fixed point), or
    - each of the last p subtractions W - step G left W bit for bit unchanged: the step only
      shrinks from here and rounding is monotone, so every later subtraction is a no-op too and
      W just cycles through re-normalisations (typically a 2-cycle in the last bit), whatever lr
      does meanwhile.
    The authors' loop reaches one of these within a few hundred of its 2000 iterations; the lr
    of the remaining ones is replayed from the cycle's ||G|| values. ``stop_early=False`` runs
    every iteration.
    """
    x = image_features.contiguous()
    n = x.shape[0]
    target = (sharpen(plan, alpha).T @ x).T.contiguous()  # X^T P, (d, C)
    proxies = initial_proxies.contiguous()
    halvings = 0
    history = [_State(proxies, lr, math.inf, False)]  # the last states s_(t-k) .. s_t
    report_every = max(1, iterations // 100)
    for it in range(iterations):
        if it % report_every == 0:
            check_cancel(cancel)
            report(progress, "proxies", it, iterations)
        soft = torch.softmax(x @ proxies / tau, 1)
        grad = (soft.T.contiguous() @ x).T.contiguous() - target
        norm = float(grad.norm())
        if norm > history[-1].norm:
            lr /= 2
            halvings += 1
        moved = proxies - lr / (n * tau) * grad
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
