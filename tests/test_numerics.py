"""Numerical edge cases of the decomposition, against a 50-digit mpmath reference.

A single observed rank, ranks up to 10^6, log-probs down to -1e4, counts of 10^9 tokens, and
ties with the ground truth's logit (reported as ``n_tied`` in every summary).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from errorentropy.head.chunked import score_hidden
from errorentropy.head.full import score_logits
from errorentropy.scoring.results import summarize
from errorentropy.stats.histogram import RankHistogram, decompose_arrays

mpmath = pytest.importorskip("mpmath")


def dense(support: dict[int, tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Dense counts/sums arrays from {rank: (n_e, S_e)}."""
    size = max(support) + 1
    counts = np.zeros(size, dtype=np.int64)
    sums = np.zeros(size, dtype=np.float64)
    for rank, (n, s) in support.items():
        counts[rank], sums[rank] = n, s
    return counts, sums


def reference(support: dict[int, tuple[int, float]]) -> dict[str, float]:
    """CE, EE, SA, Conf from the definitions in docs/design.md, in 50-digit arithmetic."""
    with mpmath.workdps(50):
        ranks = sorted(support)
        n_e = [mpmath.mpf(support[r][0]) for r in ranks]
        s_e = [mpmath.mpf(support[r][1]) for r in ranks]
        n = mpmath.fsum(n_e)
        p = [x / n for x in n_e]
        log_q = [s / x for s, x in zip(s_e, n_e)]
        log_c = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in log_q))
        ee = -mpmath.fsum(pi * mpmath.log(pi) for pi in p)
        sa = mpmath.fsum(pi * (mpmath.log(pi) - (lq - log_c)) for pi, lq in zip(p, log_q))
        ce = -mpmath.fsum(s_e) / n
        return {
            "cross_entropy": float(ce),
            "error_entropy": float(ee),
            "self_alignment": float(sa),
            "confidence": float(log_c),
        }


def check_against_reference(
    support: dict[int, tuple[int, float]], rel: float = 1e-12, abs_: float = 1e-12
) -> None:
    counts, sums = dense(support)
    d = decompose_arrays(counts, sums)
    ref = reference(support)
    for name, value in ref.items():
        got = getattr(d, name)
        assert math.isfinite(got), name
        assert got == pytest.approx(value, rel=rel, abs=abs_), (
            f"{name}: {got!r} vs reference {value!r}"
        )
    scale = max(1.0, abs(d.cross_entropy), abs(d.confidence))
    assert abs(d.identity_residual) <= 4 * np.finfo(np.float64).eps * scale
    assert (
        np.all(np.isfinite(d.p))
        and np.all(np.isfinite(d.q))
        and d.q.sum() == pytest.approx(1.0, rel=1e-14)
    )
    assert math.isfinite(d.error_entropy_miller_madow)


@pytest.mark.parametrize("rank", [0, 7, 1_000_000])
def test_single_rank_is_exact(rank: int) -> None:
    """One observed rank: p = q = 1, EE = SA = 0, Conf = log Q = -CE, and the identity holds
    exactly."""
    counts, sums = dense({rank: (13, -13 * 2.718281828459045)})
    d = decompose_arrays(counts, sums)
    assert (d.error_entropy, d.self_alignment) == (0.0, 0.0)
    assert d.confidence == -d.cross_entropy == sums[rank] / 13
    assert d.identity_residual == 0.0
    assert d.ranks.tolist() == [rank] and d.p.tolist() == [1.0] and d.q.tolist() == [1.0]
    assert d.top1_accuracy == (1.0 if rank == 0 else 0.0)


def test_ranks_up_to_a_million() -> None:
    support = {
        0: (5000, -400.0),
        1: (900, -720.5),
        10: (300, -900.25),
        1000: (40, -320.0),
        999_999: (3, -45.0),
        1_000_000: (2, -31.5),
    }
    check_against_reference(support)
    hist = RankHistogram(*dense(support), n_documents=4)
    assert hist.counts.size == 1_000_001
    back = RankHistogram.from_dict(hist.to_dict())
    assert back == hist and np.array_equal(back.logprob_sums, hist.logprob_sums)


def test_logprobs_down_to_minus_ten_thousand() -> None:
    """Geometric means of e^-1e4 underflow float64; the log-sum-exp keeps Conf finite and exact."""
    check_against_reference({0: (10, -5.0), 3: (4, -4e4), 9: (1, -1e4)})
    # Every rank that far down: log C itself near -1e4.
    support = {0: (2, -2e4), 1: (3, -3e4 + 1.5), 2: (1, -1e4 + 0.25)}
    check_against_reference(support)
    d = decompose_arrays(*dense(support))
    assert -1e4 < d.confidence < -1e4 + 2


