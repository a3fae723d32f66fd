"""KPL math on synthetic features, checked against a plain port of the authors' loop written here.

The reference functions below are deliberately naive (the authors' torch loops, numpy for the
balanced Sinkhorn); bench/bench_kpl.py times the engine against them.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.kpl import Cancelled, ProxyParams, kpl_predict
from engine.kpl.proxies import learn_proxies, sharpen, sinkhorn, stable_greenkhorn, text_proxies

# ----------------------------------------------------------------------------- reference port


def reference_text_proxies(x: torch.Tensor, blocks: list[torch.Tensor], k: int) -> torch.Tensor:
    columns = []
    for t in blocks:
        relevance = (x @ t.T).mean(0)
        idx = relevance.topk(min(k, len(relevance))).indices
        columns.append(F.normalize(t[idx].mean(0), dim=0))
    return torch.stack(columns, 1)


def reference_stable_greenkhorn(m: torch.Tensor, tau: float = 0.01, iters: int = 20) -> torch.Tensor:
    n, c = m.shape
    log_p = m / tau
    log_p = log_p - log_p.logsumexp(1, keepdim=True)
    q, r = m.new_full((c,), 1 / c), m.new_full((n,), 1 / n)
    for _ in range(iters):
        p = log_p.exp()
        col, row = (p.sum(0) - q).abs(), (p.sum(1) - r).abs()
        if col.max() > row.max():
            j = col.argmax()
            log_p[:, j] += q[j].log() - log_p[:, j].logsumexp(0)
        else:
            i = row.argmax()
            log_p[i, :] += r[i].log() - log_p[i, :].logsumexp(0)
    return log_p.exp()


def reference_sinkhorn(m: np.ndarray, tau: float = 0.01, iters: int = 20) -> np.ndarray:
    n, c = m.shape
    z = m.astype(np.float64) / tau
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True) * n
    for _ in range(iters):
        p /= p.sum(0, keepdims=True) * c
        p /= p.sum(1, keepdims=True) * n
    return p * n


def reference_proxy_opt(x, w0, p, lr=10.0, iters=2000, tau=0.04, alpha=0.6):
    """The authors' image_opt loop, line for line (returns proxies and the number of halvings)."""
    p = p.clone()
    v, a = p.max(1)
    m = v > alpha
    p[m] = 0
    p[m, a[m]] = 1
    b, w, prev, n, halvings = x.T @ p, w0.clone(), float("inf"), x.shape[0], 0
    for _ in range(iters):
        g = x.T @ torch.softmax(x @ w / tau, 1) - b
        norm = g.norm()
        if norm > prev:
            lr /= 2
            halvings += 1
        prev = norm
        w = F.normalize(w - lr / (n * tau) * g, dim=0)
    return w, halvings


def reference_kpl_labels(x: torch.Tensor, w_text: torch.Tensor) -> torch.Tensor:
    plan = reference_stable_greenkhorn(x @ w_text)
    w, _ = reference_proxy_opt(x, w_text, plan)
    return (x @ w).argmax(1)


# ----------------------------------------------------------------------------- synthetic pools


def collapsed_pool(n=662, c=2, d=256, seed=0, signal=0.1, class_noise=0.1, bias=0.3):
    """CLIP-like pool: all images near one mean direction, a weak class signal, and text proxies
    biased so that almost every image goes to class 0 (the binary medical failure mode)."""
    g = torch.Generator().manual_seed(seed)
    mean = F.normalize(torch.randn(d, generator=g), dim=0)
    classes = F.normalize(torch.randn(c, d, generator=g), dim=1)
    y = torch.randint(0, c, (n,), generator=g)
    coef = signal * F.one_hot(y, c).float() + class_noise * torch.randn(n, c, generator=g)
    x = F.normalize(mean + coef @ classes + 0.5 * torch.randn(n, d, generator=g) / d**0.5, dim=1)
    offset = F.normalize(torch.randn(d, generator=g), dim=0)
    boost = torch.ones(c)
    boost[0] += bias
    w_text = F.normalize(boost[None, :] * mean[:, None] + offset[:, None] + 0.2 * classes.T, dim=0)
    return x.contiguous(), w_text.contiguous(), y


def descriptions_around(w_text: torch.Tensor, m: int, seed: int, spread: float = 0.05) -> list[torch.Tensor]:
    """m noisy descriptions per class scattered around each text proxy."""
    g = torch.Generator().manual_seed(seed)
    d, c = w_text.shape
    return [F.normalize(w_text[:, j] + spread * torch.randn(m, d, generator=g), dim=1) for j in range(c)]


# ----------------------------------------------------------------------------- tests


