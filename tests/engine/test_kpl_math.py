"""KPL math on synthetic features, checked against a straight port of the authors' code run in
the same process (tests/engine/kpl_reference.py).

What is asserted is what must hold on every machine: bit-equality with the reference computed
here and now (same CPU, BLAS kernel and thread count), and properties of the algorithm. Nothing
asserts a float artefact of one machine (a cycle period, an iteration count, a last bit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.kpl import Cancelled, ProxyParams, kpl_predict
from engine.kpl.proxies import learn_proxies, sharpen, sinkhorn, stable_greenkhorn, text_proxies
from tests.engine.kpl_reference import (
    authors_image_opt,
    authors_kpl,
    authors_sinkhorn,
    authors_stable_greenkhorn,
    authors_text_proxies,
)

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


def test_text_proxies_equal_the_authors_and_pick_pool_relevant_descriptions():
    g = torch.Generator().manual_seed(1)
    x = F.normalize(torch.randn(40, 16, generator=g), dim=1)
    blocks = [F.normalize(torch.randn(m, 16, generator=g), dim=1) for m in (12, 5, 9)]
    proxies, selected = text_proxies(x, blocks, k=6)
    ref_proxies, ref_selected = authors_text_proxies(x, blocks, 6)
    assert torch.equal(proxies, ref_proxies)
    assert all(torch.equal(a, b) for a, b in zip(selected, ref_selected, strict=True))
    assert [len(s) for s in selected] == [6, 5, 6]  # k is capped by the class's description count
    mean_relevance = (x @ blocks[0].T).mean(0)
    assert set(selected[0].tolist()) == set(mean_relevance.argsort(descending=True)[:6].tolist())
    assert torch.allclose(proxies.norm(dim=0), torch.ones(3))


def test_stable_greenkhorn_equals_the_authors():
    g = torch.Generator().manual_seed(2)
    logits = 0.2 + 0.05 * torch.randn(120, 4, generator=g)
    ours = stable_greenkhorn(logits, tau=0.01, iterations=20)
    assert torch.equal(ours, authors_stable_greenkhorn(logits.clone()))


def test_stable_greenkhorn_keeps_the_authors_mass_quirk():
    g = torch.Generator().manual_seed(3)
    logits = 0.25 + 0.03 * torch.randn(300, 4, generator=g)
    columns_only = stable_greenkhorn(logits, iterations=4)  # first C greedy steps fix the C columns
    torch.testing.assert_close(columns_only.sum(0), torch.full((4,), 0.25), rtol=1e-5, atol=0)
    plan = stable_greenkhorn(logits)
    assert plan.sum().item() == pytest.approx(1.0, rel=1e-2)  # total mass 1, rows about 1/n, not 1
    assert plan.sum(1).max().item() < 10 / 300
    assert torch.equal(sharpen(plan, 0.6), plan)  # so the alpha one-hot step never fires


def test_sinkhorn_equals_the_authors_and_is_row_stochastic():
    g = torch.Generator().manual_seed(4)
    logits = 0.2 + 0.05 * torch.randn(90, 3, generator=g)
    plan = sinkhorn(logits)
    assert torch.equal(plan, authors_sinkhorn(logits))
    torch.testing.assert_close(plan.sum(1), torch.ones(90), rtol=0, atol=1e-5)
    assert (sharpen(plan, 0.6).max(1).values == 1).sum() > 0  # confident rows do get sharpened


def test_learn_proxies_equals_the_authors_loop_bit_for_bit():
    x, w_text, _ = collapsed_pool(n=300, c=3, d=128, seed=5)
    plan = stable_greenkhorn(x @ w_text)
    ref_w, ref_halvings = authors_image_opt(x, w_text, plan)
    run = learn_proxies(x, w_text, plan, stop_early=False)
    assert run.iterations == 2000 and run.period == 0
    assert run.halvings == ref_halvings > 0  # the halving rule did act
    assert run.final_lr == 10.0 / 2**ref_halvings
    assert torch.equal(run.proxies, ref_w)


POOLS = [(400, 2, 6), (300, 3, 3), (400, 2, 7), (300, 5, 1)]


@pytest.mark.parametrize(("n", "c", "seed"), POOLS)
def test_stopping_early_returns_exactly_the_full_run(n, c, seed):
    x, w_text, _ = collapsed_pool(n=n, c=c, d=64, seed=seed)
    plan = stable_greenkhorn(x @ w_text)
    full = learn_proxies(x, w_text, plan, stop_early=False)
    early = learn_proxies(x, w_text, plan)
    assert torch.equal(early.proxies, full.proxies)
    assert early.halvings == full.halvings and early.final_lr == full.final_lr
    assert (early.period == 0) == (early.iterations == 2000)  # stopped iff a cycle was proven
    ref_w, ref_halvings = authors_image_opt(x, w_text, plan)
    assert ref_halvings == full.halvings and torch.equal(full.proxies, ref_w)


def test_the_early_stop_does_skip_work_on_typical_pools():
    """Where and with which period the loop starts cycling is a machine's last bits; that the
    halving rule drives it into a provable cycle long before 2000 steps on these pools is not."""
    runs = []
    for n, c, seed in POOLS:
        x, w_text, _ = collapsed_pool(n=n, c=c, d=64, seed=seed)
        runs.append(learn_proxies(x, w_text, stable_greenkhorn(x @ w_text)))
    summary = [(r.iterations, r.period) for r in runs]
    assert sum(r.iterations for r in runs) < 0.5 * 2000 * len(runs), summary


@pytest.mark.parametrize("threads", [1, None])
@pytest.mark.parametrize("seed", [0, 1])
def test_kpl_labels_and_descriptions_equal_the_authors_at_any_thread_count(seed, threads):
    x, w_text, _ = collapsed_pool(n=400, d=96, seed=seed)
    blocks = descriptions_around(w_text, m=20, seed=seed, spread=0.05)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        result = kpl_predict(x, blocks, k=8)
        ref_labels, ref_selected = authors_kpl(x, blocks, k=8)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(result.predictions, ref_labels.numpy())
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(result.selected, ref_selected, strict=True))


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


_OTHER_KERNEL = """
import torch
from engine.kpl import kpl_predict
from tests.engine.kpl_reference import authors_kpl
from tests.engine.test_kpl_math import collapsed_pool, descriptions_around
x, w, _ = collapsed_pool(n=300, c=3, d=64, seed=11)
blocks = descriptions_around(w, m=12, seed=11, spread=0.05)
ours = kpl_predict(x, blocks, k=5)
labels, selected = authors_kpl(x, blocks, k=5)
same = (ours.predictions == labels.numpy()).sum()
picked = all((a == b.numpy()).all() for a, b in zip(ours.selected, selected))
print(torch.get_num_threads(), same, picked)
"""


@pytest.mark.parametrize("kernel", ["SSE4_2", "AVX2"])
def test_kpl_equals_the_authors_with_another_blas_kernel_and_one_thread(kernel):
    """A fresh interpreter on a different MKL code path (MKL_ENABLE_INSTRUCTIONS caps the
    instruction set; OpenBLAS builds ignore it) and one OpenMP thread."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": kernel, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", _OTHER_KERNEL],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "300", "True"]


def test_kpl_predict_reports_scores_and_evidence_consistently():
    x, w_text, _ = collapsed_pool(n=80, c=3, d=64, seed=7, signal=0.3)
    blocks = descriptions_around(w_text, m=10, seed=7, spread=0.3)
    result = kpl_predict(x.numpy(), [b.numpy() for b in blocks], k=4, params=ProxyParams(iterations=300))
    assert result.method == "kpl" and result.transductive and result.note == ""
    assert result.scores.shape == result.probabilities.shape == result.text_scores.shape == (80, 3)
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, rtol=1e-5)
    assert np.array_equal(result.predictions, result.scores.argmax(1))
    assert np.array_equal(result.text_predictions, result.text_scores.argmax(1))
    for c, (idx, rel) in enumerate(zip(result.selected, result.relevance, strict=True)):
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
    with pytest.raises(ValueError, match="L2-normalised"):
        kpl_predict(2 * x, blocks)  # features are used as given, so un-normalised ones are refused
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