def test_logprob_minus_ten_thousand_per_token() -> None:
    ranks = np.array([0, 0, 1, 2, 2, 2])
    logprobs = np.array([-1e4, -1e-300, -9999.5, -1e4, -0.0, -3.0])
    d = RankHistogram.from_tokens(ranks, logprobs).decompose()
    assert d.cross_entropy == pytest.approx(-logprobs.sum() / 6, rel=1e-15)
    assert all(math.isfinite(v) for v in d.as_dict().values())
    assert abs(d.identity_residual) < 1e-11


def test_a_billion_tokens_per_rank() -> None:
    support = {
        0: (4_000_000_000, -4e9 * 0.05),
        1: (1_000_000_000, -1e9 * 1.7),
        2: (3, -9.5),
        50_000: (999_999_999, -999_999_999 * 11.0),
    }
    check_against_reference(support)
    hist = RankHistogram(*dense(support))
    assert hist.n_tokens == 6_000_000_002 and hist.decompose().n_tokens == 6_000_000_002


def test_billion_count_histograms_merge_and_save_exactly() -> None:
    """Ten shards of 10^9 tokens each: integer counts add without overflow and round-trip JSON."""
    shard = RankHistogram(
        *dense({0: (10**9, -1e9 * 0.25), 7: (3 * 10**8, -3e8 * 2.0)}), n_documents=10**6
    )
    merged = sum([shard] * 10, 0)
    assert (
        merged.counts[0] == 10**10 and merged.counts[7] == 3 * 10**9 and merged.n_documents == 10**7
    )
    assert merged.n_tokens == 13 * 10**9
    back = RankHistogram.from_dict(merged.to_dict())
    assert back == merged and np.array_equal(back.logprob_sums, merged.logprob_sums)
    d = merged.decompose()
    single = shard.decompose()  # same proportions, so the same decomposition
    for name in ("cross_entropy", "error_entropy", "self_alignment", "confidence"):
        assert getattr(d, name) == pytest.approx(getattr(single, name), rel=1e-13)


def test_random_histograms_match_reference() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        k = int(rng.integers(2, 40))
        ranks = np.sort(rng.choice(200_000, size=k, replace=False))
        counts = rng.integers(1, 10**9, size=k)
        mean_logprob = -rng.exponential(5.0, size=k) - rng.choice([0.0, 1e4], size=k, p=[0.9, 0.1])
        check_against_reference(
            {int(r): (int(n), float(n * m)) for r, n, m in zip(ranks, counts, mean_logprob)},
            rel=1e-11,
        )


# ---- ties with the ground truth's logit ------------------------------------------------------


def test_ties_count_in_the_ground_truths_favour_and_are_reported() -> None:
    logits = torch.tensor([[1.0, 2.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0], [0.0, 5.0, 1.0, 2.0]])
    targets = torch.tensor([1, 3, 0])
    scores = score_logits(logits, targets)
    assert scores.rank.tolist() == [0, 0, 3] and scores.tied.tolist() == [1, 3, 0]
    # The chunked path agrees: identity weight, hidden = logits.
    chunked = score_hidden(logits, torch.eye(4), targets, vocab_chunk=3)
    assert chunked.rank.tolist() == [0, 0, 3] and chunked.tied.tolist() == [1, 3, 0]
    assert chunked.logprob.tolist() == pytest.approx(scores.logprob.tolist(), abs=1e-6)
    hist = RankHistogram.from_tokens(
        scores.rank.numpy(), scores.logprob.numpy(), n_tied=int((scores.tied > 0).sum())
    )
    summary = summarize(hist)
    assert summary["n_tied"] == 2 and summary["n_tokens"] == 3


def test_a_model_whose_logits_all_tie(tokenizer) -> None:
    """Identical output-head rows: every token ties with every other, rank 0, log-prob -log V, EE
    0."""
    from errorentropy.options import ScoreOptions
    from errorentropy.scoring.engine import score_documents
    from errorentropy.testing import tiny_model

    model = tiny_model(
        "gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=64, tie_word_embeddings=False
    )
    with torch.no_grad():
        model.lm_head.weight.copy_(model.lm_head.weight[:1].expand_as(model.lm_head.weight))
    docs = ["All logits tie here, so every rank is zero.", "A second short document."]
    for head in ("full", "chunked"):
        result = score_documents(
            model, tokenizer, docs, ScoreOptions(max_length=32, head=head, vocab_chunk=100)
        )
        hist = result.histogram
        assert hist.n_tokens > 10 and hist.counts.tolist() == [hist.n_tokens]
        assert hist.n_tied == hist.n_tokens
        assert summarize(hist)["n_tied"] == hist.n_tokens
        d = hist.decompose()
        assert d.error_entropy == 0.0 and d.self_alignment == 0.0
        assert d.cross_entropy == pytest.approx(math.log(model.config.vocab_size), rel=1e-6)
        assert d.identity_residual == 0.0