def test_text_proxies_match_reference_and_pick_pool_relevant_descriptions():
    g = torch.Generator().manual_seed(1)
    x = F.normalize(torch.randn(40, 16, generator=g), dim=1)
    blocks = [F.normalize(torch.randn(m, 16, generator=g), dim=1) for m in (12, 5, 9)]
    proxies, selected = text_proxies(x, blocks, k=6)
    torch.testing.assert_close(proxies, reference_text_proxies(x, blocks, 6), rtol=0, atol=1e-6)
    assert [len(s) for s in selected] == [6, 5, 6]  # k is capped by the class's description count
    mean_relevance = (x @ blocks[0].T).mean(0)
    assert set(selected[0].tolist()) == set(mean_relevance.argsort(descending=True)[:6].tolist())
    assert torch.allclose(proxies.norm(dim=0), torch.ones(3))


def test_stable_greenkhorn_matches_reference():
    g = torch.Generator().manual_seed(2)
    logits = 0.2 + 0.05 * torch.randn(120, 4, generator=g)
    ours = stable_greenkhorn(logits, tau=0.01, iterations=20)
    torch.testing.assert_close(ours, reference_stable_greenkhorn(logits), rtol=1e-5, atol=1e-9)


def test_stable_greenkhorn_keeps_the_authors_mass_quirk():
    g = torch.Generator().manual_seed(3)
    logits = 0.25 + 0.03 * torch.randn(300, 4, generator=g)
    columns_only = stable_greenkhorn(logits, iterations=4)  # first C greedy steps fix the C columns
    torch.testing.assert_close(columns_only.sum(0), torch.full((4,), 0.25), rtol=1e-5, atol=0)
    plan = stable_greenkhorn(logits)
    assert plan.sum().item() == pytest.approx(1.0, rel=1e-2)  # total mass 1, rows about 1/n, not 1
    assert plan.sum(1).max().item() < 10 / 300
    assert torch.equal(sharpen(plan, 0.6), plan)  # so the alpha one-hot step never fires


def test_sinkhorn_matches_reference_and_is_row_stochastic():
    g = torch.Generator().manual_seed(4)
    logits = 0.2 + 0.05 * torch.randn(90, 3, generator=g)
    plan = sinkhorn(logits)
    np.testing.assert_allclose(plan.double().numpy(), reference_sinkhorn(logits.numpy()), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(plan.sum(1), torch.ones(90), rtol=0, atol=1e-5)
    assert (sharpen(plan, 0.6).max(1).values == 1).sum() > 0  # confident rows do get sharpened


def test_learn_proxies_follows_the_authors_loop_and_halving_rule():
    x, w_text, _ = collapsed_pool(n=300, c=3, d=128, seed=5)
    plan = stable_greenkhorn(x @ w_text)
    ref_w, ref_halvings = reference_proxy_opt(x, w_text, plan)
    run = learn_proxies(x, w_text, plan, stop_early=False)
    assert run.iterations == 2000
    assert run.halvings == ref_halvings > 0
    assert run.final_lr == pytest.approx(10.0 / 2**ref_halvings)
    torch.testing.assert_close(run.proxies, ref_w, rtol=0, atol=1e-6)
    assert torch.equal((x @ run.proxies).argmax(1), (x @ ref_w).argmax(1))


@pytest.mark.parametrize(
    ("n", "c", "seed", "period", "min_halvings"),
    [
        (400, 2, 6, 1, 0),  # a fixed point
        (300, 3, 3, 2, 0),  # the whole loop state repeats every 2 steps
        (400, 2, 7, 2, 900),  # updates below float precision: W cycles while lr keeps halving
    ],
)
def test_stopping_on_a_provable_cycle_changes_nothing(n, c, seed, period, min_halvings):
    x, w_text, _ = collapsed_pool(n=n, c=c, d=128, seed=seed)
    plan = stable_greenkhorn(x @ w_text)
    full = learn_proxies(x, w_text, plan, stop_early=False)
    early = learn_proxies(x, w_text, plan)
    assert early.period == period and full.period == 0
    assert early.iterations < 500
    assert torch.equal(early.proxies, full.proxies)
    assert early.halvings == full.halvings >= min_halvings
    assert early.final_lr == full.final_lr
    ref_w, ref_halvings = reference_proxy_opt(x, w_text, plan)
    assert ref_halvings == full.halvings
    assert torch.equal((x @ early.proxies).argmax(1), (x @ ref_w).argmax(1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kpl_beats_collapsed_text_proxies_by_a_wide_margin(seed):
    x, w_text, y = collapsed_pool(seed=seed)
    blocks = descriptions_around(w_text, m=20, seed=seed, spread=0.0)  # ensemble == w_text
    result = kpl_predict(x, blocks, k=8)
    text_acc = (torch.from_numpy(result.text_predictions) == y).float().mean().item()
    kpl_acc = (torch.from_numpy(result.predictions) == y).float().mean().item()
    majority = max((y == c).float().mean().item() for c in range(2))
    assert text_acc <= majority + 0.05  # the text proxy sends (almost) everything to one class
    assert kpl_acc >= text_acc + 0.15
    assert kpl_acc >= 0.7
    assert torch.equal(torch.from_numpy(result.predictions), reference_kpl_labels(x, w_text))


def test_kpl_predict_reports_scores_and_evidence_consistently():
    x, w_text, _ = collapsed_pool(n=80, c=3, d=64, seed=7, signal=0.3)
    blocks = descriptions_around(w_text, m=10, seed=7, spread=0.3)
    result = kpl_predict(x.numpy(), [b.numpy() for b in blocks], k=4, params=ProxyParams(iterations=300))
    assert result.method == "kpl" and result.transductive and result.note == ""
    assert result.scores.shape == result.probabilities.shape == result.text_scores.shape == (80, 3)
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, rtol=1e-5)
    assert np.array_equal(result.predictions, result.scores.argmax(1))
    assert np.array_equal(result.text_predictions, result.text_scores.argmax(1))
    for c, (idx, rel) in enumerate(zip(result.selected, result.relevance)):
        assert idx.shape == (4,) and rel.shape == (80, 4)
        np.testing.assert_allclose(rel, (x @ blocks[c][torch.from_numpy(idx)].T).numpy(), atol=1e-5)
        pool_mean = rel.mean(0)
        assert np.all(np.diff(pool_mean) <= 1e-7)  # best first
    assert 0 < result.proxy_iterations <= 300
    assert result.params["k"] == 4 and result.params["iterations"] == 300


def test_text_and_inmap_methods():
    x, w_text, y = collapsed_pool(n=200, c=2, seed=8)
    blocks = descriptions_around(w_text, m=8, seed=8, spread=0.0)
    text = kpl_predict(x, blocks, method="text")
    assert text.method == "text" and not text.transductive and text.proxy_iterations == 0
    assert np.array_equal(text.predictions, text.text_predictions)
    inmap = kpl_predict(x, blocks, method="inmap")
    assert inmap.method == "inmap" and inmap.proxy_iterations > 0
    inmap_acc = (torch.from_numpy(inmap.predictions) == y).float().mean().item()
    text_acc = (torch.from_numpy(text.predictions) == y).float().mean().item()
    assert inmap_acc > text_acc + 0.1


def test_a_single_image_falls_back_to_the_text_proxy_and_says_so():
    x, w_text, _ = collapsed_pool(n=5, c=2, d=32, seed=9)
    blocks = descriptions_around(w_text, m=6, seed=9, spread=0.2)
    single = kpl_predict(x[:1], blocks, k=3)
    assert single.method == "text" and not single.transductive
    assert "single image" in single.note
    small = kpl_predict(x[:3], blocks, k=3)
    assert small.method == "kpl" and small.note.startswith("small pool (3 images, 2 classes)")
    assert single.predictions.shape == (1,)
    assert single.predictions[0] == single.text_scores[0].argmax()


def test_kpl_predict_rejects_bad_input():
    x = F.normalize(torch.randn(10, 8), dim=1)
    blocks = [F.normalize(torch.randn(3, 8), dim=1) for _ in range(2)]
    with pytest.raises(ValueError, match="method"):
        kpl_predict(x, blocks, method="magic")
    with pytest.raises(ValueError, match="k must"):
        kpl_predict(x, blocks, k=0)
    with pytest.raises(ValueError, match="two classes"):
        kpl_predict(x, blocks[:1])
    with pytest.raises(ValueError, match="dimensions"):
        kpl_predict(x, [blocks[0], torch.randn(3, 9)])
    with pytest.raises(ValueError, match="2-D"):
        kpl_predict(torch.zeros(0, 8), blocks)
    with pytest.raises(ValueError, match="alpha"):
        ProxyParams(alpha=0)


def test_progress_and_cancel():
    x, w_text, _ = collapsed_pool(n=100, c=2, d=32, seed=10)
    blocks = descriptions_around(w_text, m=6, seed=10, spread=0.1)
    seen: list[tuple[str, int, int]] = []
    kpl_predict(x, blocks, progress=lambda *a: seen.append(a), params=ProxyParams(stop_early=False, iterations=200))
    assert seen[0] == ("proxies", 0, 200) and seen[-1] == ("proxies", 200, 200)
    assert [s[1] for s in seen] == sorted(s[1] for s in seen)

    cancel = threading.Event()

    def cancel_midway(stage, done, total):
        if done >= 50:
            cancel.set()

    with pytest.raises(Cancelled):
        kpl_predict(x, blocks, progress=cancel_midway, cancel=cancel, params=ProxyParams(stop_early=False))
